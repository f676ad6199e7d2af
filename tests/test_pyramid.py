"""Pyramidal OME-TIFF written band by band (cellfuse.pyramid), the band-streaming stitcher
(cellfuse.stream) and the synthetic-slide tool."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import zarr
from conftest import DEMO, ROOT
from helpers import disc_labels
from scipy import ndimage as ndi

from cellfuse.instances import Instances
from cellfuse.pyramid import (
    PyramidReader,
    array_bands,
    downsample_mean,
    downsample_mode,
    pyramid_shapes,
    write_label_pyramid,
    write_pyramid,
)
from cellfuse.stream import BandStitcher
from cellfuse.tiling import predict_tiled


def _labels(shape, seed=0):
    """Random 5x7 px blocks of ids beyond uint16, a third of them background."""
    rng = np.random.default_rng(seed)
    small = rng.integers(70_000, 90_000, (-(-shape[0] // 5), -(-shape[1] // 7)), dtype=np.uint32)
    small[rng.random(small.shape) < 0.33] = 0
    return np.repeat(np.repeat(small, 5, axis=0), 7, axis=1)[: shape[0], : shape[1]].copy()


def test_downsample_mode_keeps_ids_and_prefers_cells():
    a = np.array([[0, 5, 7, 7], [0, 5, 7, 2], [3, 3, 0, 0]], np.uint32)
    out = downsample_mode(a)
    assert out.shape == (2, 2) and out.dtype == np.uint32
    # 2 zeros + 2 fives -> 5; three 7s -> 7; odd last row edge-padded: 3s and 0s -> 3, 0
    assert out.tolist() == [[5, 7], [3, 0]]
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert downsample_mean(img).shape == (1, 2, 3)


def test_pyramid_shapes_halve_down_to_one_tile():
    assert pyramid_shapes((1500, 2100), 256) == [
        (1500, 2100),
        (750, 1050),
        (375, 525),
        (188, 263),
        (94, 132),
    ]
    assert pyramid_shapes((100, 80), 512) == [(100, 80)]


def test_label_pyramid_opens_at_every_level(tmp_path):
    lab = _labels((1100, 1300))
    path = tmp_path / "labels.ome.tif"
    info = write_label_pyramid(path, array_bands(lab, 256), lab.shape, tile=256, name="cells")
    shapes = pyramid_shapes(lab.shape, 256)
    assert info["levels"] == [list(s) for s in shapes] and len(shapes) == 4
    with tifffile.TiffFile(path) as tif:  # tifffile: an OME pyramid, tiled, compressed
        assert tif.is_ome
        series = tif.series[0]
        assert [lv.shape for lv in series.levels] == shapes
        page = series.levels[0].keyframe
        assert page.is_tiled and page.tile == (256, 256) and page.compression == 8
        assert np.array_equal(series.levels[0].asarray(), lab)
        ref = lab
        for lv in series.levels[1:]:
            ref = downsample_mode(ref)
            assert np.array_equal(lv.asarray(), ref)
            assert set(np.unique(ref)) <= set(np.unique(lab))  # ids never mixed
    store = tifffile.imread(path, aszarr=True)  # zarr, as napari's multiscale loads it
    try:
        group = zarr.open(store, mode="r")
        for i, s in enumerate(shapes):
            assert group[str(i)].shape == s
        assert np.array_equal(group["0"][300:700, 900:1300], lab[300:700, 900:1300])
    finally:
        store.close()
    with PyramidReader(path) as r:
        assert r.levels == shapes and r.dtype == np.uint32
        win = (slice(1000, 1100), slice(1250, 1300))
        assert np.array_equal(r.read(win), lab[win])


def test_rgb_pyramid_and_plain_tiff_reader(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (600, 700, 3)).astype(np.uint8)
    path = tmp_path / "slide.ome.tif"
    write_pyramid(path, array_bands(img, 256), img.shape[:2], np.uint8, samples=3, tile=256)
    with PyramidReader(path) as r:
        assert r.levels == [(600, 700), (300, 350), (150, 175)]
        assert np.array_equal(r.read(level=0), img)
        assert np.array_equal(r.read(level=1), downsample_mean(img))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, img[..., 0])
    with PyramidReader(plain) as r:
        assert r.levels == [(600, 700)] and np.array_equal(
            r.read((slice(5, 9), slice(0, 3))), img[5:9, :3, 0]
        )


def test_writer_rejects_bad_bands(tmp_path):
    lab = np.zeros((300, 200), np.uint32)
    with pytest.raises(ValueError, match="expected"):
        write_label_pyramid(tmp_path / "a.tif", array_bands(lab, 100), lab.shape, tile=256)
    with pytest.raises(ValueError, match="cover"):
        write_label_pyramid(tmp_path / "b.tif", array_bands(lab[:256], 256), lab.shape, tile=256)
    assert not (tmp_path / "a.tif").exists() and not list(tmp_path.glob(".*"))


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from cellfuse.pyramid import array_bands, write_label_pyramid

    n, path = int(sys.argv[1]), sys.argv[2]

    def bands():  # 24 px square cells on a 28 px grid, unique ids, made band by band
        x = np.arange(n, dtype=np.uint32)
        col = np.where(x % 28 < 24, x // 28 + 1, 0).astype(np.uint32)
        for y in range(0, n, 512):
            r = np.arange(y, min(y + 512, n), dtype=np.uint32)
            b = (r // 28 * np.uint32(n // 28 + 1))[:, None] + col[None, :]
            b[(r % 28 >= 24)[:, None] | (col == 0)[None, :]] = 0
            yield b

    write_label_pyramid(path, array_bands(np.zeros((600, 700), np.uint32)), (600, 700))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = write_label_pyramid(path, bands(), (n, n))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(growth_mb=(after - before) / 1024, levels=info["levels"])))
    """
)


@pytest.mark.parametrize("n", [pytest.param(20_000, marks=pytest.mark.slow), 8_000])
def test_writer_memory_is_bounded(tmp_path, n):
    """An n x n uint32 label stream (1.6 GB at 20k) is written with a peak RSS growth of a
    few bands, not the image."""
    path = tmp_path / "big.ome.tif"
    res = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    out = json.loads(res.stdout)
    raw_mb = n * n * 4 / 2**20
    assert out["growth_mb"] < max(raw_mb / 6, 150), out  # 20k: ~200 MB of 1526 MB
    with PyramidReader(path) as r:
        assert r.levels == [tuple(s) for s in out["levels"]]
        corner = r.read((slice(n - 40, n), slice(n - 40, n)))
        assert corner.max() > 0 and r.read((slice(0, 28), slice(0, 28)))[0, 0] == 1


def _cc_predict(img):
    lab, n = ndi.label(img[..., 0] > 0)
    return Instances(lab.astype(np.uint32), np.linspace(0.1, 0.9, n))


@pytest.mark.parametrize("tile,overlap,band", [(256, 48, 128), (300, 64, 512), (2000, 64, 256)])
def test_band_stitcher_equals_predict_tiled(tile, overlap, band):
    truth = disc_labels((1000, 900), 500, rmin=4, rmax=11, seed=3)
    img = (truth > 0)[..., None].astype(np.uint8)
    ref = predict_tiled(_cc_predict, lambda w: img[w], img.shape[:2], tile=tile, overlap=overlap)
    st = BandStitcher(
        _cc_predict, lambda w: img[w], img.shape[:2], tile=tile, overlap=overlap, band=band
    )
    parts = list(st)
    assert all(p.shape == (band, 900) for p in parts[:-1]) and parts[-1].shape[0] <= band
    assert np.array_equal(np.concatenate(parts), ref.labels)
    assert st.n_ids == ref.n and np.array_equal(st.scores, ref.scores)


def test_band_stitcher_into_label_pyramid(tmp_path):
    truth = disc_labels((700, 650), 250, seed=5)
    img = (truth > 0)[..., None].astype(np.uint8)
    st = BandStitcher(_cc_predict, lambda w: img[w], img.shape[:2], tile=256, overlap=48, band=128)
    write_label_pyramid(tmp_path / "l.ome.tif", st, img.shape[:2], tile=128)
    ref = predict_tiled(_cc_predict, lambda w: img[w], img.shape[:2], tile=256, overlap=48)
    assert np.array_equal(tifffile.imread(tmp_path / "l.ome.tif"), ref.labels)


def test_make_slide_tool(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import make_slide

    out = tmp_path / "slide"
    make_slide.main(
        [
            "--split",
            str(DEMO / "train"),
            "--size",
            "1500",
            "--out",
            str(out),
            "--labels",
            "--tile",
            "256",
        ]
    )
    info = json.loads((out / "slide.json").read_text())
    with (
        PyramidReader(out / "slide.ome.tif") as im,
        PyramidReader(out / "slide_label.ome.tif") as lb,
    ):
        assert im.levels == lb.levels == [(1500, 1500), (750, 750), (375, 375), (188, 188)]
        lab, rgb = lb.read(), im.read()
    ids = np.unique(lab)
    assert ids[0] == 0 and ids.size - 1 == info["cells"] == ids[-1]  # globally unique 1..N
    assert rgb.shape == (1500, 1500, 3) and rgb.dtype == np.uint8
    assert rgb[lab > 0].mean() != rgb[lab == 0].mean()  # cells are where the pixels say
