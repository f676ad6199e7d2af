"""StudentPredictor: tiled vs whole image, batching, odd shapes, whole-slide files."""

import threading

import numpy as np
import pytest
import tifffile
from helpers import OracleBackend, disc_labels, same_partition
from scipy import ndimage as ndi

from cellfuse.errors import ConfigError
from cellfuse.io import read_labels
from cellfuse.metric import evaluate_image
from cellfuse.preprocess import prepare_image
from cellfuse.tiling import tile_grid
from student import files as files_mod
from student.model import build_student
from student.predictor import Normalizer, StudentPredictor


def _disc_image(shape, n, seed):
    lab = disc_labels(shape, n, 5, 9, seed=seed)
    img = np.where(lab > 0, 200, 20).astype(np.uint8)
    img[0, 0] = 255  # percentiles: keep the discs above 0.5 after normalisation
    return lab, np.repeat(img[..., None], 3, axis=2)


def test_tiled_equals_whole_image_2048():
    lab, img = _disc_image((2048, 2048), 600, seed=0)
    kw = dict(nominal_diameter=17.0, diameter=17.0, overlap=64)
    whole = StudentPredictor(OracleBackend(), tile=2048, batch=1, **kw).predict(img)
    backend = OracleBackend()
    tiled = StudentPredictor(backend, tile=512, batch=3, **kw).predict(img)
    n_tiles = len(tile_grid((2048, 2048), 512, 64))  # 25
    assert len(backend.calls) == -(-n_tiles // 3) and backend.calls[0][0] == 3
    assert same_partition(whole.labels, tiled.labels)
    assert evaluate_image(lab, tiled.labels, (0.5,))["scores"][0.5]["f1"] > 0.99


def test_scale_is_measured_and_applied():
    lab, img = _disc_image((300, 400), 80, seed=1)
    pred = StudentPredictor(OracleBackend(), nominal_diameter=28.0, tile=256, overlap=64)
    scale, first = pred.measure_scale(lambda w: prepare_image(img)[w], img.shape[:2])
    assert 1.5 < scale < 2.5 and first is not None  # discs are ~14 px, nominal 28
    inst = pred.predict(img)
    assert inst.labels.shape == lab.shape
    assert evaluate_image(lab, inst.labels, (0.5,))["scores"][0.5]["f1"] > 0.9


@pytest.mark.parametrize("shape", [(100, 130), (1, 300), (300, 1), (5, 7), (2, 2)], ids=str)
def test_small_and_strip_images(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*shape, 3), np.uint8)
    for backend in (OracleBackend(), build_student("flow_xs")):
        inst = StudentPredictor(backend, tile=256, overlap=32, device="cpu").predict(img)
        assert inst.labels.shape == shape and inst.n == int(inst.labels.max())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_and_empty_images(dtype):
    pred = StudentPredictor(build_student("flow_xs"), device="cpu")
    for img in (np.zeros((64, 80, 3), dtype), np.full((64, 80), 7, dtype), np.zeros((0, 5), dtype)):
        inst = pred.predict(img)
        assert inst.n == 0 and inst.labels.shape == img.shape[:2]


def test_normalizer_matches_prepare_image():
    rng = np.random.default_rng(0)
    for img in (
        rng.integers(0, 4000, (50, 60), np.uint16),
        rng.integers(100, 255, (40, 30, 4), np.uint8),  # bright background: inverted
    ):
        np.testing.assert_allclose(Normalizer.from_image(img)(img), prepare_image(img), atol=1e-6)


def test_predict_file_tiff_by_window_with_memmap(tmp_path, monkeypatch):
    lab, img = _disc_image((700, 900), 300, seed=2)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb")
    monkeypatch.setattr(files_mod, "MEMMAP_PX", 10_000)  # exercise the disk-backed path
    pred = StudentPredictor(OracleBackend(), diameter=17.0, tile=256, overlap=64, batch=2)
    info = pred.predict_file(path, tmp_path / "out" / "slide_label.tiff", progress=False)
    out = read_labels(tmp_path / "out" / "slide_label.tiff")
    assert info["shape"] == [700, 900] and info["n_cells"] == out.max()
    ref = pred.predict(img)  # per-image percentiles: equal here, the image is two-valued
    assert same_partition(ref.labels, out)
    assert not list((tmp_path / "out").glob(".labels-*"))  # the memmap is cleaned up
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.zeros((40, 50), np.uint8))
    assert pred.predict_file(blank, tmp_path / "blank_label.tiff", progress=False)["n_cells"] == 0


def test_predict_torch_batched_twin():
    import torch  # a dev install has it: missing is a failure, not a skip

    labs, imgs = zip(*[_disc_image((96, 128), 12, seed=s) for s in (3, 4)], strict=True)
    x = torch.from_numpy(np.stack([prepare_image(i).transpose(2, 0, 1) for i in imgs]))
    out = StudentPredictor(OracleBackend()).predict_torch(x)
    for lab, inst in zip(labs, out, strict=True):
        assert evaluate_image(lab, inst.labels, (0.5,))["scores"][0.5]["f1"] == 1.0


def _slide(tmp_path, shape=(1100, 1300), n=500, seed=6):
    lab, img = _disc_image(shape, n, seed=seed)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb")
    return lab, img, path


@pytest.mark.parametrize("stream", [False, True])
def test_prefetching_thread_changes_nothing_but_time(tmp_path, stream):
    """The next tiles' network pass in a second thread: the same labels as one thread, its
    time reported as ``parallel``; a network error in that thread reaches the caller."""
    _, _, path = _slide(tmp_path, shape=(700, 900), n=250)
    kw = dict(nominal_diameter=20.0, tile=256, overlap=64, batch=2)
    one = StudentPredictor(OracleBackend(), prefetch=False, **kw)
    two = StudentPredictor(OracleBackend(), **kw)
    a = one.predict_file(path, tmp_path / "a" / "s_label.tiff", progress=False, stream=stream)
    b = two.predict_file(path, tmp_path / "b" / "s_label.tiff", progress=False, stream=stream)
    assert a["n_cells"] == b["n_cells"] > 100
    la, lb = (
        read_labels(tmp_path / "a" / "s_label.tiff"),
        read_labels(tmp_path / "b" / "s_label.tiff"),
    )
    assert np.array_equal(la, lb)
    assert a["seconds"]["parallel"] == 0.0 and b["seconds"]["parallel"] >= 0.0
    assert two.timing["prefetched"] > 0 and one.timing["prefetched"] == 0

    class Failing(OracleBackend):
        def __call__(self, x):
            if len(self.calls) == 2:  # the third batch: one the prefetch thread runs
                raise RuntimeError("network died")
            return super().__call__(x)

    bad = StudentPredictor(Failing(), **kw)
    with pytest.raises(RuntimeError, match="network died"):
        bad.predict_file(path, tmp_path / "c" / "s_label.tiff", progress=False, stream=stream)
    assert not any(t.name.startswith("cellfuse-tiles") for t in threading.enumerate())


def test_stream_equals_in_memory_and_every_level_opens(tmp_path):
    import zarr  # a dev install has it: missing is a failure, not a skip

    lab, _, path = _slide(tmp_path)
    # scale measured (not given): both paths run the same measuring pass
    pred = StudentPredictor(OracleBackend(), nominal_diameter=20.0, tile=256, overlap=64, batch=2)
    mem = pred.predict_file(path, tmp_path / "mem" / "s_label.tiff", progress=False, stream=False)
    st = pred.predict_file(path, tmp_path / "st" / "s_label.tiff", progress=False, stream=True)
    assert st["stream"] and not mem["stream"] and st["scale"] == mem["scale"] != 1.0
    assert set(st["seconds"]) == {"read", "network", "postprocess", "other", "parallel", "total"}
    ref = read_labels(tmp_path / "mem" / "s_label.tiff")
    with tifffile.TiffFile(tmp_path / "st" / "s_label.tiff") as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(1100, 1300), (550, 650), (275, 325)]
        out = levels[0].asarray()
        assert all(lv.asarray().max() > 0 for lv in levels)
        z = zarr.open(tif.series[0].aszarr(), mode="r")
        assert [z[str(i)].shape for i in range(len(levels))] == [lv.shape for lv in levels]
    assert same_partition(ref, out) and st["n_cells"] >= mem["n_cells"] == len(np.unique(out)) - 1
    assert evaluate_image(lab, out, (0.5,))["scores"][0.5]["f1"] > 0.99


def test_stream_threshold_and_outputs_from_the_stream(tmp_path, monkeypatch):
    import pandas as pd

    from student.batch import predict_files

    _, _, path = _slide(tmp_path, (700, 800), 200, seed=7)
    monkeypatch.setattr(files_mod, "STREAM_PX", 500_000)  # 0.56 Mpx streams
    pred = StudentPredictor(OracleBackend(), diameter=17.0, tile=256, overlap=64)
    out = tmp_path / "out"
    fmt = ["ome-tiff", "csv", "geojson"]
    summary = predict_files(pred, [path], out, key="k", outputs=fmt)
    row = summary["rows"][0]
    assert row["status"] == "ok" and row["stream"]
    assert not (out / "slide_label.tiff").exists()  # became the .ome.tif, not rewritten
    with tifffile.TiffFile(out / "slide_label.ome.tif") as tif:
        assert tif.is_ome and len(tif.series[0].levels) == 2
        labels = tif.series[0].levels[0].asarray()
    cells = pd.read_csv(out / "slide_cells.csv")
    assert sorted(cells["id"]) == sorted(np.unique(labels[labels > 0]).tolist())
    split = summary["seconds_split"]
    assert 0 < split["network_share"] < 1 and "postprocess_share" in split
    again = predict_files(pred, [path], out, key="k", outputs=fmt)
    assert again["skipped"] == 1  # resumes on the streamed outputs


class SizeLimitedOracle(OracleBackend):
    """The oracle, but like a real network it only finds cells near the nominal size:
    components whose diameter at the network scale is outside 0.45-2.2 x 17 px are missed."""

    def __call__(self, x):
        out = super().__call__(x)
        for i, img in enumerate(x):
            lab, _ = ndi.label(img[0] > 0.5)
            d = 2 * np.sqrt(np.bincount(lab.ravel()) / np.pi)
            bad = (d < 0.45 * 17) | (d > 2.2 * 17)
            bad[0] = False
            out[i, 0][bad[lab]] = -8.0
        return out


def _two_scale_image():
    small = disc_labels((512, 512), 300, rmin=3, rmax=5, seed=8)  # d ~ 8
    big = disc_labels((512, 512), 60, rmin=15, rmax=18, seed=9)  # d ~ 33
    lab = np.concatenate([small, np.where(big > 0, big + small.max(), 0)], axis=1)
    img = np.where(lab > 0, 200, 20).astype(np.uint8)
    img[0, 0] = 255
    return lab, np.repeat(img[..., None], 3, axis=2)


def test_local_scale_mixed_sizes_seam_free():
    lab, img = _two_scale_image()
    kw = dict(nominal_diameter=17.0, tile=256, overlap=64, region=128)
    glob = StudentPredictor(SizeLimitedOracle(), **kw).predict(img)
    pred = StudentPredictor(SizeLimitedOracle(), local_scale=True, **kw)
    loc = pred.predict(img)

    def f1(p, half):
        return evaluate_image(lab[:, half], p.labels[:, half], (0.5,))["scores"][0.5]["f1"]

    left, right = slice(0, 512), slice(512, 1024)
    assert f1(glob, left) == f1(loc, left) == 1.0
    assert f1(glob, right) < 0.1 and f1(loc, right) > 0.97  # big cells missed at one scale
    assert f1(loc, slice(384, 640)) > 0.97  # no cut or doubled cell where the scale changes
    scales = pred.last_region_scales
    assert (scales[:, :4] > 1.5).all() and (scales[:, 4:] < 0.8).all()
    assert loc.n == len(np.unique(loc.labels)) - 1 and len(loc.scores) == loc.n


@pytest.mark.parametrize("seed", [0, 2])
def test_local_scale_leaves_one_scale_images_unchanged(seed):
    _, img = _disc_image((700, 900), 300, seed=seed)
    kw = dict(nominal_diameter=17.0, tile=256, overlap=64, region=128)
    glob = StudentPredictor(SizeLimitedOracle(), **kw).predict(img)
    pred = StudentPredictor(SizeLimitedOracle(), local_scale=True, **kw)
    loc = pred.predict(img)
    assert (pred.last_region_scales == pred.last_region_scales.flat[0]).all()
    assert np.array_equal(glob.labels, loc.labels) and np.array_equal(glob.scores, loc.scores)


class _ConstantBackend:
    """Logit 1, dy 2, dx 3 everywhere: not flip-equivariant, so its flip average shows the
    signs: a flow along a flipped axis comes back negated."""

    stride = 16

    def __call__(self, x):
        out = np.empty((x.shape[0], 3, *x.shape[2:]), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = 1.0, 2.0, 3.0
        return out


def test_flip_average_flips_the_flows_back():
    pred = StudentPredictor(_ConstantBackend(), flip_average=True)
    y = pred._flip_averaged(np.zeros((2, 3, 32, 48), np.float32))
    # logit kept; dy: +2 (identity, hflip) -2 (vflip, rot180) -> 0; dx likewise
    assert np.allclose(y[:, 0], 1.0) and np.allclose(y[:, 1:], 0.0)
    backend = OracleBackend()  # the batched twin runs the same 4 views
    StudentPredictor(backend, flip_average=True).predict_torch(np.zeros((2, 3, 32, 48)))
    assert len(backend.calls) == 4


def test_flip_average_of_an_equivariant_network_keeps_its_cells():
    lab, img = _disc_image((300, 400), 80, seed=2)
    kw = dict(nominal_diameter=17.0, diameter=17.0, tile=256, overlap=64)
    plain = StudentPredictor(OracleBackend(), **kw).predict(img)
    backend = OracleBackend()
    views = StudentPredictor(backend, flip_average=True, **kw).predict(img)
    assert len(backend.calls) % 4 == 0  # each batch runs in 4 views
    assert same_partition(plain.labels, views.labels)  # flows flipped back with their signs
    assert evaluate_image(lab, views.labels, (0.5,))["scores"][0.5]["f1"] > 0.99


class _CornerGhostOracle(OracleBackend):
    """The oracle plus one false cell at the top-left corner of whatever it is shown: in
    the image frame each flip view puts the ghost in another corner."""

    def __call__(self, x):
        x = np.array(x)
        x[:, :, 4:16, 4:16] = 1.0
        return super().__call__(x)


def test_view_vote_keeps_cells_every_view_sees_and_drops_a_one_view_ghost():
    lab, img = _disc_image((180, 220), 12, seed=4)
    band = np.ones(lab.shape, bool)
    band[24:-24, 24:-24] = False  # empty borders: no true cell where the ghost goes
    lab[np.isin(lab, lab[band])] = 0
    lab = ndi.label(lab > 0)[0]
    img = np.repeat(np.where(lab > 0, 200, 20).astype(np.uint8)[..., None], 3, axis=2)
    img[90, 110] = 255
    kw = dict(nominal_diameter=17.0, diameter=17.0, tile=256, overlap=64)
    plain = StudentPredictor(_CornerGhostOracle(), **kw).predict(img)
    assert plain.labels[10, 10] > 0 and plain.n == lab.max() + 1  # the ghost is a cell
    backend = _CornerGhostOracle()
    voted = StudentPredictor(backend, view_vote=True, **kw).predict(img)
    assert len(backend.calls) == 4  # one network pass per view
    assert voted.n == lab.max() and (voted.labels[:24, :24] == 0).all()  # 1 of 4 votes: gone
    assert evaluate_image(lab, voted.labels, (0.75,))["scores"][0.75]["f1"] == 1.0
    assert voted.scores.min() > 0.9  # every true cell: all 4 views agree (vote x own score)


def test_view_vote_refuses_flip_average_too():
    with pytest.raises(ConfigError, match="one kind of test-time views"):
        StudentPredictor(OracleBackend(), view_vote=True, flip_average=True)
