"""The student network, its registry, post-processing and distillation."""

import copy
import json

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from conftest import DEMO
from helpers import disc_labels, same_partition

from cellfuse.errors import ConfigError
from cellfuse.flow_instances import PostProcess, fill_enclosed_holes, flows_to_instances
from cellfuse.flows import labels_to_flows
from cellfuse.io import read_image, read_labels, write_labels
from cellfuse.layout import list_samples
from cellfuse.metric import evaluate_image
from cellfuse.nn.augment import sample_crop
from student.distill import (
    StudentTrainer,
    list_pseudo,
    load_flow_network,
    pseudo_weight_map,
    soft_loss,
)
from student.model import (
    VARIANTS,
    StudentNet,
    build_student,
    count_parameters,
    flops_per_mpx,
    fuse_batchnorm,
    load_student,
    student_registry,
)
from teachers.flowunet import FlowUNetTeacher

# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("variant", sorted(student_registry))
def test_every_variant_builds_small_and_fast(variant):
    net = student_registry[variant]()
    assert isinstance(net, StudentNet) and not net.training
    assert count_parameters(net) <= 2_000_000
    assert flops_per_mpx(net, size=128) < 20  # GFLOP/Mpx; the teacher U-Net is ~80
    x = torch.rand(2, 3, 2 * net.stride, 3 * net.stride)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (2, 3, 2 * net.stride, 3 * net.stride)
    assert StudentNet(**net.config()).config() == net.config()


@pytest.mark.parametrize("variant", sorted(student_registry))
def test_builder_loads_bare_and_training_checkpoints(variant, tmp_path):
    torch.manual_seed(0)
    src = StudentNet(**VARIANTS[variant])
    bare = tmp_path / "bare.pth"
    torch.save(src.state_dict(), bare)
    full = tmp_path / "full.pth"
    torch.save(dict(state_dict=src.state_dict(), net=src.config(), nominal_diameter=20.0), full)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        ref = src.eval()(x)
        for net in (student_registry[variant](checkpoint=bare), build_student(variant, full)):
            assert torch.equal(net(x), ref)
        net, meta = load_student(full)
        assert torch.equal(net(x), ref) and meta["nominal_diameter"] == 20.0
    with pytest.raises(ConfigError, match="not a student training checkpoint"):
        load_student(bare)
    with pytest.raises(ConfigError, match="not found"):
        student_registry[variant](checkpoint=tmp_path / "missing.pth")


def test_unknown_variant_and_bad_config():
    with pytest.raises(ConfigError, match="unknown student variant"):
        build_student("nope")
    with pytest.raises(ConfigError):
        StudentNet(widths=(8, 16), blocks=(1,))


@pytest.mark.parametrize("full_ch", [4, 0])
def test_fuse_batchnorm_keeps_outputs(full_ch):
    torch.manual_seed(0)
    net = StudentNet(widths=(8, 16), blocks=(1, 1), full_ch=full_ch)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    fused = fuse_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 3, 32, 48)
    with torch.inference_mode():
        assert torch.allclose(net(x), fused(x), atol=1e-5)


def test_half_resolution_head_keeps_full_resolution_thin():
    """flow_s_half: the same encoder-decoder as flow_s, but no module writes a full-resolution
    tensor (the CPU cost) except the final upsampling of the 3 output maps."""
    x = torch.rand(1, 3, 64, 96)
    wide: list[int] = []
    for variant, widest in (("flow_s", 16), ("flow_s_half", 3)):
        net = build_student(variant)
        wide.clear()
        hooks = [
            m.register_forward_hook(
                lambda _m, _i, o: wide.append(o.shape[1]) if o.shape[-2:] == x.shape[-2:] else None
            )
            for m in net.modules()
            if not list(m.children())
        ]
        with torch.inference_mode():
            y = net(x)
        for h in hooks:
            h.remove()
        assert y.shape == (1, 3, 64, 96)
        assert max(wide, default=3) == widest, variant
    with pytest.raises(ConfigError, match="full_ch >= 0"):
        StudentNet(widths=(8, 16), blocks=(1, 1), full_ch=-1)


# ----------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize("follow_scale", [1.0, 0.5])
def test_postprocess_recovers_cells_from_true_flows(follow_scale):
    lab = disc_labels((256, 256), 60, 6, 11, seed=3)
    prob = np.where(lab > 0, 0.95, 0.05).astype(np.float32)
    inst = flows_to_instances(labels_to_flows(lab), prob, PostProcess(follow_scale=follow_scale))
    s = evaluate_image(lab, inst.labels, (0.5, 0.9))["scores"]
    assert s[0.5]["f1"] == 1.0 and s[0.9]["f1"] == 1.0
    assert inst.scores.min() > 0.5 and inst.scores.max() <= 1.0


def test_postprocess_empty_and_tiny_inputs():
    pp = PostProcess()
    for shape in [(1, 40), (3, 3), (32, 32)]:
        inst = flows_to_instances(
            np.zeros((2, *shape), np.float32), np.zeros(shape, np.float32), pp
        )
        assert inst.n == 0 and inst.labels.shape == shape
    with pytest.raises(ConfigError):
        PostProcess(follow_scale=0.3)
    with pytest.raises(ConfigError, match="unknown postprocess keys"):
        PostProcess.from_dict(dict(nope=1))


def test_fill_enclosed_holes():
    lab = np.zeros((20, 30), np.uint16)
    lab[2:9, 2:9] = 1
    lab[4:6, 4:6] = 0  # a hole inside cell 1: filled
    lab[2:9, 12:20] = 2
    lab[2:9, 20:28] = 3
    lab[4:6, 19:21] = 0  # a gap enclosed by two cells: stays
    out = fill_enclosed_holes(lab)
    assert (out[4:6, 4:6] == 1).all() and (out[4:6, 19:21] == 0).all()
    assert np.array_equal(out[lab > 0], lab[lab > 0])
    # one instance: exactly scipy's hole filling (4-connected background reaching the border
    # is not a hole; a region open only diagonally is)
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = ndi.binary_closing(rng.random((40, 50)) < 0.6)
        assert np.array_equal(
            fill_enclosed_holes(mask.astype(np.int32)) > 0, ndi.binary_fill_holes(mask)
        )


# ----------------------------------------------------------------------------- distillation data


def test_pseudo_weight_map():
    lab = np.array([[0, 1, 1], [2, 2, 0]], np.uint16)
    ign = np.array([[1, 0, 0], [0, 0, 0]], np.uint8)
    w = pseudo_weight_map(lab, [0.8, 0.3], ign)
    np.testing.assert_allclose(w, [[0, 0.8, 0.8], [0.3, 0.3, 1.0]])
    with pytest.raises(ConfigError, match="confidences"):
        pseudo_weight_map(lab, [0.8], None)


def test_sample_crop_carries_extra_target_channels():
    rng = np.random.default_rng(0)
    img = rng.random((3, 64, 64), dtype=np.float32)
    tgt = np.zeros((4, 64, 64), np.float32)
    tgt[3] = 0.7
    _, out = sample_crop(img, tgt, rng, 32, (1.0, 1.0), None)
    assert out.shape == (4, 32, 32)
    assert np.allclose(out[3][out[3] > 0], 0.7, atol=1e-5)
    _, out3 = sample_crop(img, tgt[:3], rng, 32)
    assert out3.shape == (3, 32, 32)


def test_pseudo_noise_augments_only_the_pseudo_labeled_crops():
    off = dict(hsv=0.0, shuffle=0.0, gray=0.0, contrast=0.0, invert=0.0, noise=0.0)
    trainer = StudentTrainer(
        variant="flow_xs",
        crop=32,
        batch_size=3,
        color=off,
        pseudo_noise=dict(invert=1.0),
        pseudo_scale_jitter=(1.0, 1.0),
        scale_jitter=(1.0, 1.0),
    )
    img = np.random.default_rng(1).random((3, 48, 48), dtype=np.float32)
    tgt = np.zeros((4, 48, 48), np.float32)
    data = [dict(image=img, target=tgt, source=s) for s in ("labeled", "pseudo")]
    xl, _ = trainer.make_batch(data, np.array([1.0, 0.0]), np.random.default_rng(0))
    xp, _ = trainer.make_batch(data, np.array([0.0, 1.0]), np.random.default_rng(0))
    assert torch.allclose(xp, 1.0 - xl, atol=1e-6)  # same crops, the pseudo ones inverted
    assert trainer.pseudo_color["invert"] == 1.0 and trainer.color["invert"] == 0.0
    plain = StudentTrainer(variant="flow_xs", color=off)
    assert plain.pseudo_color is plain.color and plain.pseudo_scale_jitter == plain.scale_jitter


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(pseudo_noise=dict(blurr=0.5)), "pseudo_noise: unknown augmentation \\['blurr'\\]"),
        (dict(pseudo_noise=dict(noise=1.5)), "pseudo_noise: probabilities must be in"),
        (dict(color=dict(stian=0.25)), "color: unknown augmentation"),
        (dict(pseudo_scale_jitter=(1.6, 0.6)), "pseudo_scale_jitter must satisfy"),
        (dict(scale_jitter=0.7), "scale_jitter must be two numbers"),
    ],
)
def test_misspelt_or_out_of_range_augmentation_is_a_one_line_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        StudentTrainer(variant="flow_xs", **kw)


def test_blur_softens_and_blur_off_draws_nothing():
    from cellfuse.nn.augment import color_jitter

    img = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    p = dict(contrast=0.5, noise=0.5)
    a = color_jitter(img, np.random.default_rng(3), p)
    b = color_jitter(img, np.random.default_rng(3), {**p, "blur": 0.0})
    assert np.array_equal(a, b)
    blurred = color_jitter(img, np.random.default_rng(3), dict(blur=1.0))
    assert blurred.std() < 0.6 * img.std() and abs(blurred.mean() - img.mean()) < 0.01


def test_weighted_loss():
    torch.manual_seed(0)
    out, tgt = torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    ones = torch.cat([tgt, torch.ones(2, 1, 8, 8)], 1)
    assert torch.allclose(StudentTrainer.loss(out, ones), FlowUNetTeacher.loss(out, tgt))
    assert StudentTrainer.loss(out, torch.cat([tgt, torch.zeros(2, 1, 8, 8)], 1)) == 0
    twice = torch.cat([tgt, 2 * torch.ones(2, 1, 8, 8)], 1)
    assert torch.allclose(StudentTrainer.loss(out, twice), 2 * FlowUNetTeacher.loss(out, tgt))


def _fake_pseudo(folder, samples):
    """A pseudo-label folder in the ensemble's format, from true labels (one entry failed)."""
    folder.mkdir()
    lines = []
    for s in samples:
        lab = read_labels(s.label)
        write_labels(folder / f"{s.id}_label.tiff", lab)
        n = int(lab.max())
        (folder / f"{s.id}_conf.json").write_text(json.dumps({"scores": [0.9] * n}))
        ign = np.zeros(lab.shape, np.uint8)
        ign[:8] = 1
        tifffile.imwrite(folder / f"{s.id}_ignore.tiff", ign)
        lines.append(json.dumps({"id": s.id, "image": str(s.image), "status": "ok"}))
    lines.append(json.dumps({"id": "broken", "image": "nope.png", "status": "failed"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_list_pseudo_reads_the_manifest(tmp_path):
    samples = list_samples(DEMO / "train", require_labels=True)[:2]
    _fake_pseudo(tmp_path / "p", samples)
    items = list_pseudo(tmp_path / "p")
    assert [i["id"] for i in items] == sorted(s.id for s in samples)
    with pytest.raises(ConfigError, match="manifest"):
        list_pseudo(tmp_path)


def test_distill_smoke_with_pseudo_labels_resume_and_reload(tmp_path):
    samples = list_samples(DEMO / "train", require_labels=True)
    train, val, unl = samples[:3], samples[3:4], samples[4:6]
    _fake_pseudo(tmp_path / "pseudo", unl)
    kw = dict(
        variant="flow_xs",
        pseudo=str(tmp_path / "pseudo"),
        crop=64,
        batch_size=2,
        train_minutes=0.04,
        val_every_minutes=1.0,
        num_threads=1,
        tile=256,
        overlap=48,
    )
    trainer = StudentTrainer(**kw)
    ckpt = trainer.fit(train, val, tmp_path / "w")
    assert ckpt.is_file() and set(trainer.val_metrics) == {"f1_50", "f1_75"}
    data = trainer.prepare_data(train, tmp_path / "w" / "cache")  # cached now
    assert [d["source"] for d in data].count("pseudo") == 2
    w = trainer.sampling_weights(data)
    assert abs(w[[d["source"] == "labeled" for d in data]].sum() - 0.5) < 1e-9
    _, y = trainer.make_batch(data, w, np.random.default_rng(0))
    assert y.shape == (2, 4, 64, 64)
    # fine-tuning: the last 30 % of the budget draws labeled crops only
    ((start0, mixed),) = trainer.sampling_schedule(data)
    assert start0 == 0.0 and np.array_equal(mixed, w)
    ft = StudentTrainer(**{**kw, "finetune_fraction": 0.3})
    (_, w0), (start1, w1) = ft.sampling_schedule(data)
    assert np.array_equal(w0, w) and start1 == pytest.approx(0.7)
    assert w1[[d["source"] == "pseudo" for d in data]].sum() == 0 and w1.sum() == pytest.approx(1)
    with pytest.raises(ConfigError, match="finetune_fraction"):
        StudentTrainer(**{**kw, "finetune_fraction": 1.0})
    # resume continues from last.pth; a fresh trainer reloads the best checkpoint
    again = StudentTrainer(**{**kw, "train_minutes": 0.06})
    again.fit(train, val, tmp_path / "w", resume=True)
    last = torch.load(tmp_path / "w" / "last.pth", weights_only=True)
    assert last["state"]["train_seconds"] >= 0.06 * 60
    loaded = StudentTrainer(variant="flow_xs")
    loaded.load(ckpt)
    img = read_image(val[0].image)
    assert loaded.predict(img).labels.shape == img.shape[:2]
    # a trained student joins an ensemble as a teacher (self-training), same predictions
    from student.predictor import StudentPredictor
    from teachers import build_teacher, load_teacher

    as_teacher = load_teacher(dict(type="student", device="cpu"), ckpt)
    assert same_partition(
        as_teacher.predict(img).labels,
        StudentPredictor.from_checkpoint(ckpt, device="cpu").predict(img).labels,
    )
    with pytest.raises(ConfigError, match="distill"):
        build_teacher(dict(type="student")).fit(train, val, tmp_path / "t")
    # the labeled-only ablation is the same trainer with pseudo=None
    assert StudentTrainer(**{**kw, "pseudo": None}).prepare_data(train, None)[0]["source"] == (
        "labeled"
    )


def test_soft_loss_is_stationary_exactly_at_the_teacher_output():
    torch.manual_seed(0)
    teacher = torch.randn(2, 3, 8, 8)
    for out, stationary in ((teacher.clone(), True), (teacher + 0.3, False)):
        out.requires_grad_(True)
        soft_loss(out, teacher).backward()
        assert (out.grad.abs().max() < 1e-7) == stationary


def _save_student(path, variant="flow_xs", nominal_diameter=17.0, seed=1):
    torch.manual_seed(seed)
    net = build_student(variant)
    torch.save(
        dict(
            state_dict=net.state_dict(),
            net=net.config(),
            variant=variant,
            nominal_diameter=nominal_diameter,
        ),
        path,
    )
    return net.eval()


def test_soft_teacher_targets_pull_the_student_to_the_teacher(tmp_path):
    samples = list_samples(DEMO / "train", require_labels=True)
    teacher = _save_student(tmp_path / "teacher.pth")
    kw = dict(
        variant="flow_xs",
        crop=64,
        batch_size=2,
        max_steps=40,
        num_threads=1,
        labeled_weight=0.0,  # no hard targets: only the soft teacher teaches
        soft_teacher=str(tmp_path / "teacher.pth"),
    )
    trainer = StudentTrainer(**kw)
    data = trainer.prepare_data(samples[:2], None)
    x, y = trainer.make_batch(data, trainer.sampling_weights(data), np.random.default_rng(0))
    torch.manual_seed(trainer.seed)
    trainer.net = trainer.build_net()
    with torch.no_grad():
        target = teacher(x)
        expected = trainer.loss(trainer.net(x), y) + soft_loss(trainer.net(x), target)
        assert torch.allclose(trainer.train_loss(x, y), expected)
        before = F.mse_loss(trainer.net(x), target).item()
    trainer.fit(samples[:2], [], tmp_path / "w")
    trainer.net.eval()
    with torch.no_grad():
        after = F.mse_loss(trainer.net(x), target).item()
    assert after < 0.5 * before
    assert StudentTrainer(**{**kw, "soft_teacher": None}).soft_net is None
    _save_student(tmp_path / "other.pth", nominal_diameter=30.0)
    with pytest.raises(ConfigError, match="diameter"):
        StudentTrainer(**{**kw, "soft_teacher": str(tmp_path / "other.pth")})
    with pytest.raises(ConfigError, match="not found"):
        StudentTrainer(**{**kw, "soft_teacher": str(tmp_path / "missing")})


def test_the_flow_unet_teacher_is_a_soft_teacher_too(tmp_path):
    teacher = FlowUNetTeacher(net=dict(widths=(8, 16), depth=1), num_threads=1)
    teacher.net = teacher.build_net().eval()
    (tmp_path / "w").mkdir()
    torch.save(teacher._checkpoint(), tmp_path / "w" / "best.pth")
    net, diameter = load_flow_network(tmp_path / "w")  # a work dir: its best.pth
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), teacher.net(x))
    assert diameter == teacher.nominal_diameter
    trainer = StudentTrainer(variant="flow_xs", soft_teacher=str(tmp_path / "w"))
    assert isinstance(trainer.soft_net, type(teacher.net))
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a student or flow U-Net"):
        load_flow_network(tmp_path / "other.pth")


def test_distill_tool_config_inheritance():
    from teachers.train import load_config

    cfg = load_config("configs/student/labeled_only_cpu.py")
    assert cfg.student.pseudo is None and cfg.student.variant == "flow_s"
    cfg = load_config("configs/student/distill_cpu.py", {"student.pseudo": None})
    assert cfg.student.pseudo is None
    assert load_config("configs/student/distill_demo.py").data.root == "data/demo"


def test_same_partition_helper_can_fail():
    a = np.array([[1, 1, 0], [2, 2, 0], [0, 3, 3]], np.uint16)
    assert same_partition(a, np.where(a > 0, 10 - a, 0))  # ids renamed: same cells
    assert not same_partition(a, np.where(a == 2, 1, a))  # two cells merged
    assert not same_partition(a, np.where(a == 3, 0, a))  # a cell missing


def test_the_top_level_seed_reaches_the_student_unless_it_has_its_own():
    from mmengine.config import Config

    from student.distill import student_kwargs

    cfg = Config(dict(seed=3, student=dict(variant="flow_s")))
    assert student_kwargs(cfg)["seed"] == 3  # cellfuse run writes the profile's seed here
    cfg = Config(dict(seed=3, student=dict(variant="flow_s", seed=5)))
    assert student_kwargs(cfg)["seed"] == 5
    assert student_kwargs(Config(dict(student=dict())))["seed"] == 0
