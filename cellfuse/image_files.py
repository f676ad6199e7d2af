"""Image files to arrays: the file checks, the header read, TIFF decoding (tifffile; windows
through zarr) and PNG/JPEG/BMP decoding (Pillow; 16-bit PNGs through imagecodecs), and the
axis rules (singleton axes dropped, channel-first detected) that images and labels share.

:func:`cellfuse.io.read_image` and :func:`cellfuse.label_files.read_labels` build on these;
every failure is an :class:`~cellfuse.errors.ImageReadError` or
:class:`~cellfuse.errors.InvalidImageError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellfuse.errors import ImageReadError, InvalidImageError
from cellfuse.preprocess import MAX_CHANNELS

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")

# Errors tifffile, zarr and imagecodecs raise on corrupt or unreadable data (TiffFileError
# is a ValueError only in recent tifffile).
_TIFF_ERRORS = (
    tifffile.TiffFileError,
    ValueError,
    OSError,
    RuntimeError,
    KeyError,
    IndexError,
    EOFError,
    struct.error,
)
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


Region = tuple[slice, slice]


class _EmptyRegionError(ValueError):
    """A caller asked for a window with no pixels (a bug in the caller, not the file)."""


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Height and width of an image, read from its header without decoding pixels.

    The same rules as :func:`read_image` apply (first series, level 0, singleton axes
    dropped, channel-first detection), so the result is the shape ``read_image`` returns.

    Args:
        path: image file with one of :data:`IMAGE_SUFFIXES`.

    Returns:
        ``(H, W)``.

    Raises:
        ImageReadError: as :func:`read_image`.
        InvalidImageError: degenerate or unsupported shape, as :func:`read_image`.
    """
    path = Path(path)
    check_file(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            with tifffile.TiffFile(path) as tif:
                shape = _first_level(tif, path).shape
        except (ImageReadError, InvalidImageError):
            raise
        except _TIFF_ERRORS as exc:
            raise ImageReadError(f"{path}: cannot read TIFF header ({_one_line(exc)})") from exc
        axes = _plan_axes(shape, path)
        h, w = shape[axes[0]], shape[axes[1]]
    else:
        from PIL import Image

        try:
            with _quiet_pil(), Image.open(path) as im:
                w, h = im.size
        except Image.UnidentifiedImageError as exc:
            raise ImageReadError(f"{path}: not an image (unknown or corrupt format)") from exc
        except (*_PIL_ERRORS, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"{path}: cannot read image header ({_one_line(exc)})") from exc
    _check_size(h, w, path)
    return int(h), int(w)


# ----------------------------------------------------------------------------- checks


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def check_file(path: Path) -> None:
    """Raise ImageReadError for an unsupported suffix, a missing or an empty file."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageReadError(
            f"{path}: unsupported file type {path.suffix!r} (expected one of "
            f"{', '.join(IMAGE_SUFFIXES)})"
        )
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot access file ({_one_line(exc)})") from exc
    if not path.is_file():
        raise ImageReadError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def _check_size(h: int, w: int, path: Path) -> None:
    if h < 2 or w < 2:
        raise InvalidImageError(f"{path}: image is {h}x{w}; both sides must be at least 2 px")


def kept_axes(shape: Sequence[int]) -> list[int]:
    """Axes left after dropping singleton axes, never fewer than two.

    Leading and trailing singletons go first (``1xHxW``, ``HxWx1``, ``TCZYX`` with T=1);
    inner ones only while more than three axes are left, so the width-1 axis of an
    ``Hx1xC`` image is kept (and the image reported as degenerate).
    """
    kept = list(range(len(shape)))
    while len(kept) > 2 and shape[kept[0]] == 1:
        kept.pop(0)
    while len(kept) > 2 and shape[kept[-1]] == 1:
        kept.pop()
    while len(kept) > 3 and any(shape[i] == 1 for i in kept):
        kept.remove(next(i for i in kept if shape[i] == 1))
    return kept


def _plan_axes(shape: Sequence[int], path: Path) -> tuple[int, int, int | None]:
    """Axes of the raw array that hold H, W and C (None: single channel).

    After dropping singleton axes (see :func:`kept_axes`) the array must be HxW, HxWxC or
    CxHxW with C <= 5; CxHxW when the first axis is 2..5 long and the last longer than 5.
    """
    if len(shape) < 2 or any(s == 0 for s in shape):
        dims = "x".join(str(s) for s in shape)
        raise InvalidImageError(f"{path}: image is {dims}; both sides must be at least 2 px")
    kept = kept_axes(shape)
    if len(kept) == 2:
        return kept[0], kept[1], None
    if len(kept) == 3:
        s0, s2 = shape[kept[0]], shape[kept[2]]
        if 2 <= s0 <= MAX_CHANNELS and s2 > MAX_CHANNELS:
            return kept[1], kept[2], kept[0]
        if s2 <= MAX_CHANNELS:
            return kept[0], kept[1], kept[2]
    raise InvalidImageError(
        f"{path}: unsupported image shape {tuple(shape)}: expected HxW, HxWxC or CxHxW "
        f"with at most {MAX_CHANNELS} channels (for a z-stack or time series, save one "
        "plane per file)"
    )


def _region_slices(region: Region, h: int, w: int, path: Path) -> tuple[slice, slice]:
    if (
        not isinstance(region, tuple | list)
        or len(region) != 2
        or not all(isinstance(s, slice) for s in region)
    ):
        raise TypeError(f"region must be (slice(y0, y1), slice(x0, x1)), got {region!r}")
    ys = slice(*region[0].indices(h))
    xs = slice(*region[1].indices(w))
    if len(range(h)[ys]) == 0 or len(range(w)[xs]) == 0:
        raise _EmptyRegionError(f"{path}: region {region!r} is empty for a {h}x{w} image")
    return ys, xs


def _index(ndim: int, axes: tuple[int, int, int | None], ys: slice, xs: slice) -> tuple:
    """Index that picks ``ys``/``xs`` on the H/W axes and drops the singleton axes."""
    idx: list[int | slice] = [0] * ndim
    idx[axes[0]] = ys
    idx[axes[1]] = xs
    if axes[2] is not None:
        idx[axes[2]] = slice(None)
    return tuple(idx)


def _to_hwc(arr: np.ndarray, axes: tuple[int, int, int | None]) -> np.ndarray:
    """Channel-last, native byte order, contiguous, writable; ``arr`` indexed by _index."""
    kept = sorted(a for a in axes if a is not None)
    order = [kept.index(a) for a in axes if a is not None]
    arr = arr.transpose(order)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


# ----------------------------------------------------------------------------- TIFF


def _first_level(tif: tifffile.TiffFile, path: Path) -> tifffile.TiffPageSeries:
    if not tif.series:
        raise ImageReadError(f"{path}: TIFF holds no image")
    series = tif.series[0]
    return series.levels[0] if series.levels else series


def _check_complete(tif: tifffile.TiffFile, level: tifffile.TiffPageSeries, path: Path) -> None:
    """Raise ImageReadError when pixel data lies beyond the end of the file."""
    size = tif.filehandle.size
    for page in level.pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        end = max(ends, default=0)
        if end > size:
            raise ImageReadError(
                f"{path}: truncated TIFF (pixel data ends at byte {end}, file has {size} bytes)"
            )


def read_tiff_image(path: Path, region: Region | None) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            level = _first_level(tif, path)
            shape = level.shape
            axes = _plan_axes(shape, path)
            h, w = shape[axes[0]], shape[axes[1]]
            _check_size(h, w, path)
            _check_complete(tif, level, path)
            if region is None:
                raw = level.asarray()
                arr = raw[_index(raw.ndim, axes, slice(None), slice(None))]
            else:
                ys, xs = _region_slices(region, h, w, path)
                arr = _read_tiff_window(tif, axes, len(shape), ys, xs)
    except (ImageReadError, InvalidImageError, _EmptyRegionError, MemoryError):
        raise
    except tifffile.TiffFileError as exc:
        raise ImageReadError(f"{path}: not a valid TIFF ({_one_line(exc)})") from exc
    except _TIFF_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read TIFF ({_one_line(exc)})") from exc
    return _to_hwc(arr, axes)


def _read_tiff_window(
    tif: tifffile.TiffFile,
    axes: tuple[int, int, int | None],
    ndim: int,
    ys: slice,
    xs: slice,
) -> np.ndarray:
    """Read a window of level 0 of the first series through zarr (only the tiles needed)."""
    import zarr

    store = tif.series[0].aszarr(level=0)
    try:
        node = zarr.open(store, mode="r")
        # A multiscale store opens as a group of levels "0", "1", ...
        if not hasattr(node, "shape"):
            node = node["0"]
        return np.asarray(node[_index(ndim, axes, ys, xs)])
    finally:
        store.close()


def read_tiff_raw(path: Path) -> np.ndarray:
    """Level 0 of the first series as stored (no reordering, singleton axes kept)."""
    try:
        with tifffile.TiffFile(path) as tif:
            level = _first_level(tif, path)
            _check_complete(tif, level, path)
            return level.asarray()
    except (ImageReadError, MemoryError):
        raise
    except tifffile.TiffFileError as exc:
        raise ImageReadError(f"{path}: not a valid TIFF ({_one_line(exc)})") from exc
    except _TIFF_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read TIFF ({_one_line(exc)})") from exc


# ----------------------------------------------------------------------------- PNG, JPEG, BMP


@contextlib.contextmanager
def _quiet_pil() -> Iterator[None]:
    # Microscopy images are routinely above Pillow's decompression-bomb warning size.
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 0


def read_pil_raw(path: Path, *, convert_modes: bool) -> np.ndarray:
    """Decode a PNG/JPEG/BMP to ``HxW`` or ``HxWxC`` in the file's dtype.

    Pillow reduces 16-bit RGB(A) PNGs to 8 bits, so 16-bit PNGs go through imagecodecs.
    With ``convert_modes`` palette images are expanded to RGB(A) and gray + alpha loses
    its alpha; without it (labels) palette indices are returned as they are.
    """
    from PIL import Image

    if path.suffix.lower() == ".png" and _png_bit_depth(path) == 16:
        import imagecodecs

        try:
            arr = imagecodecs.png_decode(path.read_bytes())
        except Exception as exc:  # imagecodecs raises its own PngError (a RuntimeError) or others
            if isinstance(exc, MemoryError):
                raise
            raise ImageReadError(f"{path}: cannot decode 16-bit PNG ({_one_line(exc)})") from exc
        if convert_modes and arr.ndim == 3 and arr.shape[2] == 2:
            arr = arr[..., 0]
        return arr
    try:
        with _quiet_pil(), Image.open(path) as im:
            im.load()
            if convert_modes:
                im = _convert_mode(im)
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.array(im)
    except Image.UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not an image (unknown or corrupt format)") from exc
    except (*_PIL_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({_one_line(exc)})") from exc
    return arr


def _convert_mode(im: Any) -> Any:
    mode = im.mode
    if mode in ("L", "RGB", "RGBA", "I", "F") or mode.startswith("I;16"):
        return im
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("PA", "RGBa"):
        return im.convert("RGBA")
    if mode in ("1", "LA", "La"):
        return im.convert("L")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def read_pil_image(path: Path, region: Region | None) -> np.ndarray:
    raw = read_pil_raw(path, convert_modes=True)
    axes = _plan_axes(raw.shape, path)
    h, w = raw.shape[axes[0]], raw.shape[axes[1]]
    _check_size(h, w, path)
    if region is None:
        ys, xs = slice(None), slice(None)
    else:
        ys, xs = _region_slices(region, h, w, path)
    return _to_hwc(raw[_index(raw.ndim, axes, ys, xs)], axes)


__all__ = [
    "IMAGE_SUFFIXES",
    "TIFF_SUFFIXES",
    "Region",
    "image_shape",
    "check_file",
    "kept_axes",
    "read_tiff_image",
    "read_pil_image",
    "read_tiff_raw",
    "read_pil_raw",
]
