"""The flow U-Net teacher, its U-Net and its augmentation helpers."""

import contextlib
import math

import numpy as np
import pytest
import torch
from conftest import DEMO, SHARED_DATA
from helpers import disc_labels
from scipy import ndimage as ndi

from cellfuse.errors import ConfigError
from cellfuse.flows import labels_to_flows
from cellfuse.instances import Instances
from cellfuse.io import read_image
from cellfuse.layout import list_samples
from cellfuse.metric import evaluate_image
from cellfuse.nn.augment import (
    affine_sample,
    color_jitter,
    sample_crop,
    simulate_stain,
    transform_flows,
)
from cellfuse.nn.layers import count_parameters, pad_to_multiple
from cellfuse.nn.unet import UNet
from cellfuse.preprocess import median_diameter, prepare_image, resize_labels
from teachers import build_teacher
from teachers.flowunet import FlowUNetTeacher

TINY = dict(widths=(4, 8), depth=1, norm="batch", act="relu")


# ----------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
@pytest.mark.parametrize("act", ["relu", "silu", "gelu"])
def test_unet_shapes_and_config_round_trip(norm, act):
    net = UNet(3, 5, widths=(4, 8, 16), depth=1, norm=norm, act=act, residual=norm == "group")
    x, (h, w) = pad_to_multiple(torch.rand(2, 3, 30, 45), net.stride)
    assert x.shape[-2:] == (32, 48)
    assert net(x).shape == (2, 5, 32, 48)
    twin = UNet(**net.config())
    twin.load_state_dict(net.state_dict())
    assert count_parameters(twin) == count_parameters(net)


def test_unet_rejects_unknown_layers():
    with pytest.raises(ConfigError, match="unknown norm"):
        UNet(3, 3, norm="nope")
    with pytest.raises(ConfigError, match="unknown activation"):
        UNet(3, 3, act="nope")


# ----------------------------------------------------------------------------- augmentation


def test_prepare_image_any_input():
    u16 = read_image(SHARED_DATA / "neurips_samples" / "images" / "cell_00528.tif")
    for img in (u16, u16[..., 0], np.random.default_rng(0).integers(0, 255, (20, 30, 4), np.uint8)):
        x = prepare_image(img)
        assert x.shape == img.shape[:2] + (3,) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1
    bright = np.full((40, 40), 200, np.uint8)
    bright[10:20, 10:20] = 50  # a dark cell on a bright background becomes bright on dark
    x = prepare_image(bright)
    assert x[15, 15, 0] > x[0, 0, 0]


def test_median_diameter_and_resize_labels():
    lab = np.zeros((50, 50), np.uint16)
    yy, xx = np.ogrid[:50, :50]
    lab[(yy - 25) ** 2 + (xx - 25) ** 2 <= 100] = 1
    assert abs(median_diameter(lab) - 20) < 0.5
    assert median_diameter(np.zeros((5, 5), np.uint8)) == 0
    up = resize_labels(lab, (100, 100))
    assert abs(median_diameter(up) - 40) < 1 and set(np.unique(up)) == {0, 1}


@pytest.mark.parametrize("k,flip", [(1, False), (2, True), (3, False), (0, True)])
def test_affine_sample_rotates_flow_vectors(k, flip):
    lab = disc_labels((64, 64), 6, rmin=5, rmax=9, seed=2)
    lab[20:30, 5:40] = 7  # an elongated cell: flows are not radial
    fl = labels_to_flows(lab)
    out, q = affine_sample(
        np.concatenate([lab[None].astype(np.float32), fl]),
        (31.5, 31.5),
        64,
        1.0,
        k * math.pi / 2,
        flip,
        order=0,
    )
    lab_t = np.rint(out[0]).astype(np.uint16)
    expect = labels_to_flows(lab_t)
    got = transform_flows(out[1:], q)
    inside = lab_t > 0
    agree = (got * expect).sum(0)[inside]
    assert (agree > 0.9).mean() > 0.97


def test_sample_crop_and_color_jitter():
    rng = np.random.default_rng(0)
    lab = disc_labels((120, 90), 12, seed=4)
    img = np.repeat((lab > 0)[None].astype(np.float32), 3, 0)
    tgt = np.concatenate([(lab > 0)[None].astype(np.float32), labels_to_flows(lab)])
    all_p = dict(hsv=1, shuffle=1, gray=1, contrast=1, invert=1, noise=1)
    for _ in range(5):
        x, y = sample_crop(img, tgt, rng, 64, (0.5, 2.0), all_p)
        assert x.shape == (3, 64, 64) and y.shape == (3, 64, 64)
        assert set(np.unique(y[0])) <= {0.0, 1.0} and 0 <= x.min() and x.max() <= 1
        assert not y[1:, y[0] == 0].any()
    j = color_jitter(np.full((4, 4, 3), 0.5, np.float32), rng, {})
    assert np.allclose(j, 0.5)


def test_simulate_stain_colours_a_gray_crop_and_keeps_cells_bright():
    """Hue jitter cannot colour a gray (fluorescence) crop; the stain simulation does, and
    the nuclei stay the bright regions after its inversion, so the labels still fit."""
    lab = disc_labels((96, 96), 10, seed=2)
    gray = np.repeat(((lab > 0) * 0.8 + 0.05)[..., None], 3, -1).astype(np.float32)
    hsv_only = color_jitter(gray, np.random.default_rng(0), dict(hsv=1))
    assert np.ptp(hsv_only, axis=-1).max() < 1e-6  # still gray: the gap this fills
    for seed in range(5):
        x = simulate_stain(gray, np.random.default_rng(seed))
        assert x.shape == gray.shape and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert np.ptp(x, axis=-1).mean() > 0.01  # coloured
        assert x[lab > 0].mean() > x[lab == 0].mean() + 0.2  # cells bright on dark


def test_stain_off_leaves_the_random_stream_as_before():
    """Without the stain simulation (absent or 0) colour jitter draws exactly as it did
    before the option existed, one uniform per augmentation kind: runs without it (every
    profile but scarce) train on the same random crops as before. The extra draw once
    changed the demo students' training (issue 18's demo trace)."""

    class Counting:
        def __init__(self):
            self.rng, self.calls = np.random.default_rng(0), 0

        def random(self):
            self.calls += 1
            return self.rng.random()

    img = np.full((8, 8, 3), 0.5, np.float32)
    kinds = ("hsv", "shuffle", "gray", "contrast", "invert", "noise")
    for p in ({}, {"stain": 0.0}, dict.fromkeys(kinds, 0.0) | {"stain": 0}):
        c = Counting()
        color_jitter(img, c, p)
        assert c.calls == len(kinds)
    c = Counting()
    color_jitter(img, c, {"stain": 1e-9})  # on: one more draw, whether or not it fires
    assert c.calls == len(kinds) + 1


# ----------------------------------------------------------------------------- teacher


def _fake_network(teacher):
    """A local, exact 'network': cell = bright pixel, flows from connected components."""

    def network_output(x):
        fg = x[..., 0] > 0.5
        lab, _ = ndi.label(fg)
        return labels_to_flows(lab), fg.astype(np.float32)

    teacher.network_output = network_output
    teacher.net = UNet(3, 3, **TINY)
    return teacher


def test_tiled_and_whole_image_predictions_agree():
    """1024x1024 image: tiles of 256 (overlap 64) and one whole-image pass give the same cells."""
    truth = disc_labels((1024, 1024), 900, rmin=5, rmax=12, seed=7)
    img = np.where(truth > 0, 200, 20).astype(np.uint8)
    kw = dict(nominal_diameter=17.0, diameter=17.0, overlap=64, min_size=5, flow_iters=60)
    tiled = _fake_network(FlowUNetTeacher(tile=256, **kw)).predict(img)
    whole = _fake_network(FlowUNetTeacher(tile=2048, **kw)).predict(img)
    assert tiled.shape == whole.shape == (1024, 1024)
    assert evaluate_image(whole, tiled, [0.5])["scores"][0.5]["f1"] >= 0.99
    assert evaluate_image(truth, tiled, [0.5])["scores"][0.5]["f1"] >= 0.99
    assert 0 < tiled.scores.min() and tiled.scores.max() <= 1


@pytest.mark.parametrize("size,window", [(256, 512), (600, 256)])
def test_two_pass_scale_from_the_first_pass(size, window):
    truth = disc_labels((size, size), size * size // 2500, rmin=15, rmax=17, seed=1)  # d ~ 32
    img = np.where(truth > 0, 180, 10).astype(np.uint8)
    t = _fake_network(FlowUNetTeacher(nominal_diameter=16.0, min_size=5, estimate_window=window))
    seen = []
    orig = t.predict_at_scale

    def spy(x, scale):
        seen.append((x.shape[:2], scale))
        return orig(x, scale)

    t.predict_at_scale = spy
    inst = t.predict(img)
    first = (min(size, window),) * 2
    assert len(seen) == 2 and seen[0] == (first, 1.0)
    assert seen[1][0] == (size, size) and 0.45 < seen[1][1] < 0.55
    assert inst.shape == truth.shape
    assert evaluate_image(truth, inst, [0.5])["scores"][0.5]["f1"] >= 0.95


def test_empty_and_constant_images_give_empty_instances():
    t = FlowUNetTeacher(net=TINY)
    t.net = t.build_net()
    for img in (np.zeros((64, 80, 3), np.uint8), np.full((50, 50, 1), 9, np.uint16)):
        inst = t.predict(img)
        assert isinstance(inst, Instances) and inst.n == 0 and inst.shape == img.shape[:2]
    t.network_output = lambda x: (np.zeros((2,) + x.shape[:2], np.float32), np.zeros(x.shape[:2]))
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    assert t.predict(noise).n == 0


def test_predict_without_weights_raises():
    with pytest.raises(ConfigError, match="no weights"):
        FlowUNetTeacher().predict(np.ones((8, 8), np.uint8))


def test_one_training_step_lowers_loss_on_a_fixed_batch():
    t = FlowUNetTeacher(net=TINY, crop=64, batch_size=2)
    samples = list_samples(DEMO / "train", require_labels=True)[:2]
    data = t.prepare_data(samples, None)
    assert {"image", "target", "modality", "scale"} <= set(data[0])
    x, y = t.make_batch(data, t.sampling_weights(data), np.random.default_rng(0))
    torch.manual_seed(0)
    net = t.build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = t.loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_fit_load_predict_and_resume(tmp_path):
    samples = list_samples(DEMO / "train", require_labels=True)
    train, val = samples[:2], samples[2:3]
    cfg = dict(type="flowunet", net=TINY, crop=64, batch_size=2, train_minutes=0.04)
    cfg.update(val_every_minutes=0.02, num_threads=1, flow_iters=30)
    t = build_teacher(cfg)
    ckpt = t.fit(train, val, tmp_path)
    assert ckpt == tmp_path / "best.pth" and (tmp_path / "last.pth").is_file()
    assert set(t.val_metrics) == {"f1_50", "f1_75"}
    assert any((tmp_path / "cache").glob("*.npz"))
    # the checkpoint rebuilds the net without the config's net sizes
    t2 = FlowUNetTeacher()
    t2.load(ckpt)
    assert t2.net.config()["widths"] == [4, 8] and t2.val_metrics == t.val_metrics
    img = read_image(val[0].image)
    inst = t2.predict(img)
    assert inst.shape == img.shape[:2] and ((inst.scores >= 0) & (inst.scores <= 1)).all()
    last = torch.load(tmp_path / "last.pth", weights_only=True)["state"]
    t3 = build_teacher({**cfg, "train_minutes": 0.06})
    t3.fit(train, val, tmp_path, resume=True)
    again = torch.load(tmp_path / "last.pth", weights_only=True)["state"]
    assert again["step"] > last["step"] and again["train_seconds"] >= 0.06 * 60


def test_step_budget_gives_the_same_weights_twice(tmp_path):
    samples = list_samples(DEMO / "train", require_labels=True)
    train, val = samples[:2], samples[2:3]
    cfg = dict(type="flowunet", net=TINY, crop=64, batch_size=2, max_steps=4, val_every_steps=2)
    cfg.update(num_threads=1, flow_iters=20, seed=3)
    states = []
    for run in ("a", "b"):
        t = build_teacher(cfg)
        t.fit(train, val, tmp_path / run)
        last = torch.load(tmp_path / run / "last.pth", weights_only=True)
        assert last["state"]["step"] == 4
        assert [h["step"] for h in last["state"]["history"]] == [2, 4]
        states.append(last["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_step_budget_rejects_zero_steps():
    with pytest.raises(ConfigError, match="max_steps"):
        FlowUNetTeacher(max_steps=0)


def test_bf16_setting_leaves_cpu_training_bit_identical(tmp_path):
    """amp="bf16" (the full profile's) is for CUDA; on the CPU the weights are the fp32 ones."""
    samples = list_samples(DEMO / "train", require_labels=True)
    train, val = samples[:2], samples[2:3]
    cfg = dict(type="flowunet", net=TINY, crop=64, batch_size=2, max_steps=2, val_every_steps=2)
    cfg.update(num_threads=1, flow_iters=20, seed=3)
    states = []
    for amp in (None, "bf16"):
        t = build_teacher({**cfg, "amp": amp})
        assert isinstance(t.autocast(), contextlib.nullcontext)
        t.fit(train, val, tmp_path / str(amp))
        states.append(torch.load(tmp_path / str(amp) / "last.pth", weights_only=True))
    assert all(
        torch.equal(states[0]["state_dict"][k], states[1]["state_dict"][k])
        for k in states[0]["state_dict"]
    )
    with pytest.raises(ConfigError, match="amp"):
        FlowUNetTeacher(amp="fp8")
