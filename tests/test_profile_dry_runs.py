"""Dry runs of every profile: each model a profile trains is built from its real config,
takes one training step and predicts one image, on a tiny synthetic input.

A config that no longer builds (a renamed key, a dropped argument, a base file moved) fails
here, in ``make test``, not hours into a run on the machine it was written for. Sizes are
the configs' own except where a CPU step would be slow, and every change is listed in
:data:`CPU_OPTIONS` (budgets, crops, batches, data-loading workers, threads); the networks
keep their configured widths and depths. The GPU-only choices stay untested here and are
named: the Mask R-CNN full config's ``AmpOptimWrapper`` needs CUDA (mmengine asserts it), so
its dry run trains with the plain ``OptimWrapper``; the official SAM ViT-B (1024 px input)
takes its step in ``test_full_profile_sam_vit_b_dry_run`` (``slow``), the fast suite runs
what the full profile trains without an official checkpoint (the tiny SAM fallback).

Stage configs are loaded as the pipeline loads them
(:func:`cellfuse.app.pipeline.teacher_stage_config`), trained through the stages' own entry
points (``teachers.train.train_teacher``, ``student.distill.distill``) and reloaded for
prediction from the written ``config.py`` and checkpoint, as the ensemble reloads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import disc_labels

from cellfuse.app.pipeline import stage_config, teacher_stage_config
from cellfuse.config import load_config, profile_path
from cellfuse.instances import Instances
from cellfuse.io import write_labels

PROFILES = ("demo", "bench", "full", "scarce")

# What each kind of model changes for a CPU dry run (cfg options, dotted keys).
CPU_OPTIONS: dict[str, dict] = {
    "flowunet": {
        "teacher.max_steps": 1,
        "teacher.val_every_steps": 1,
        "teacher.crop": 64,
        "teacher.batch_size": 2,
        "teacher.num_threads": 1,
        "teacher.flow_iters": 10,
        "teacher.device": "cpu",
    },
    "sam": {
        "teacher.device": "cpu",
        "teacher.train.max_steps": 1,
        "teacher.train.crops_per_step": 1,
        "teacher.train.prompts_per_crop": 4,
        "teacher.train.calibrate_images": 0,
        "teacher.train.num_threads": 1,
        "teacher.prompt_batch": 16,
    },
    "maskrcnn": {
        "teacher.device": "cpu",
        "teacher.num_threads": 1,
        "train_cfg.max_iters": 1,
        "train_cfg.val_interval": 1,
        "param_scheduler": [dict(type="ConstantLR", factor=1.0, by_epoch=False)],
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.checkpoint.save_optimizer": False,  # R-50 + AdamW: ~0.5 GB a write
        "default_hooks.logger.interval": 1,
        "train_dataloader.batch_size": 1,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_dataloader.dataset.oversample": {},
        "val_dataloader.num_workers": 0,
        "val_dataloader.persistent_workers": False,
        "test_dataloader.num_workers": 0,
        "test_dataloader.persistent_workers": False,
        "model.train_cfg.rpn_proposal.nms_pre": 200,
        "model.train_cfg.rpn_proposal.max_per_img": 100,
        "model.test_cfg.rpn.max_per_img": 100,
        "model.test_cfg.rcnn.max_per_img": 50,
        "env_cfg.cudnn_benchmark": False,
    },
    "classical": {},
    "student": {
        "student.pseudo": None,
        "student.max_steps": 1,
        "student.val_every_steps": 1,
        "student.crop": 64,
        "student.batch_size": 2,
        "student.num_threads": 1,
        "student.tile": 256,
        "student.overlap": 48,
        "student.device": "cpu",
    },
}
MASKRCNN_CROP = (96, 96)


def _models(profile: str) -> list[tuple[str, str]]:
    cfg = load_config(profile_path(profile))
    return [(profile, e["name"]) for e in cfg.teachers] + [(profile, "student")]


MODELS = [pair for p in PROFILES for pair in _models(p)]
# scarce_maskrcnn is scarce plus one teacher: only that one is new
MODELS.append(("scarce_maskrcnn", "maskrcnn"))


@pytest.fixture(scope="module")
def tiny_input(tmp_path_factory) -> Path:
    """A Med-MLE-bench input of three 96x96 labeled images and one test image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dry_input")
    for split, n in (("train", 3), ("test", 1)):
        (root / split / "images").mkdir(parents=True)
        if split == "train":
            (root / split / "labels").mkdir()
        for i in range(n):
            lab = disc_labels((96, 96), 6, rmin=6, rmax=9, seed=10 * i + len(split))
            img = np.where(lab > 0, 180, 25).astype(np.uint8)
            img = np.clip(img + np.random.default_rng(i).normal(0, 6, img.shape), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(root / split / "images" / f"{split}{i}.png")
            if split == "train":
                write_labels(root / split / "labels" / f"{split}{i}_label.tiff", lab)
    return root


def _kind(cfg) -> str:
    return cfg.teacher["type"] if "teacher" in cfg else "student"


def _shrink(cfg, kind: str) -> None:
    cfg.merge_from_dict(CPU_OPTIONS[kind])
    if kind == "maskrcnn":
        for step in cfg.train_dataloader.dataset.pipeline:
            if step["type"] == "RandomCellCrop":
                step["crop_size"] = MASKRCNN_CROP
        if cfg.optim_wrapper.get("type") == "AmpOptimWrapper":  # CUDA only (mmengine asserts)
            cfg.optim_wrapper.type = "OptimWrapper"
            for key in ("loss_scale", "dtype"):  # AmpOptimWrapper's own arguments
                cfg.optim_wrapper.pop(key, None)


def _image(root: Path) -> np.ndarray:
    from cellfuse.io import read_image

    return read_image(root / "test" / "images" / "test0.png")


def _reload_teacher(work: Path, ckpt: Path):
    """The trained teacher as the ensemble loads it: the written config + the checkpoint."""
    from mmengine.config import Config

    from teachers import load_teacher, teacher_class

    full = Config.fromfile(str(work / "config.py"))
    tcfg = full.teacher.to_dict()
    if getattr(teacher_class(tcfg["type"]), "wants_full_config", False):
        tcfg["cfg"] = full
    return load_teacher(tcfg, ckpt)


def _dry_run_teacher(profile: str, name: str, root: Path, work: Path) -> Instances:
    from teachers.train import train_teacher

    pcfg = load_config(profile_path(profile))
    entry = next(e for e in pcfg.teachers if e["name"] == name)
    cfg, _, note = teacher_stage_config(pcfg, entry, root)
    kind = _kind(cfg)
    if kind == "maskrcnn":
        import mmdet  # noqa: F401 - a dev install has it: missing fails, not skips
        from mmengine.registry import init_default_scope

        init_default_scope("mmdet")
    _shrink(cfg, kind)
    ckpt = train_teacher(cfg, work)
    assert ckpt.is_file() and (work / "result.json").is_file()
    teacher = _reload_teacher(work, ckpt)
    image = _image(root)
    if kind == "sam":  # SAM answers prompts: the true cells' centroids
        lab = disc_labels((96, 96), 6, rmin=6, rmax=9, seed=len("test"))
        return teacher.predict_with_prompts(image, Instances.from_labels(lab))
    return teacher.predict(image)


def _dry_run_student(profile: str, root: Path, work: Path) -> Instances:
    from student.distill import StudentTrainer, distill

    pcfg = load_config(profile_path(profile))
    opts = {**(pcfg.get("student_options") or {}), **CPU_OPTIONS["student"]}
    cfg = stage_config(pcfg.student, root, pcfg.get("seed", 0), opts)
    ckpt = distill(cfg, work)
    trainer = StudentTrainer(variant=cfg.student.variant, device="cpu", num_threads=1)
    trainer.load(ckpt)
    return trainer.predict(_image(root))


@pytest.mark.parametrize(
    ("profile", "name"),
    [pytest.param(p, n, marks=[pytest.mark.mmdet] if n == "maskrcnn" else []) for p, n in MODELS],
    ids=[f"{p}-{n}" for p, n in MODELS],
)
def test_profile_model_dry_run(profile, name, tiny_input, tmp_path):
    """Build from the real config, one training step, one prediction."""
    work = tmp_path / name
    if name == "student":
        inst = _dry_run_student(profile, tiny_input, work)
    else:
        inst = _dry_run_teacher(profile, name, tiny_input, work)
    assert inst.labels.shape == (96, 96) and len(inst.scores) == inst.n


def test_full_profile_without_sam_checkpoint_configures_the_tiny_sam(tiny_input):
    pcfg = load_config(profile_path("full"))
    entry = next(e for e in pcfg.teachers if e["name"] == "sam")
    cfg, _, note = teacher_stage_config(pcfg, entry, tiny_input)
    assert cfg.teacher.variant == "vit_tiny" and not cfg.teacher.require_checkpoint
    assert cfg.teacher.train.time_budget_min == 60.0  # the full profile's budget
    assert note == (
        "sam: no official checkpoint (checkpoints.sam=PATH): training sam vit_tiny from "
        "scratch instead, 60 min budget"
    )
    pcfg.checkpoints.sam = "/weights/sam_vit_b_01ec64.pth"
    cfg, opts, note = teacher_stage_config(pcfg, entry, tiny_input)
    assert note is None and cfg.teacher.variant == "vit_b"
    assert cfg.teacher.checkpoint == opts["teacher.checkpoint"] == "/weights/sam_vit_b_01ec64.pth"


@pytest.mark.slow
def test_full_profile_sam_vit_b_dry_run(tiny_input, tmp_path):
    """The official ViT-B architecture (random weights, encoder frozen): one step, one
    prediction (1024 px encoder passes: slow on a CPU)."""
    from teachers import build_teacher

    pcfg = load_config(profile_path("full"))
    entry = next(e for e in pcfg.teachers if e["name"] == "sam")
    cfg = stage_config(entry["config"], tiny_input, 0, {"teacher.require_checkpoint": False})
    _shrink(cfg, "sam")
    tcfg = cfg.teacher.to_dict()
    tcfg.pop("type")
    teacher = build_teacher(dict(type="sam", **tcfg))
    assert teacher.variant == "vit_b" and teacher.freeze_encoder
    from cellfuse.splits import resolve_splits

    train, val = resolve_splits(cfg.data)
    teacher.fit(train, val, tmp_path)
    lab = disc_labels((96, 96), 6, rmin=6, rmax=9, seed=len("test"))
    inst = teacher.predict_with_prompts(_image(tiny_input), Instances.from_labels(lab))
    assert inst.labels.shape == (96, 96)
