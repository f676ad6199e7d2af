"""SAM teacher: builders and weight loading, prompt helpers, training step, tiled prompting."""

from __future__ import annotations

import numpy as np
import pytest
import segment_anything  # noqa: F401  (installed by setup; a missing stack must fail, not skip)
import torch
from helpers import disc_labels  # noqa: E402

import teachers.sam as tsam  # noqa: E402
from cellfuse.errors import ConfigError  # noqa: E402
from cellfuse.instances import Instances  # noqa: E402
from cellfuse.layout import Sample  # noqa: E402
from teachers import build_teacher  # noqa: E402
from teachers.sam import (  # noqa: E402
    SAMTeacher,
    merge_prompt_points,
    neighbour_negatives,
    paint_masks,
    prompt_scale,
    sam_registry,
)

# official layout: (embed dim, depth, heads, global attention blocks)
OFFICIAL = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


# ----------------------------------------------------------------------------- builders


@pytest.mark.parametrize("variant", sorted(sam_registry))
def test_every_variant_builds_on_meta_in_eval_mode(variant):
    with torch.device("meta"):
        sam = sam_registry[variant]()
    assert not sam.training
    sd = sam.state_dict()
    enc = sam.image_encoder
    assert sd["image_encoder.pos_embed"].shape[1] == enc.img_size // enc.patch_embed.proj.stride[0]
    assert sd["mask_decoder.iou_prediction_head.layers.2.weight"].shape[0] == 4  # 1 + 3 masks
    if variant in OFFICIAL:
        dim, depth, heads, glob = OFFICIAL[variant]
        assert sd["image_encoder.pos_embed"].shape == (1, 64, 64, dim)
        assert f"image_encoder.blocks.{depth - 1}.mlp.lin2.weight" in sd
        assert f"image_encoder.blocks.{depth}.norm1.weight" not in sd
        for i in range(depth):  # windowed blocks: 14x14 rel-pos; global ones: 64x64
            size = 127 if i in glob else 27
            assert sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape == (size, dim // heads)
        assert sd["image_encoder.neck.0.weight"].shape == (256, dim, 1, 1)
        assert sd["mask_decoder.transformer.layers.1.mlp.lin1.weight"].shape == (2048, 256)
        assert sd["prompt_encoder.mask_downscaling.0.weight"].shape == (4, 1, 2, 2)


def test_vit_b_state_dict_round_trip_through_builder(tmp_path):
    sam = sam_registry["vit_b"]()
    n = sum(p.numel() for p in sam.parameters())
    assert 93e6 < n < 95e6  # the released ViT-B has 93.7 M parameters
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam.state_dict(), path)  # the official files are plain state dicts
    again = tsam.build_sam_vit_b(checkpoint=path)
    assert not again.training
    for k, v in sam.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        tsam.build_sam_vit_tiny(checkpoint=tmp_path / "missing.pth")
    sd = tsam.build_sam_vit_tiny().state_dict()
    sd.pop("mask_decoder.iou_token.weight")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(
        ConfigError, match=r"1 missing \(first: \['mask_decoder.iou_token.weight'\]\).*extra.weight"
    ):
        tsam.build_sam_vit_tiny(checkpoint=tmp_path / "bad.pth")
    torch.save(tsam.build_sam_vit_tiny().state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ConfigError, match="shape mismatches"):
        tsam.build_sam_vit_b(checkpoint=tmp_path / "tiny.pth")


def test_teacher_config_errors():
    with pytest.raises(ConfigError, match="unknown SAM variant"):
        SAMTeacher(variant="vit_x")
    with pytest.raises(ConfigError, match="teacher.checkpoint="):
        build_teacher(dict(type="sam", variant="vit_b", require_checkpoint=True))


# ----------------------------------------------------------------------------- pure helpers


def test_merge_prompt_points_merges_near_duplicates_only():
    a = np.array([[10.0, 10.0], [50.0, 50.0], [np.nan, np.nan]])
    b = np.array([[11.0, 10.0], [50.0, 60.0]])
    out = merge_prompt_points([a, b], radius=3.0)
    np.testing.assert_allclose(out, [[10.5, 10.0], [50.0, 50.0], [50.0, 60.0]])
    assert merge_prompt_points([], 3.0).shape == (0, 2)
    assert len(merge_prompt_points([a[:2], a[:2]], radius=0.5)) == 2


def test_neighbour_negatives_and_prompt_scale():
    pts = np.array([[0.0, 0.0], [0.0, 5.0], [0.0, 12.0], [100.0, 100.0]])
    nn = neighbour_negatives(pts, k=2, radius=10.0)
    np.testing.assert_array_equal(nn, [[1, -1], [0, 2], [1, -1], [-1, -1]])
    assert prompt_scale(np.array([10.0, 10.0, 30.0]), nominal=20.0) == 2.0
    assert prompt_scale(np.array([1.0]), nominal=20.0, limits=(0.5, 4.0)) == 4.0
    assert prompt_scale(np.zeros(0), nominal=20.0) == 1.0


def test_paint_masks_best_score_wins_and_hidden_duplicates_drop():
    m = np.ones((4, 4), bool)
    inst = paint_masks(
        (10, 10), [(0, 0, m), (1, 1, m), (6, 6, m[:2, :2])], np.array([0.5, 0.9, 0.7])
    )
    assert inst.n == 2  # the 0.5 mask keeps 7/16 px < half: a duplicate, dropped
    np.testing.assert_allclose(inst.scores, [0.9, 0.7])
    assert (inst.labels[1:5, 1:5] == 1).all() and (inst.labels[6:8, 6:8] == 2).all()


# ----------------------------------------------------------------------------- prompting


def _fake_decode(radius: float):
    """A decoder answering each point with a disc of ``radius`` encoder px around it."""
    calls = []

    def decode(sam, emb, coords, labels, boxes=None, multimask=False, masks=None):
        side = sam.image_encoder.img_size // sam.image_encoder.patch_embed.proj.stride[0] * 4
        f = sam.image_encoder.img_size / side
        c = (torch.arange(side, dtype=torch.float32) + 0.5) * f - 0.5
        pos = coords[:, 0]  # (x, y) of the positive point
        d2 = (c[None, None, :] - pos[:, 0, None, None]) ** 2 + (
            c[None, :, None] - pos[:, 1, None, None]
        ) ** 2
        calls.append(pos.clone())
        return (radius - d2.sqrt())[:, None], torch.full((len(pos), 1), 0.9)

    return decode, calls


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5])
def test_tiled_prompts_route_to_owner_tiles_and_map_back(monkeypatch, scale):
    t = SAMTeacher(variant="vit_tiny", tile_overlap=48, iou_thresh=0.5, min_area=4)
    h, w = 600, 430  # larger than the encoder input at every scale tested
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(10, h - 10, 40), rng.uniform(10, w - 10, 40)], 1)
    pts = merge_prompt_points([pts], radius=25.0)  # keep discs apart
    encoded = []
    monkeypatch.setattr(
        tsam, "encode", lambda sam, ims: encoded.append(ims[0].shape) or torch.zeros(1)
    )
    decode, calls = _fake_decode(radius=6.0)
    monkeypatch.setattr(tsam, "decode", decode)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    inst = t.predict_points(image, pts, scale)

    tiles = tsam.tile_grid((round(h * scale), round(w * scale)), t.img_size, 48)
    assert len(tiles) > 1
    owners = tsam.tile_centroid_owner((pts + 0.5) * scale - 0.5, tiles)
    assert len(encoded) == len(np.unique(owners))  # one encoder pass per tile that has prompts
    assert sum(len(c) for c in calls) == len(pts)  # each prompt answered exactly once
    assert all(s[1] <= t.img_size and s[2] <= t.img_size for s in encoded)
    # every disc comes back centred on its prompt, radius 6 encoder px = 6 / scale image px
    assert inst.n == len(pts) and inst.shape == (h, w)
    cen = inst.centroids()
    d = np.linalg.norm(cen[:, None] - pts[None], axis=-1).min(1)
    assert d.max() < 0.6
    np.testing.assert_allclose(inst.areas(), np.pi * (6.0 / scale) ** 2, rtol=0.25)
    np.testing.assert_allclose(inst.scores, 0.9, rtol=1e-6)


def test_zero_prompts_give_empty_instances(monkeypatch):
    t = SAMTeacher(variant="vit_tiny")
    image = np.zeros((40, 50, 3), np.uint8)
    for inst in (
        t.predict(image),  # no prompt_teacher configured
        t.predict_with_prompts(image, Instances.empty((40, 50))),
        t.predict_with_prompts(image, []),
    ):
        assert inst.n == 0 and inst.shape == (40, 50)


def test_predict_uses_prompt_teacher(monkeypatch):
    import teachers

    truth = disc_labels((128, 128), 6, rmin=6, rmax=9, seed=2)

    class Fake:
        def predict(self, image):
            return Instances.from_labels(truth)

    monkeypatch.setattr(teachers, "load_teacher", lambda cfg, ckpt: Fake())
    decode, calls = _fake_decode(radius=5.0)
    monkeypatch.setattr(tsam, "decode", decode)
    t = SAMTeacher(prompt_teacher=dict(cfg=dict(type="fake"), checkpoint="x.pth"))
    inst = t.predict(np.zeros((128, 128, 3), np.uint8))
    assert inst.n == 6 and sum(len(c) for c in calls) == 6


# ----------------------------------------------------------------------------- training


def _write_samples(root, n=2, size=96):
    import tifffile
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    out = []
    for i in range(n):
        lab = disc_labels((size, size), 8, rmin=5, rmax=9, seed=i)
        img = ((lab > 0) * 180 + 30).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        tifffile.imwrite(root / "labels" / f"s{i}_label.tiff", lab)
        out.append(
            Sample(f"s{i}", root / "images" / f"s{i}.png", root / "labels" / f"s{i}_label.tiff")
        )
    return out


def test_training_steps_checkpoint_and_resume(tmp_path):
    from teachers.sam_train import train_sam

    samples = _write_samples(tmp_path / "data")
    t = SAMTeacher(
        variant="vit_tiny", train=dict(max_steps=1, crops_per_step=1, prompts_per_crop=4)
    )
    before = {k: v.clone() for k, v in t.sam.state_dict().items()}
    best = t.fit(samples, samples[:1], tmp_path / "work")
    assert best == tmp_path / "work" / "best.pth" and best.is_file()
    assert set(t.val_metrics) >= {"f1_50", "f1_75", "step"}
    changed = [k for k, v in t.sam.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("image_encoder.") for k in changed)
    assert any(k.startswith("mask_decoder.") for k in changed)
    last = torch.load(tmp_path / "work" / "last.pth", weights_only=True)
    assert last["step"] == 1

    t2 = SAMTeacher(variant="vit_tiny")
    train_sam(
        t2,
        samples,
        samples[:1],
        tmp_path / "work",
        resume=True,
        max_steps=2,
        crops_per_step=1,
        prompts_per_crop=4,
    )
    assert torch.load(tmp_path / "work" / "last.pth", weights_only=True)["step"] == 2
    t3 = SAMTeacher(variant="vit_tiny")
    t3.load(best)  # a cellfuse checkpoint loads through the same path as an official one
    # training ends with the mask-threshold calibration, stored in the checkpoint
    stored = torch.load(best, weights_only=True)
    assert stored["mask_threshold"] == t3.sam.mask_threshold
    assert set(stored["mask_threshold_f1_75"]) == {"0.5", "0.0", "-0.5", "-1.0", "-1.5", "-2.0"}
    assert set(stored["infer_diameter_f1_75"]) == {"20.0", "25.0", "30.0"}  # nominal 20 x ZOOMS
    assert t3.infer_diameter == stored["infer_diameter"]


def test_mask_threshold_is_calibrated_stored_and_overridable(tmp_path, monkeypatch):
    import teachers.sam_calibration as sc
    import teachers.sam_train as st

    t = SAMTeacher(variant="vit_tiny")
    seen = []

    def fake_eval(teacher, samples, max_images=None):
        thr = float(teacher.sam.mask_threshold)
        seen.append(thr)
        return {"f1_50": 0.5, "f1_75": 1.0 - abs(thr + 1.0) / 10}  # best at -1.0

    monkeypatch.setattr(sc, "evaluate_sam", fake_eval)
    thr, scores = st.calibrate_mask_threshold(t, ["s"] * 3)
    assert thr == -1.0 and t.sam.mask_threshold == -1.0 and seen == list(st.MASK_THRESHOLDS)
    ckpt = tmp_path / "best.pth"
    torch.save({"model": t.sam.state_dict()}, ckpt)
    assert SAMTeacher(variant="vit_tiny").sam.mask_threshold == 0.0  # SAM's own default
    st.store_calibration(ckpt, "mask_threshold", thr, scores)
    loaded = SAMTeacher(variant="vit_tiny")
    loaded.load(ckpt)
    assert loaded.sam.mask_threshold == -1.0
    forced = SAMTeacher(variant="vit_tiny", mask_threshold=0.5)
    forced.load(ckpt)  # an explicit config value wins over the stored one
    assert forced.sam.mask_threshold == 0.5
    official = tmp_path / "official.pth"
    torch.save(t.sam.state_dict(), official)  # official layout: no stored threshold
    plain = SAMTeacher(variant="vit_tiny")
    plain.load(official)
    assert plain.sam.mask_threshold == 0.0


def test_sam_loss_prefers_the_right_mask():
    from teachers.sam_train import sam_loss

    target = torch.zeros(2, 256, 256)
    target[:, 100:140, 100:140] = 1
    good = torch.full((2, 1, 128, 128), -8.0)
    good[:, :, 50:70, 50:70] = 8.0
    loss_good, parts = sam_loss(good, torch.ones(2, 1), target, 256)
    loss_bad, _ = sam_loss(-good, torch.ones(2, 1), target, 256)
    assert parts["iou"] == pytest.approx(1.0) and parts["iou_mse"] == pytest.approx(0.0)
    assert loss_good < 0.05 < loss_bad


@pytest.mark.slow
def test_demo_config_trains_end_to_end(tmp_path):
    import json

    from conftest import DEMO, ROOT

    from teachers.train import load_config, train_teacher

    # the demo's own step budget (1000 steps, ~3 min quiet): masks appear after ~600 steps,
    # so a shorter budget scores 0.0 and could not tell a working SAM from a broken one
    cfg = load_config(ROOT / "configs/teachers/sam_demo.py", {"data.root": str(DEMO)})
    ckpt = train_teacher(cfg, tmp_path / "work")
    result = json.loads((tmp_path / "work" / "result.json").read_text())
    assert ckpt.is_file() and result["type"] == "sam"
    assert result["val_metrics"]["f1_50"] > 0.3  # the demo SAM scores ~0.6 on its test images


def test_box_prompts_frame_the_prompted_cell():
    """Training boxes belong to the prompted cell (label i's box is row i - 1 of bboxes)."""
    from teachers.sam_train import sample_prompts

    lab = np.zeros((64, 64), np.int32)
    lab[2:10, 3:12] = 1
    lab[30:50, 20:28] = 2
    lab[40:44, 50:62] = 3
    out = sample_prompts(lab, 3, np.random.default_rng(0), img_size=64, box=True, neg_points=0)
    for box, mask in zip(out["boxes"].numpy(), out["masks"].numpy(), strict=True):
        yy, xx = np.nonzero(mask)
        true = np.array([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1], np.float32)
        assert np.abs(box - true).max() < 4.0  # noise: std 10 % of a side


# ----------------------------------------------------------------------------- mask prompts


def test_perturb_labels_moves_boundaries_and_merges_touching_cells():
    from cellfuse.metric import evaluate_image
    from teachers.sam_prompts import perturb_labels

    truth = disc_labels((200, 200), 15, rmin=6, rmax=12, seed=5)
    same = perturb_labels(truth, np.random.default_rng(0), noise=0.0, merge_prob=0.0)
    np.testing.assert_array_equal(same, truth)
    a = perturb_labels(truth, np.random.default_rng(1))
    b = perturb_labels(truth, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)  # one seed, one copy (validation is repeatable)
    assert a.dtype == truth.dtype and a.shape == truth.shape and not np.array_equal(a, truth)
    assert set(np.unique(a)) <= set(np.unique(truth))
    sc = evaluate_image(truth, a, (0.5, 0.9))["scores"]
    assert sc[0.5]["f1"] > 0.8 and sc[0.9]["f1"] < 0.8  # found, but with imperfect masks

    pair = np.zeros((40, 60), np.uint16)
    pair[10:30, 5:30], pair[10:30, 30:55] = 1, 2  # touching
    pair[0:5, 0:5] = 3  # alone
    merged = perturb_labels(pair, np.random.default_rng(0), noise=0.0, merge_prob=1.0)
    assert set(np.unique(merged)) == {0, 1, 3}
    assert (merged[pair > 0] > 0).all() and (merged[pair == 2] == 1).all()


def test_training_mask_prompts_are_the_prior_cell_under_each_point():
    from teachers.sam_prompts import mask_prompt_input
    from teachers.sam_train import sample_prompts

    lab = np.zeros((64, 64), np.int32)
    lab[10:30, 5:30], lab[10:30, 30:55], lab[40:60, 40:60] = 1, 2, 3
    prior = lab.copy()
    prior[lab == 2] = 1  # the prompting teacher merged cells 1 and 2
    out = sample_prompts(lab, 3, np.random.default_rng(0), img_size=64, prior=prior, neg_points=0)
    for pt, target, given in zip(
        out["coords"][:, 0].numpy(), out["masks"].numpy(), out["mask_in"].numpy(), strict=True
    ):
        x, y = np.round(pt).astype(int)
        np.testing.assert_array_equal(given.astype(bool), prior == prior[y, x])
        np.testing.assert_array_equal(target.astype(bool), lab == lab[y, x])
    t = SAMTeacher(variant="vit_tiny")  # 128 px frame -> 64x64 mask input
    frame = torch.zeros(2, 128, 128)
    frame[0, :64, :64] = 1.0
    m = mask_prompt_input(frame, t.sam)
    assert m.shape == (2, 1, 64, 64)
    assert (m[0, 0, :32, :32] == 8.0).all() and (m[0, 0, 32:] == -8.0).all()
    assert (m[1] == -8.0).all()


@pytest.mark.parametrize("nominal", [16.0, 32.0])
def test_mask_prompts_reach_the_decoder_aligned_with_their_cells(monkeypatch, caplog, nominal):
    """A decoder that answers with its mask prompt gives back the prompting cells, on every
    tile and at every zoom: each prompt gets its own cell's mask."""
    from cellfuse.metric import evaluate_image

    truth = disc_labels((300, 260), 25, rmin=7, rmax=9, seed=3)
    monkeypatch.setattr(tsam, "encode", lambda sam, ims: torch.zeros(1))
    seen = []

    def decode(sam, emb, coords, labels, boxes=None, multimask=False, masks=None):
        seen.append(len(coords))
        return masks.clone(), torch.full((len(coords), 1), 0.9)

    monkeypatch.setattr(tsam, "decode", decode)
    t = SAMTeacher(variant="vit_tiny", mask_prompts=True, nominal_diameter=nominal, iou_thresh=0.5)
    inst = t.predict_with_prompts(np.zeros((300, 260, 3), np.uint8), Instances.from_labels(truth))
    assert len(seen) > 1  # several tiles
    assert inst.n == truth.max()
    assert evaluate_image(truth, inst.labels, (0.75,))["scores"][0.75]["f1"] == 1.0
    # an absent id (NaN centroid) is skipped and the other prompts keep their own masks
    gappy = truth.copy()
    gappy[gappy == 3] = 0
    prompts = Instances(gappy, np.ones(int(gappy.max()), np.float32))
    inst = t.predict_with_prompts(np.zeros((300, 260, 3), np.uint8), prompts)
    assert inst.n == truth.max() - 1
    assert evaluate_image(gappy, inst.labels, (0.75,))["scores"][0.75]["f1"] == 1.0
    # prompts from several teachers carry no one mask per point: merged centroids, a warning
    seen.clear()
    with caplog.at_level("WARNING", logger="teachers.sam"):
        monkeypatch.setattr(tsam, "decode", _fake_decode(radius=5.0)[0])
        two = t.predict_with_prompts(
            np.zeros((300, 260, 3), np.uint8), [Instances.from_labels(truth)] * 2
        )
    assert two.n == truth.max() and "mask_prompts needs the prompts as one Instances" in caplog.text


def test_a_training_step_with_mask_prompts_trains_the_mask_encoder(tmp_path, monkeypatch):
    import teachers.sam_calibration as sc
    import teachers.sam_train as st

    samples = _write_samples(tmp_path / "data")
    calls = []
    perturb = st.perturb_labels
    counting = lambda *a: calls.append(a[0].shape) or perturb(*a)  # noqa: E731
    monkeypatch.setattr(st, "perturb_labels", counting)
    monkeypatch.setattr(sc, "perturb_labels", counting)  # validation prompts
    t = SAMTeacher(variant="vit_tiny", mask_prompts=True)
    before = {k: v.clone() for k, v in t.sam.prompt_encoder.mask_downscaling.state_dict().items()}
    st.train_sam(
        t,
        samples,
        samples[:1],
        tmp_path / "work",
        max_steps=1,
        crops_per_step=1,
        prompts_per_crop=4,
        mask_prob=1.0,
        calibrate_images=0,
    )
    after = t.sam.prompt_encoder.mask_downscaling.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())
    # one perturbed crop for the step, one perturbed val image for its validation
    assert calls[0][0] <= t.img_size and calls[1] == (96, 96)


@pytest.mark.parametrize("mask_prompts", [False, True])
def test_eval_sam_scores_sam_against_its_prompts(tmp_path, mask_prompts):
    """``tools/eval_sam.py``: the true cells prompt SAM; a mask-prompt SAM gets imperfect
    copies of them instead (else the true masks would answer themselves)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import eval_sam

    _write_samples(tmp_path / "data")
    cfg = tmp_path / "sam.py"
    cfg.write_text(f"teacher = dict(type='sam', variant='vit_tiny', mask_prompts={mask_prompts})")
    ckpt = tmp_path / "sam.pth"
    torch.save(SAMTeacher(variant="vit_tiny").sam.state_dict(), ckpt)
    out = tmp_path / "out.json"
    argv = [str(cfg), "--checkpoint", str(ckpt), "--split", str(tmp_path / "data")]
    assert eval_sam.main([*argv, "--prompts", "gt", "--threads", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["sources"]["gt"]
    assert row["n_images"] == 2 and row["sam_s_per_mpx"] > 0
    if mask_prompts:
        assert row["prompts"]["f1_50"] > 0.8 and row["prompts"]["f1_75"] < 1.0
    else:
        assert row["prompts"] == {"f1_50": 1.0, "f1_75": 1.0}


def test_inference_zoom_is_calibrated_stored_and_overridable(tmp_path, monkeypatch):
    import teachers.sam_calibration as sc
    import teachers.sam_train as st

    t = SAMTeacher(variant="vit_tiny", nominal_diameter=20.0)
    monkeypatch.setattr(
        sc,
        "evaluate_sam",
        lambda teacher, samples, max_images=None: {"f1_75": -abs(teacher.infer_diameter - 25)},
    )
    diam, scores = st.calibrate_zoom(t, ["s"])
    assert diam == 25.0 and t.infer_diameter == 25.0 and sorted(scores) == [20.0, 25.0, 30.0]
    ckpt = tmp_path / "best.pth"
    torch.save({"model": t.sam.state_dict()}, ckpt)
    st.store_calibration(ckpt, "infer_diameter", diam, scores)
    loaded = SAMTeacher(variant="vit_tiny", nominal_diameter=20.0)
    loaded.load(ckpt)
    assert loaded.infer_diameter == 25.0
    pinned = SAMTeacher(variant="vit_tiny", nominal_diameter=20.0, infer_diameter=20.0)
    pinned.load(ckpt)  # the config wins over the checkpoint
    assert pinned.infer_diameter == 20.0
    # prediction zooms so the median prompt cell is infer_diameter wide
    scales = []
    monkeypatch.setattr(
        loaded, "predict_points", lambda image, pts, scale, *a: scales.append(scale)
    )
    labels = np.zeros((100, 100), np.uint16)
    labels[10:20, 10:20], labels[50:60, 50:60] = 1, 2  # equivalent diameter 11.28 px
    loaded.predict_with_prompts(np.zeros((100, 100, 3), np.uint8), Instances.from_labels(labels))
    assert scales == [pytest.approx(25.0 / (2 * np.sqrt(100 / np.pi)))]
