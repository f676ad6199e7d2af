"""Tests for cellfuse.io: image and label reading, label writing, atomic files."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from conftest import SHARED_DATA
from PIL import Image

from cellfuse import label_files, preprocess
from cellfuse.errors import ImageReadError, InvalidImageError, LabelError
from cellfuse.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    image_shape,
    normalize_image,
    read_image,
    read_labels,
    to_rgb,
    write_labels,
)

DATA = SHARED_DATA
NEURIPS_IMAGE = DATA / "neurips_samples/images/cell_00528.tif"
NEURIPS_LABEL = DATA / "neurips_samples/labels/cell_00528_label.tiff"
NEURIPS_UNLABELED = DATA / "neurips_unlabeled/img1.tiff"
DSB_PNGS = sorted(glob.glob(str(DATA / "dsb2018/train/images/*.png")))

H, W = 24, 32
DTYPES = [np.uint8, np.uint16, np.int32, np.float32]


def _random(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    hi = min(np.iinfo(dtype).max, 60000)
    return rng.integers(0, hi, shape, endpoint=True).astype(dtype)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------------- round trips

# name -> (stored shape, tifffile kwargs, how the stored array maps to HxWxC)
TIFF_LAYOUTS = {
    "gray": ((H, W), {}, lambda a: a[..., None]),
    "rgb": ((H, W, 3), {"photometric": "rgb"}, lambda a: a),
    "rgba": ((H, W, 4), {"photometric": "rgb", "extrasamples": ["unassalpha"]}, lambda a: a),
    "2ch": ((H, W, 2), {"photometric": "minisblack"}, lambda a: a),
    "5ch": ((H, W, 5), {"photometric": "minisblack"}, lambda a: a),
    "chfirst3": ((3, H, W), {"photometric": "minisblack"}, lambda a: a.transpose(1, 2, 0)),
    "chfirst2": ((2, H, W), {"photometric": "minisblack"}, lambda a: a.transpose(1, 2, 0)),
    "singleton": ((1, H, W, 1), {"photometric": "minisblack"}, lambda a: a[0]),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", list(TIFF_LAYOUTS))
def test_tiff_roundtrip(tmp_path, layout, dtype):
    shape, kwargs, to_hwc = TIFF_LAYOUTS[layout]
    data = _random(shape, dtype)
    path = tmp_path / f"{layout}.tif"
    tifffile.imwrite(path, data, **kwargs)

    img = read_image(path)

    expected = to_hwc(data)
    assert img.dtype == data.dtype
    assert img.shape == expected.shape
    assert img.flags.c_contiguous and img.flags.writeable
    np.testing.assert_array_equal(img, expected)
    assert image_shape(path) == expected.shape[:2]


def test_multipage_tiff_reads_first_series(tmp_path):
    first, second = _random((H, W), np.uint16, 1), _random((10, 12), np.uint16, 2)
    path = tmp_path / "multi.tif"
    tifffile.imwrite(path, first)
    tifffile.imwrite(path, second, append=True)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 2
    np.testing.assert_array_equal(read_image(path)[..., 0], first)
    assert image_shape(path) == (H, W)


@pytest.mark.parametrize(
    "shape, axes",
    [((2, H, W), "CYX"), ((1, 3, 1, H, W), "TCZYX"), ((H, W), "YX")],
)
def test_ome_tiff(tmp_path, shape, axes):
    data = _random(shape, np.uint16)
    path = tmp_path / "img.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": axes}, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    squeezed = data.squeeze()
    expected = squeezed[..., None] if squeezed.ndim == 2 else squeezed.transpose(1, 2, 0)
    np.testing.assert_array_equal(read_image(path), expected)


def _write_pyramid(path: Path, data: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, subifds=2, tile=(16, 16), photometric="minisblack")
        tw.write(data[::2, ::2], subfiletype=1, tile=(16, 16), photometric="minisblack")
        tw.write(data[::4, ::4], subfiletype=1, tile=(16, 16), photometric="minisblack")


def test_pyramid_reads_level0(tmp_path):
    data = _random((64, 96), np.uint16)
    path = tmp_path / "pyramid.tif"
    _write_pyramid(path, data)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].levels) == 3
    np.testing.assert_array_equal(read_image(path)[..., 0], data)
    assert image_shape(path) == (64, 96)
    window = read_image(path, region=(slice(10, 40), slice(50, 90)))
    np.testing.assert_array_equal(window[..., 0], data[10:40, 50:90])


def test_bigtiff(tmp_path):
    data = _random((H, W, 3), np.uint8)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, bigtiff=True, photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_image(path), data)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_big_endian_tiff_comes_back_native(tmp_path, dtype):
    data = _random((H, W), dtype)
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, data, byteorder=">")
    with tifffile.TiffFile(path) as tif:
        assert tif.byteorder == ">"
    for img in (read_image(path), read_image(path, region=(slice(2, 9), slice(3, 30)))):
        assert img.dtype.isnative and img.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(read_image(path)[..., 0], data)


@pytest.mark.parametrize(
    "shape, dtype",
    [((H, W), np.uint8), ((H, W, 3), np.uint8), ((H, W, 4), np.uint8), ((H, W), np.uint16)],
    ids=["gray8", "rgb8", "rgba8", "gray16"],
)
def test_png_roundtrip(tmp_path, shape, dtype):
    data = _random(shape, dtype)
    path = tmp_path / "img.png"
    Image.fromarray(data).save(path)
    img = read_image(path)
    assert img.dtype == data.dtype
    np.testing.assert_array_equal(img, data if data.ndim == 3 else data[..., None])
    assert image_shape(path) == (H, W)


def test_png_rgb16_keeps_16_bits(tmp_path):
    # Pillow would reduce this to 8 bits.
    data = _random((H, W, 3), np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(imagecodecs.png_encode(data))
    img = read_image(path)
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, data)


def test_png_palette_becomes_rgb(tmp_path):
    rgb = _random((H, W, 3), np.uint8)
    path = tmp_path / "pal.png"
    Image.fromarray(rgb).convert("P").save(path)
    img = read_image(path)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".bmp", ".JPG"])
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_bmp(tmp_path, suffix, channels):
    yy, xx = np.mgrid[0:H, 0:W]
    gray = (yy * 5 + xx * 3).astype(np.uint8)  # a smooth ramp, < 256
    data = gray if channels == 1 else np.stack([gray, 255 - gray, gray // 2], axis=-1)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(data).save(path, format="BMP" if suffix == ".bmp" else "JPEG", quality=95)
    img = read_image(path)
    assert img.shape == (H, W, channels) and img.dtype == np.uint8
    expected = data.reshape(H, W, channels).astype(int)
    tolerance = 0 if suffix == ".bmp" else 12
    assert np.abs(img.astype(int) - expected).max() <= tolerance


# --------------------------------------------------------------------------- real fixtures


def test_neurips_sample_image_and_label():
    img = read_image(NEURIPS_IMAGE)
    assert img.shape == (200, 200, 1) and img.dtype == np.uint16
    labels = read_labels(NEURIPS_LABEL, shape=img.shape[:2])
    assert labels.shape == (200, 200) and labels.dtype == np.uint16
    with tifffile.TiffFile(NEURIPS_LABEL) as tif:
        raw = tif.asarray()
    assert raw.dtype == np.int16
    np.testing.assert_array_equal(labels, raw)
    assert len(np.unique(labels)) - 1 == 44


def test_neurips_unlabeled_image():
    img = read_image(NEURIPS_UNLABELED)
    assert img.ndim == 3 and img.shape[2] in (1, 3, 4)
    assert image_shape(NEURIPS_UNLABELED) == img.shape[:2]


@pytest.mark.skipif(not DSB_PNGS, reason="dsb2018 data not present")
def test_dsb_png_is_rgba():
    img = read_image(DSB_PNGS[0])
    assert img.ndim == 3 and img.shape[2] == 4 and img.dtype == np.uint8
    rgb = to_rgb(img)
    assert rgb.shape == img.shape[:2] + (3,)
    np.testing.assert_array_equal(rgb, img[..., :3])


# --------------------------------------------------------------------------- regions


def test_region_reads_only_needed_tiles(tmp_path, monkeypatch):
    data = _random((512, 640), np.uint16)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, data, tile=(64, 64), compression="zlib")
    # Corrupt the last tile in place: a whole-image read now fails, a window that does
    # not touch it must still succeed, which proves the window reads only its tiles.
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[-1], page.databytecounts[-1]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)
    with pytest.raises(ImageReadError):
        read_image(path)

    def no_full_read(*args, **kwargs):
        raise AssertionError("region read loaded the whole image")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_full_read)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_full_read)
    region = (slice(70, 300), slice(5, 333))
    window = read_image(path, region=region)
    assert window.shape == (230, 328, 1)
    np.testing.assert_array_equal(window[..., 0], data[region])


REGIONS = {
    "gray": (slice(3, 20), slice(5, 30)),
    "rgb": (slice(0, H), slice(0, W)),
    "chfirst3": (slice(-10, None), slice(None, 7)),
    "5ch": (slice(20, 1000), slice(30, 99)),  # clipped to the image
}
REGION_CASES = [(layout, ".tif") for layout in REGIONS] + [("gray", ".png"), ("rgb", ".png")]


@pytest.mark.parametrize("layout, suffix", REGION_CASES)
def test_region_equals_slice_of_full_read(tmp_path, layout, suffix):
    shape, kwargs, _ = TIFF_LAYOUTS[layout]
    region = REGIONS[layout]
    data = _random(shape, np.uint8)
    path = tmp_path / f"img{suffix}"
    if suffix == ".png":
        Image.fromarray(data).save(path)
    else:
        tifffile.imwrite(path, data, tile=(16, 16), **kwargs)
    full = read_image(path)
    window = read_image(path, region=region)
    np.testing.assert_array_equal(window, full[region])


def test_constant_region_is_allowed(tmp_path):
    data = np.zeros((64, 64), np.uint8)
    data[40:, 40:] = 7
    path = tmp_path / "bg.tif"
    tifffile.imwrite(path, data)
    assert read_image(path, region=(slice(0, 32), slice(0, 32))).max() == 0


def test_empty_region_raises(tmp_path):
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, _random((H, W), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        read_image(path, region=(slice(5, 5), slice(0, 10)))


# --------------------------------------------------------------------------- bad input


def _write_tif(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path


def _truncated(path: Path, **kwargs) -> Path:
    _write_tif(path, _random((100, 120), np.uint16), **kwargs)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _text_file(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def _zero_bytes(path: Path) -> Path:
    path.touch()
    return path


def _truncated_png(path: Path) -> Path:
    Image.fromarray(_random((100, 120), np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


READ_ERRORS = {
    "missing": ("missing.tif", lambda p: p),
    "zero_tif": ("empty.tif", _zero_bytes),
    "zero_png": ("empty.png", _zero_bytes),
    "truncated": ("cut.tif", _truncated),
    "truncated_zlib": ("cutz.tif", lambda p: _truncated(p, compression="zlib")),
    "truncated_tiled": ("cutt.tif", lambda p: _truncated(p, tile=(32, 32))),
    "truncated_png": ("cut.png", _truncated_png),
    "text_png": ("notes.png", _text_file),
    "text_tif": ("notes.tif", _text_file),
    "text_jpg": ("notes.jpg", _text_file),
    "suffix_txt": ("image.txt", _text_file),
    "suffix_gif": ("image.gif", _text_file),
    "directory": ("folder.tif", lambda p: p.mkdir() or p),
}


@pytest.mark.parametrize("case", list(READ_ERRORS))
def test_unreadable_files_raise_image_read_error(tmp_path, case):
    name, make = READ_ERRORS[case]
    path = make(tmp_path / name)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert name in message and "\n" not in message
    if case.startswith("truncated") and case != "truncated_png":
        assert "truncated" in message
    if not case.startswith("truncated"):  # image_shape reads only the header
        with pytest.raises(ImageReadError, match=name):
            image_shape(path)
    if case != "text_jpg":  # read_labels refuses any JPEG with a LabelError
        with pytest.raises(ImageReadError, match=name):
            read_labels(path)


def _write_png(path: Path, data: np.ndarray) -> Path:
    Image.fromarray(data).save(path)
    return path


INVALID = {
    "0x5": ("e.tif", lambda p: _write_tif(p, np.zeros((0, 5), np.uint8)), "0x5"),
    "5x0": ("e.tif", lambda p: _write_tif(p, np.zeros((5, 0), np.uint8)), "5x0"),
    "1x1_tif": ("one.tif", lambda p: _write_tif(p, np.ones((1, 1), np.uint8)), "1x1"),
    "1x1_png": ("one.png", lambda p: _write_png(p, np.ones((1, 1), np.uint8)), "1x1"),
    "1xW": ("row.tif", lambda p: _write_tif(p, _random((1, 50), np.uint8)), "1x50"),
    "Hx1_rgb": ("col.png", lambda p: _write_png(p, _random((50, 1, 3), np.uint8)), "50x1"),
    "zstack": ("z.tif", lambda p: _write_tif(p, _random((8, H, W), np.uint8)), "shape"),
    "4d": (
        "c.tif",
        lambda p: _write_tif(p, _random((2, 3, H, W), np.uint8), photometric="minisblack"),
        "shape",
    ),
}


@pytest.mark.filterwarnings("ignore:.*zero-size array")
@pytest.mark.parametrize("case", list(INVALID))
def test_degenerate_images_raise_invalid_image_error(tmp_path, case):
    name, make, fragment = INVALID[case]
    path = make(tmp_path / name)
    with pytest.raises(InvalidImageError) as info:
        read_image(path)
    assert name in str(info.value) and fragment in str(info.value)
    with pytest.raises(InvalidImageError, match=name):
        image_shape(path)


@pytest.mark.parametrize("value", [0, 7])
@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_constant_image(tmp_path, value, suffix):
    data = np.full((H, W), value, np.uint8)
    path = tmp_path / f"flat{suffix}"
    (_write_tif if suffix == ".tif" else _write_png)(path, data)
    with pytest.raises(InvalidImageError) as info:
        read_image(path)
    assert f"flat{suffix}" in str(info.value)
    assert f"image is constant (all pixels = {value})" in str(info.value)
    img = read_image(path, allow_constant=True)
    assert img.shape == (H, W, 1) and (img == value).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_few_non_finite_pixels_are_replaced_with_a_warning(tmp_path, bad, caplog):
    data = _random((H, W), np.float32)
    data[3, 4] = data[10, 11] = bad
    path = _write_tif(tmp_path / "nonfinite.tif", data)
    with caplog.at_level("WARNING", logger="cellfuse.io"):
        img = read_image(path)
    assert np.isfinite(img).all()
    assert (
        img[3, 4, 0]
        == img[10, 11, 0]
        == np.median(np.delete(data.ravel(), [3 * W + 4, 10 * W + 11]))
    )
    np.testing.assert_array_equal(
        np.delete(img.ravel(), [3 * W + 4, 10 * W + 11]),
        np.delete(data.ravel(), [3 * W + 4, 10 * W + 11]),
    )
    kind = "NaN" if np.isnan(bad) else "inf"
    assert f"nonfinite.tif: replaced 2 {kind} pixel values" in caplog.text
    seen = []
    read_image(path, on_non_finite=seen.append)
    assert len(seen) == 1 and f"2 {kind}" in seen[0]


def test_a_mostly_non_finite_image_is_an_error_but_a_window_is_filled(tmp_path):
    data = _random((H, W), np.float32)
    data[:, : W // 2 + 2] = np.nan
    data[0, -1] = np.inf
    path = _write_tif(tmp_path / "mostly_nan.tif", data)
    with pytest.raises(InvalidImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "mostly_nan.tif" in message and "NaN and 1 inf" in message and "at most 50%" in message
    window = read_image(path, region=(slice(0, 8), slice(0, 8)))  # all NaN: filled with 0
    assert (window == 0).all()


def test_non_finite_pixels_are_filled_per_channel(tmp_path):
    data = np.stack([np.full((H, W), 1.0), np.arange(H * W).reshape(H, W)], -1).astype(np.float32)
    data[5, 5, :] = np.nan
    path = _write_tif(tmp_path / "two.tif", data, photometric="minisblack", planarconfig="contig")
    img = read_image(path)
    assert img[5, 5, 0] == 1.0 and img[5, 5, 1] == np.median(
        np.delete(data[..., 1].ravel(), 5 * W + 5)
    )


# --------------------------------------------------------------------------- to_rgb / normalize


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_to_rgb(channels, dtype):
    img = _random((H, W, channels), dtype)
    rgb = to_rgb(img)
    assert rgb.shape == (H, W, 3) and rgb.dtype == img.dtype
    if channels == 1:
        assert all((rgb[..., i] == img[..., 0]).all() for i in range(3))
    elif channels == 2:
        np.testing.assert_array_equal(rgb[..., :2], img)
        assert (rgb[..., 2] == 0).all()
    else:
        np.testing.assert_array_equal(rgb, img[..., :3])


def test_to_rgb_accepts_2d_and_rejects_6_channels():
    assert to_rgb(np.ones((4, 5), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(InvalidImageError):
        to_rgb(np.ones((4, 5, 6), np.uint8))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_normalize_range_and_dtype(dtype):
    img = _random((64, 64, 3), dtype)
    out = normalize_image(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0


def test_normalize_constant_channel_is_zero():
    img = _random((32, 32, 3), np.uint16)
    img[..., 1] = 500
    out = normalize_image(img)
    assert (out[..., 1] == 0).all()
    assert out[..., 0].max() == 1.0 and out[..., 2].max() == 1.0
    assert (normalize_image(np.full((8, 8), 3, np.uint8)) == 0).all()


def test_normalize_per_channel():
    img = _random((32, 32, 2), np.float32)
    img[..., 1] *= 10
    per = normalize_image(img, 0, 100, per_channel=True)
    joint = normalize_image(img, 0, 100, per_channel=False)
    assert per[..., 0].max() == 1.0 and per[..., 1].max() == 1.0
    assert joint[..., 0].max() < 0.11 and joint[..., 1].max() == 1.0
    np.testing.assert_allclose(
        per[..., 1], (img[..., 1] - img[..., 1].min()) / np.ptp(img[..., 1]), atol=1e-6
    )


def test_normalize_subsamples_big_images(monkeypatch):
    img = _random((300, 300, 1), np.uint16)
    exact = normalize_image(img)
    monkeypatch.setattr(preprocess, "_PERCENTILE_SAMPLE_PX", 10_000)
    approx = normalize_image(img)
    assert np.abs(approx - exact).max() < 0.02


def test_normalize_rejects_bad_percentiles():
    with pytest.raises(ValueError):
        normalize_image(np.ones((4, 4)), 50, 10)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "dtype, max_id, expected",
    [
        (np.int16, 300, np.uint16),
        (np.uint8, 200, np.uint16),
        (np.int32, 65535, np.uint16),
        (np.int64, 70000, np.uint32),
        (np.uint32, 70000, np.uint32),
        (np.float32, 1000, np.uint16),
    ],
)
def test_read_labels_dtype(tmp_path, dtype, max_id, expected):
    labels = np.zeros((H, W), dtype)
    labels[2:6, 3:9] = max_id
    labels[10:12, 20:25] = 5  # ids need not be sequential
    path = _write_tif(tmp_path / "lab.tif", labels)
    out = read_labels(path, shape=(H, W))
    assert out.dtype == expected and out.shape == (H, W)
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("shape", [(H, W, 1), (1, H, W)])
def test_read_labels_single_channel_3d(tmp_path, shape):
    labels = _random(shape, np.uint16)
    path = _write_tif(tmp_path / "lab.tif", labels, photometric="minisblack")
    np.testing.assert_array_equal(read_labels(path), labels.reshape(H, W))


def test_read_labels_png(tmp_path):
    labels = _random((H, W), np.uint16)
    path = _write_png(tmp_path / "lab.png", labels)
    np.testing.assert_array_equal(read_labels(path), labels)
    palette = Image.fromarray((labels % 200).astype(np.uint8)).convert("P")
    palette.save(tmp_path / "pal.png")
    assert read_labels(tmp_path / "pal.png").shape == (H, W)


def _labels_with(value, dtype=np.int32, shape=(H, W)) -> np.ndarray:
    labels = np.zeros(shape, dtype)
    labels[3:7, 4:9] = value
    labels[10:14, 4:9] = 2
    return labels


LABEL_ERRORS = {
    "negative": (_labels_with(-3), {}, "has negative labels (min -3)"),
    "fraction": (_labels_with(1.5, np.float32), {}, "non-integer"),
    "nan": (_labels_with(np.nan, np.float32), {}, "NaN"),
    "shape": (_labels_with(1, shape=(100, 120)), {"shape": (100, 100)},
              "label shape 100x120 does not match image shape 100x100"),
    "channels": (_random((H, W, 3), np.uint8), {}, "single-channel"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LABEL_ERRORS))
def test_bad_labels_raise_label_error(tmp_path, case):
    labels, kwargs, fragment = LABEL_ERRORS[case]
    extra = {"photometric": "rgb"} if labels.ndim == 3 else {}
    path = _write_tif(tmp_path / f"{case}_label.tif", labels, **extra)
    with pytest.raises(LabelError) as info:
        read_labels(path, **kwargs)
    assert path.name in str(info.value) and fragment in str(info.value)


def test_read_labels_rejects_jpeg(tmp_path):
    path = _write_png(tmp_path / "lab.jpg", np.ones((H, W), np.uint8))
    with pytest.raises(LabelError, match="lab.jpg"):
        read_labels(path)


@pytest.mark.parametrize(
    "dtype, max_id, expected",
    [
        (np.uint8, 9, np.uint16),
        (np.int64, 65535, np.uint16),
        (np.int64, 70000, np.uint32),
        (np.uint32, 2**32 - 1, np.uint32),
        (np.bool_, 1, np.uint16),
    ],
)
def test_write_labels_dtype_and_roundtrip(tmp_path, dtype, max_id, expected):
    labels = np.zeros((H, W), dtype)
    labels[2:6, 3:9] = max_id
    out = write_labels(tmp_path / "sub" / "x_label.tiff", labels)
    assert out == tmp_path / "sub" / "x_label.tiff"
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].dtype == expected
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    back = read_labels(out)
    assert back.dtype == expected
    np.testing.assert_array_equal(back, labels.astype(expected))
    assert _no_temp_files(out.parent)


def test_write_labels_is_compressed(tmp_path):
    labels = np.zeros((256, 256), np.uint32)
    for i in range(20):
        labels[i * 12 : i * 12 + 10, 5:60] = 70000 + i
    out = write_labels(tmp_path / "lab.tif", labels)
    assert out.stat().st_size < labels.nbytes / 10


def test_write_labels_tiled_and_bigtiff(tmp_path, monkeypatch):
    monkeypatch.setattr(label_files, "_TILED_LABELS_PX", 1000)
    monkeypatch.setattr(label_files, "_BIGTIFF_BYTES", 100)
    labels = _random((600, 530), np.uint16)
    out = write_labels(tmp_path / "big_label.tif", labels)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled
        assert tif.pages[0].tilelength == 512
    np.testing.assert_array_equal(read_labels(out), labels)
    window = read_image(out, region=(slice(500, 600), slice(0, 530)))
    np.testing.assert_array_equal(window[..., 0], labels[500:600])


def test_write_labels_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x_label.tiff"
    old = _labels_with(4, np.uint16)
    write_labels(path, old)
    before = path.read_bytes()
    real_imwrite = tifffile.imwrite

    def dying_imwrite(file, data, **kwargs):
        real_imwrite(file, data[: len(data) // 2], **kwargs)  # half a file, then a crash
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", dying_imwrite)
    with pytest.raises(OSError, match="disk full"):
        write_labels(path, _labels_with(9, np.uint16))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_label.tiff"]


def test_write_labels_rejects_bad_labels(tmp_path):
    with pytest.raises(LabelError, match="neg.tif"):
        write_labels(tmp_path / "neg.tif", _labels_with(-1))
    with pytest.raises(LabelError, match="rgb.tif"):
        write_labels(tmp_path / "rgb.tif", np.ones((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic files


def test_atomic_write_text_and_bytes(tmp_path):
    text_path = atomic_write_text(tmp_path / "a" / "r.json", '{"f1": 0.5}\n')
    assert text_path.read_text() == '{"f1": 0.5}\n'
    bytes_path = atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert bytes_path.read_bytes() == b"\x00\x01"
    mode = stat.S_IMODE(bytes_path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(path, newline="") as fh:
        fh.write("new, half written")
        raise RuntimeError("crash")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with pytest.raises(ValueError):
        with atomic_write(path, "a"):
            pass
