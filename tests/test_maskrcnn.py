"""Mask R-CNN teacher: mmdet dataset/transforms/metric, Runner training, prediction, checkpoints."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import mmdet  # noqa: E402,F401  (installed by setup: a missing stack must fail, not skip)
import numpy as np
import pytest
from conftest import DEMO, ROOT
from helpers import disc_labels, same_partition

pytestmark = pytest.mark.mmdet

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from cellfuse.instances import Instances, relabel_sequential  # noqa: E402
from cellfuse.io import read_image, read_labels, write_labels  # noqa: E402
from cellfuse.layout import Sample, list_samples  # noqa: E402
from cellfuse.metric import evaluate_image  # noqa: E402
from teachers import build_teacher  # noqa: E402
from teachers.maskrcnn import MaskRCNNTeacher, adapt_checkpoint  # noqa: E402
from teachers.mmdet_plugins import (  # noqa: E402
    CellDataset,
    above_score,
    detections_to_instances,
    labels_to_boxes,
    prepare_image,
)

CONFIGS = ROOT / "configs" / "teachers"


@pytest.fixture(autouse=True)
def _mmdet_scope():
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")


# ----------------------------------------------------------------------------- fixtures


def _disc_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fluorescence-like uint8 gray image: bright discs on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    img = np.where(labels > 0, 180.0, 20.0) + rng.normal(0, 5, labels.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_split(root: Path, n: int, shape=(96, 96), seed=0) -> list[Sample]:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        lab = disc_labels(shape, 6, rmin=6, rmax=10, seed=seed + i)
        Image.fromarray(_disc_image(lab, seed + i)).save(root / "images" / f"s{i}.png")
        write_labels(root / "labels" / f"s{i}_label.tiff", lab)
    return list_samples(root, require_labels=True)


def tiny_config(max_iters: int = 2) -> Config:
    """The real base config, shrunk: 16-channel ResNet-18, 32-channel FPN, 96 px images."""
    cfg = Config.fromfile(str(CONFIGS / "maskrcnn_demo.py"))
    gn = dict(type="GN", num_groups=8, requires_grad=True)
    m = cfg.model
    m.backbone.update(base_channels=16, norm_cfg=gn)
    m.neck.update(in_channels=[16, 32, 64, 128], out_channels=32, norm_cfg=gn)
    m.rpn_head.update(in_channels=32, feat_channels=32)
    for k in ("bbox_roi_extractor", "mask_roi_extractor"):
        m.roi_head[k].out_channels = 32
    m.roi_head.bbox_head.update(
        in_channels=32, conv_out_channels=32, fc_out_channels=64, norm_cfg=gn
    )
    m.roi_head.mask_head.update(in_channels=32, conv_out_channels=32, norm_cfg=gn)
    m.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    m.train_cfg.rcnn.sampler.num = 64
    m.test_cfg.rpn.max_per_img = 300  # an untrained head keeps every proposal: keep tests fast
    m.test_cfg.rcnn.max_per_img = 100
    for step in cfg.train_dataloader.dataset.pipeline:
        if step["type"] == "RandomCellCrop":
            step["crop_size"] = (128, 128)
    cfg.train_cfg.update(max_iters=max_iters, val_interval=max_iters)
    cfg.param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.dataset.oversample = {}
    return cfg


@pytest.fixture(scope="module")
def disc_split(tmp_path_factory) -> list[Sample]:
    return _write_split(tmp_path_factory.mktemp("discs") / "train", 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, disc_split) -> tuple[MaskRCNNTeacher, Path]:
    """A tiny teacher after two Runner iterations (through ``fit``)."""
    work = tmp_path_factory.mktemp("work")
    teacher = build_teacher(dict(type="maskrcnn", cfg=tiny_config(2), tile=512, overlap=128))
    ckpt = teacher.fit(disc_split[:2], disc_split[2:], work)
    return teacher, ckpt


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_prepare_image_any_type(dtype, channels):
    lab = disc_labels((64, 80), 5, seed=1)
    img = (_disc_image(lab).astype(np.float64) * (100 if dtype == np.uint16 else 1)).astype(dtype)
    if channels is not None:
        img = np.repeat(img[..., None], channels, axis=2)
    out = prepare_image(img)
    assert out.shape == (64, 80, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255 and out.max() > 200
    assert out[lab > 0].mean() > out[lab == 0].mean() + 100


def test_prepare_image_inverts_brightfield():
    lab = disc_labels((64, 64), 5, seed=2)
    dark_cells = (255 - _disc_image(lab)).astype(np.uint8)
    out = prepare_image(dark_cells)
    assert out[lab > 0].mean() > out[lab == 0].mean() + 100
    assert prepare_image(dark_cells, invert_bright=False)[lab > 0].mean() < 100


def test_labels_to_boxes():
    lab = np.zeros((10, 12), np.uint16)
    lab[2:5, 3:7] = 7
    lab[8, 11] = 9
    lab[0, 0] = 3  # below min_area
    boxes, masks = labels_to_boxes(lab, min_area=1)
    np.testing.assert_array_equal(boxes, [[0, 0, 1, 1], [3, 2, 7, 5], [11, 8, 12, 9]])
    assert masks.shape == (3, 10, 12) and masks[1].sum() == 12
    boxes, masks = labels_to_boxes(lab, min_area=2)
    assert len(boxes) == 1 and masks[0].sum() == 12
    boxes, masks = labels_to_boxes(np.zeros((5, 5), np.uint16))
    assert boxes.shape == (0, 4) and masks.shape == (0, 5, 5)


def test_detections_to_instances_higher_score_wins():
    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:10, 2:10] = True  # 0.6
    masks[1, 5:15, 5:15] = True  # 0.9: wins the overlap with 0
    masks[2, 5:15, 6:15] = True  # 0.7: duplicate of 1, mostly hidden -> dropped
    masks[3, 16:19, 16:19] = True  # 0.3: below score_thr
    scores = np.array([0.6, 0.9, 0.7, 0.3])
    boxes = np.array([[2, 2, 10, 10], [5, 5, 15, 15], [6, 5, 15, 15], [16, 16, 19, 19]], float)
    for b in (boxes, None):
        inst = detections_to_instances(masks, scores, b, score_thr=0.5)
        assert inst.n == 2
        np.testing.assert_allclose(inst.scores, [0.9, 0.6])
        assert (inst.labels[masks[1]] == 1).all()
        assert inst.areas()[1] == 64 - 25
    empty = detections_to_instances(np.zeros((0, 7, 9), bool), np.zeros(0))
    assert empty.n == 0 and empty.shape == (7, 9)


def _random_detections(n: int = 40, shape=(64, 64), seed: int = 0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, *shape), bool)
    for k in range(n):
        y, x = rng.integers(0, shape[0] - 12, 2)
        h, w = rng.integers(3, 12, 2)
        masks[k, y : y + h, x : x + w] = True
    return masks, rng.uniform(0.2, 1.0, n)


def test_above_score_equals_painting_at_the_higher_threshold():
    masks, scores = _random_detections()
    low = detections_to_instances(masks, scores, score_thr=0.2)
    for thr in (0.3, 0.45, 0.5, 0.7, 0.95):
        again = detections_to_instances(masks, scores, score_thr=thr)
        np.testing.assert_array_equal(above_score(low, thr), again.labels)


def _metric_results(metric, truth_path: Path, masks, scores) -> dict:
    """``metric`` on one image: detections ``masks`` (NxHxW bool) with ``scores``."""
    whole = [[0, 0, masks.shape[2], masks.shape[1]]] * len(scores)  # boxes bound the masks
    pred = dict(
        masks=torch.from_numpy(masks),
        scores=torch.tensor(scores, dtype=torch.float32),
        bboxes=torch.tensor(whole, dtype=torch.float32),
    )
    metric.results = []
    metric.process(
        {}, [dict(pred_instances=pred, label_path=str(truth_path), modality="fluorescence")]
    )
    return metric.compute_metrics(metric.results)


def test_cell_f1_metric_chooses_the_score_cut_on_val(tmp_path):
    from teachers.mmdet_plugins import CellF1Metric

    truth = disc_labels((96, 96), 5, rmin=6, rmax=10, seed=3)
    write_labels(tmp_path / "t.tiff", truth)
    n = int(truth.max())
    free = [  # 6x6 background squares away from the border: false cells
        (y, x)
        for y in range(4, 86, 8)
        for x in range(4, 86, 8)
        if not truth[y : y + 6, x : x + 6].any()
    ][:3]
    fp = np.zeros((3, 96, 96), bool)
    for k, (y, x) in enumerate(free):
        fp[k, y : y + 6, x : x + 6] = True
    masks = np.concatenate([np.stack([truth == i for i in range(1, n + 1)]), fp])
    # every true cell scored 0.4 (an undertrained detector), the false ones 0.3
    scores = [0.4] * n + [0.3] * 3
    fixed = _metric_results(CellF1Metric(score_thr=0.5), tmp_path / "t.tiff", masks, scores)
    assert fixed["f1_50"] == 0.0 and "score_thr" not in fixed
    chosen = _metric_results(
        CellF1Metric(score_thr=(0.25, 0.35, 0.5)), tmp_path / "t.tiff", masks, scores
    )
    assert chosen["score_thr"] == 0.35 and chosen["f1_50"] == 1.0
    assert chosen["f1_50_fluorescence"] == 1.0
    low = _metric_results(CellF1Metric(score_thr=0.25), tmp_path / "t.tiff", masks, scores)
    assert low["f1_50"] == pytest.approx(2 * n / (2 * n + 3))  # the 3 false cells count


# ----------------------------------------------------------------------------- dataset


def _demo_or_dsb(tmp_path) -> Path:
    if (DEMO / "train" / "images").is_dir():
        return DEMO / "train"
    src = ROOT.parent / "shared" / "data" / "dsb2018" / "train"
    samples = list_samples(src, require_labels=True)[:3]
    if not samples:
        pytest.skip("no demo or dsb data")
    for s in samples:
        for p, sub in ((s.image, "images"), (s.label, "labels")):
            (tmp_path / sub).mkdir(exist_ok=True)
            os.symlink(p, tmp_path / sub / p.name)
    return tmp_path


def test_dataset_on_demo_data(tmp_path):
    split = _demo_or_dsb(tmp_path)
    cfg = Config.fromfile(str(CONFIGS / "maskrcnn_r18_gn_cpu.py"))
    ds = CellDataset(
        data_root=str(split.parent),
        split=split.name,
        pipeline=cfg.train_dataloader.dataset.pipeline,
        oversample=dict(stained=2),
    )
    np.random.seed(0)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    n_images = len(list_samples(split, require_labels=True))
    n_stained = sum(d["modality"] == "stained" for d in infos) // 2
    assert len(ds) == n_images + n_stained
    for i in range(3):
        item = ds[i]
        img, gt = item["inputs"], item["data_samples"].gt_instances
        assert img.dtype == torch.float32 and img.shape[0] == 3
        assert img.shape[1] <= 384 and img.shape[2] <= 384
        n = len(gt)
        assert n >= 1 and gt.masks.masks.shape == (n, *img.shape[1:])
        assert gt.labels.eq(0).all()
        # every box is the tight box of its mask
        b = gt.bboxes.tensor.numpy()
        for k in range(n):
            ys, xs = np.nonzero(gt.masks.masks[k])
            np.testing.assert_array_equal(b[k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])

    val = CellDataset(
        data_root=str(split.parent),
        split=split.name,
        test_mode=True,
        pipeline=cfg.val_dataloader.dataset.pipeline,
    )
    item = val[0]
    meta = item["data_samples"].metainfo
    assert Path(meta["label_path"]).is_file()
    assert item["inputs"].shape[1:] == tuple(round(2 * s) for s in meta["ori_shape"])


def test_dataset_from_sample_list(tmp_path, disc_split):
    from teachers.mmdet_plugins import write_samples_json

    ann = write_samples_json(tmp_path / "s.json", disc_split[:2])
    ds = CellDataset(ann_file=str(ann), pipeline=[])
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [d["img_path"] for d in infos] == [str(s.image.resolve()) for s in disc_split[:2]]
    assert {d["modality"] for d in infos} == {"fluorescence"}


# ----------------------------------------------------------------------------- training + prediction


def test_fit_runs_the_runner(trained, disc_split):
    teacher, ckpt = trained
    work = ckpt.parent
    assert ckpt.is_file() and ckpt.name.startswith("best_cell_f1_50")
    assert (work / "best_metrics.json").is_file()
    assert {"f1_50", "f1_75", "score_thr"} <= set(teacher.val_metrics)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "cfg" in saved["meta"] and saved["meta"]["iter"] == 2
    # the cut chosen on val is stored and used; the val F1 is the teacher's own at that cut
    assert saved["meta"]["score_thr"] == teacher.val_metrics["score_thr"] == teacher.score_thr
    (val,) = disc_split[2:]
    truth = read_labels(val.label)
    pred = teacher.predict(read_image(val.image))
    f1 = evaluate_image(truth, pred.labels, (0.5,))["scores"][0.5]["f1"]
    assert f1 == pytest.approx(teacher.val_metrics["f1_50"])


def test_load_from_checkpoint_alone(trained):
    """Pseudo-labelling loads with cfg.teacher only: the config comes from the checkpoint."""
    teacher, ckpt = trained
    other = MaskRCNNTeacher(tile=512, overlap=128)
    other.load(ckpt)
    img = _disc_image(disc_labels((96, 96), 6, rmin=6, rmax=10, seed=0))
    a, b = teacher.predict(img), other.predict(img)
    assert a.n == b.n and np.array_equal(a.labels, b.labels)


def test_predict_image_without_cells(trained):
    teacher, _ = trained
    for img in (np.zeros((200, 150), np.uint8), np.full((64, 64, 3), 7, np.uint16)):
        inst = teacher.predict(img)
        assert inst.n == 0 and inst.shape == img.shape[:2]
    # a noisy background through the network: make the classifier say "background"
    model = copy.deepcopy(teacher.model)
    quiet = MaskRCNNTeacher(tile=512, overlap=128)
    quiet.cfg, quiet.model, quiet._pipeline, quiet._prepare_args = (
        teacher.cfg,
        model,
        teacher._pipeline,
        teacher._prepare_args,
    )
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.bias[:] = torch.tensor([-20.0, 20.0])
    noise = np.random.default_rng(0).normal(100, 10, (300, 700)).clip(0, 255).astype(np.uint8)
    inst = quiet.predict(noise)  # 700 > tile: the tiled path
    assert inst.n == 0 and inst.shape == (300, 700) and inst.labels.max() == 0


class _ThresholdDetector(torch.nn.Module):
    """Stands in for the network in ``model.test_step``: connected components of bright pixels.

    Sees exactly what the detector sees (the rescaled, padded batch) and answers in mmdet's
    format (masks at the original size via ``scale_factor``), so tiled and whole-image
    predictions must agree exactly.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def test_step(self, batch):
        from mmengine.structures import InstanceData
        from scipy import ndimage as ndi

        data = self.model.data_preprocessor(batch, False)
        out = []
        for img, ds in zip(data["inputs"], data["data_samples"], strict=True):
            h, w = ds.img_shape
            fg = img[0, :h, :w].numpy() > 0.5
            lab, n = ndi.label(fg)
            sy, sx = ds.ori_shape[0] / h, ds.ori_shape[1] / w
            yy = np.minimum((np.arange(ds.ori_shape[0]) / sy).astype(int), h - 1)
            xx = np.minimum((np.arange(ds.ori_shape[1]) / sx).astype(int), w - 1)
            lab = relabel_sequential(lab[yy][:, xx])[0]  # nearest back to the original size
            n = int(lab.max())
            boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndi.find_objects(lab)]
            masks = lab[None] == np.arange(1, n + 1)[:, None, None]
            res = InstanceData()
            res.masks = torch.from_numpy(masks)
            res.scores = torch.linspace(0.9, 0.6, n)
            res.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            res.labels = torch.zeros(n, dtype=torch.long)
            ds.pred_instances = res
            out.append(ds)
        return out


def test_tiled_equals_whole_image_1024(trained):
    teacher, _ = trained
    lab = disc_labels((1024, 1024), 250, rmin=5, rmax=14, seed=5)
    img = _disc_image(lab, 5)
    probe = MaskRCNNTeacher(tile=4096)
    probe.cfg, probe._pipeline, probe._prepare_args = (
        teacher.cfg,
        teacher._pipeline,
        teacher._prepare_args,
    )
    probe.model = _ThresholdDetector(teacher.model)
    whole = probe.predict(img)
    probe.tile, probe.overlap = 400, 96
    tiled = probe.predict(img)
    assert whole.n > 200 and tiled.n == whole.n
    assert same_partition(tiled.labels, whole.labels)
    # and the pipeline round trip (normalise, 2x up, back) keeps the truth
    assert evaluate_image(lab, whole.labels, (0.5, 0.75))["scores"][0.75]["f1"] > 0.99


def test_tiled_real_network_runs(trained):
    teacher, _ = trained
    img = _disc_image(disc_labels((150, 450), 10, rmin=6, rmax=10, seed=9))
    teacher.tile, teacher.overlap = 200, 64
    try:
        inst = teacher.predict(img)  # 450 > tile: tiles through the real detector
    finally:
        teacher.tile, teacher.overlap = 512, 128
    assert isinstance(inst, Instances) and inst.shape == (150, 450)
    assert inst.labels.max() == inst.n and ((inst.scores >= 0.5) & (inst.scores <= 1)).all()


# ----------------------------------------------------------------------------- checkpoints


def _zoo_like_checkpoint(path: Path, num_classes: int = 80) -> dict:
    """A checkpoint in the model-zoo format: {'meta', 'state_dict'} of an 80-class model."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    cfg = tiny_config()
    cfg.model.roi_head.bbox_head.num_classes = num_classes
    cfg.model.roi_head.mask_head.num_classes = num_classes
    model = MODELS.build(cfg.model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"CLASSES": tuple(f"c{i}" for i in range(num_classes)), "mmdet_version": "2.25.0"}
    torch.save({"meta": meta, "state_dict": state}, path)
    return state


def test_adapt_checkpoint_drops_mismatched_heads(tmp_path, caplog):
    from mmdet.registry import MODELS

    state = _zoo_like_checkpoint(tmp_path / "zoo.pth")
    model = MODELS.build(tiny_config().model)
    with caplog.at_level(logging.WARNING, logger="teachers.maskrcnn"):
        dropped = adapt_checkpoint(model, tmp_path / "zoo.pth", tmp_path / "adapted.pth")
    assert sorted(dropped) == sorted(
        f"roi_head.{k}"
        for k in (
            "bbox_head.fc_cls.weight",
            "bbox_head.fc_cls.bias",
            "bbox_head.fc_reg.weight",
            "bbox_head.fc_reg.bias",
            "mask_head.conv_logits.weight",
            "mask_head.conv_logits.bias",
        )
    )
    assert "roi_head.bbox_head.fc_cls.weight (81, 64)->(2, 64)" in caplog.text
    adapted = torch.load(tmp_path / "adapted.pth", weights_only=True)
    assert set(adapted["state_dict"]) == set(state) - set(dropped)
    result = model.load_state_dict(adapted["state_dict"], strict=False)
    assert sorted(result.missing_keys) == sorted(dropped)
    torch.testing.assert_close(model.backbone.conv1.weight, state["backbone.conv1.weight"])


def test_fit_fine_tunes_from_zoo_checkpoint(tmp_path, disc_split, caplog):
    state = _zoo_like_checkpoint(tmp_path / "zoo.pth")
    cfg = tiny_config(1)
    cfg.load_from = str(tmp_path / "zoo.pth")
    cfg.optim_wrapper.optimizer.lr = 0.0  # weights stay as loaded
    teacher = MaskRCNNTeacher(cfg, tile=512, overlap=128)
    with caplog.at_level(logging.WARNING, logger="teachers.maskrcnn"):
        teacher.fit(disc_split[:1], [], tmp_path / "work")
    assert "re-initialised" in caplog.text and "conv_logits" in caplog.text
    torch.testing.assert_close(
        teacher.model.backbone.layer1[0].conv1.weight, state["backbone.layer1.0.conv1.weight"]
    )
    assert teacher.model.roi_head.bbox_head.fc_cls.weight.shape[0] == 2


def test_configs_build_and_download_nothing():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    for name in ("maskrcnn_r18_gn_cpu", "maskrcnn_demo", "maskrcnn_r50_fpn_full"):
        cfg = Config.fromfile(str(CONFIGS / f"{name}.py"))
        assert cfg.load_from is None and cfg.model.backbone.init_cfg is None
        assert cfg.teacher.type == "maskrcnn"
        assert (
            cfg.model.test_cfg.rpn.max_per_img >= 1000
            and cfg.model.test_cfg.rcnn.max_per_img >= 1000
        )
        assert cfg.model.test_cfg.rcnn.mask_thr_binary == 0.5
        assert cfg.model.roi_head.bbox_head.num_classes == 1
        if name != "maskrcnn_r50_fpn_full":
            assert cfg.model.backbone.norm_cfg.type == "GN"
    # the full profile is the model-zoo architecture (so its checkpoints fine-tune)
    full = MODELS.build(Config.fromfile(str(CONFIGS / "maskrcnn_r50_fpn_full.py")).model)
    assert full.roi_head.bbox_head.fc_cls.in_features == 1024
    assert full.backbone.conv1.out_channels == 64  # R-50's stem: the neck gets 256..2048


def test_samples_to_coco_round_trip(disc_split):
    from pycocotools import mask as mask_utils

    from teachers.mmdet_plugins import samples_to_coco

    coco = samples_to_coco(disc_split[:2])
    assert [im["id"] for im in coco["images"]] == [1, 2]
    lab = read_labels(disc_split[0].label)
    anns = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert len(anns) == lab.max()
    for k, a in enumerate(anns, start=1):
        m = mask_utils.decode(
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"]}
        )
        np.testing.assert_array_equal(m.astype(bool), lab == k)
        assert a["area"] == (lab == k).sum()


def test_adaptive_threads_hook_keeps_the_faster_choice(monkeypatch):
    import types

    from teachers import mmdet_plugins

    hook = mmdet_plugins.AdaptiveThreadsHook(choices=(1, 2), probe_every=10, probe_iters=3)
    hook._active = True
    seconds = {1: 2.0, 2: 0.5}  # 2 threads are faster here
    clock = {"t": 0.0}
    monkeypatch.setattr(mmdet_plugins.time, "perf_counter", lambda: clock["t"])
    runner = types.SimpleNamespace(iter=0, logger=logging.getLogger("test"))
    before = torch.get_num_threads()
    try:
        for it in range(6):
            runner.iter = it
            hook.before_train_iter(runner, it)
            clock["t"] += seconds[torch.get_num_threads()]
            hook.after_train_iter(runner, it)
        assert torch.get_num_threads() == 2
        seconds = {1: 0.5, 2: 2.0}  # the machine got busy: 1 thread wins the next probe
        for it in range(10, 16):
            runner.iter = it
            hook.before_train_iter(runner, it)
            clock["t"] += seconds[torch.get_num_threads()]
            hook.after_train_iter(runner, it)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_trained_checkpoint_tiled_agrees_with_whole_image():
    """With a trained checkpoint (CELLFUSE_MASKRCNN_CKPT), on a 1024x1024 mosaic of real nuclei."""
    from cellfuse.modality import modality

    ckpt = os.environ.get("CELLFUSE_MASKRCNN_CKPT")
    if not ckpt:
        pytest.skip("set CELLFUSE_MASKRCNN_CKPT to a trained Mask R-CNN checkpoint")
    samples = list_samples(ROOT.parent / "shared" / "data" / "dsb2018" / "val", require_labels=True)
    tiles = [read_image(s.image)[..., :3] for s in samples]
    tiles = [t for t in tiles if t.shape[:2] == (256, 256) and modality(t) == "fluorescence"][:16]
    if len(tiles) < 16:
        pytest.skip("not enough 256x256 val images")
    mosaic = np.concatenate([np.concatenate(tiles[r * 4 : r * 4 + 4], axis=1) for r in range(4)])
    teacher = MaskRCNNTeacher(tile=2048, overlap=128)
    teacher.load(Path(ckpt))
    whole = teacher.predict(mosaic)
    teacher.tile = 512
    tiled = teacher.predict(mosaic)
    assert whole.n > 100
    agree = evaluate_image(whole.labels, tiled.labels, (0.5, 0.9), border=0)["scores"]
    assert agree[0.5]["f1"] > 0.97 and agree[0.9]["f1"] > 0.9
    assert teacher.predict(np.full((300, 300, 3), 12, np.uint8)).n == 0
    # no cell is found in a cell-free 96x96 window of a real fluorescence image (normalised
    # as a whole: a crop of pure background alone would be stretched to full contrast)
    checked = 0
    for s in samples:
        img, lab = read_image(s.image)[..., :3], read_labels(s.label)
        free = np.argwhere(ndi_box_free(lab, 96))
        if modality(img) != "fluorescence" or not len(free):
            continue
        y, x = free[len(free) // 2]
        inst = teacher.predict(img)
        c = inst.centroids()
        inside = (c[:, 0] >= y) & (c[:, 0] < y + 96) & (c[:, 1] >= x) & (c[:, 1] < x + 96)
        assert inside.sum() <= 1
        checked += 1
        if checked == 5:
            break
    assert checked == 5


def ndi_box_free(lab: np.ndarray, size: int) -> np.ndarray:
    """HxW bool: the size x size window starting at (y, x) holds no labeled pixel."""
    fg = np.pad((lab > 0).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    win = fg[size:, size:] - fg[:-size, size:] - fg[size:, :-size] + fg[:-size, :-size]
    return win == 0
