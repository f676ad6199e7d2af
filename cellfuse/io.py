"""Read images and instance labels; write labels and other files atomically.

Every image comes back channel-last, ``HxWxC`` with ``C >= 1``, in the file's own dtype.
Instance labels come back as ``HxW`` uint16 or uint32 (0 = background, 1..N = cells, not
necessarily sequential). Labels are written atomically (:mod:`cellfuse.files`, re-exported
here with :func:`to_rgb` and :func:`normalize_image` of :mod:`cellfuse.preprocess`).

Failures raise :class:`~cellfuse.errors.ImageReadError` (the file cannot be read),
:class:`~cellfuse.errors.InvalidImageError` (it was read but cannot be used) or
:class:`~cellfuse.errors.LabelError`, each with a one-line message that names the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellfuse.errors import ImageReadError, InvalidImageError, LabelError
from cellfuse.files import atomic_write, atomic_write_bytes, atomic_write_text
from cellfuse.preprocess import MAX_CHANNELS, normalize_image, to_rgb

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")

# Label images above this many pixels are written tiled, so readers can window them.
_TILED_LABELS_PX = 2**25
# Classic TIFF offsets are 32-bit; switch to BigTIFF well before the raw data gets close.
_BIGTIFF_BYTES = 2**31
_UINT32_MAX = 2**32 - 1

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


# ----------------------------------------------------------------------------- images


def read_image(
    path: str | os.PathLike[str],
    *,
    region: Region | None = None,
    allow_constant: bool = False,
    on_non_finite: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Read an image file as a channel-last array.

    TIFF files are read with tifffile: the first series, level 0 of a pyramid, BigTIFF and
    big-endian files included (pixels come back in native byte order). PNG, JPEG and BMP
    are read with Pillow; 16-bit PNGs stay uint16. Palette images become RGB(A), gray +
    alpha becomes gray; RGBA is kept as 4 channels (see :func:`to_rgb`).

    Singleton axes are dropped. A 3-D array whose first axis has 2..5 entries and whose
    last axis has more than 5 is taken as channel-first ``CxHxW`` and transposed.

    Args:
        path: image file with one of :data:`IMAGE_SUFFIXES` (any case).
        region: ``(slice(y0, y1), slice(x0, x1))`` window to read. For a TIFF only the
            tiles or strips under the window are read from disk (through zarr), so
            windows of images larger than memory can be read.
        allow_constant: return constant images (every pixel equal, e.g. all zero)
            instead of raising. Windows are never rejected for being constant: a
            background window is normal.
        on_non_finite: called with the message when NaN/inf pixels are replaced (see
            below); default: a logged warning (once per file for windows).

    A float image with NaN or inf pixels (common after registration or deconvolution) comes
    back with each of them replaced by its channel's median of the finite pixels (typically
    background, for bright- and dark-field images alike), with a warning that says how
    many; an image whose pixels are more than half non-finite is an error. A window is
    never rejected (a border of a registered image may be all NaN); it is filled the same
    way from its own finite pixels, or with 0 when it has none.

    Returns:
        ``HxWxC`` array (``C`` in 1..5) in the file's dtype (uint8, uint16, int32,
        float32, ...), C-contiguous and writable; ``H``/``W`` are the window's size when
        ``region`` is given.

    Raises:
        ImageReadError: missing, empty, truncated or corrupt file, not an image, or an
            unsupported suffix.
        InvalidImageError: a side shorter than 2 px, more than 5 channels or more than
            3 dimensions, mostly NaN or inf values, or a constant image (unless allowed).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _read_tiff_image(path, region)
    else:
        arr = _read_pil_image(path, region)
    if arr.dtype.kind == "f":
        _replace_non_finite(arr, path, window=region is not None, report=on_non_finite)
    _check_values(arr, path, allow_constant=allow_constant or region is not None)
    logger.debug("read %s: %s %s", path, arr.shape, arr.dtype)
    return arr


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
    _check_file(path)
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


# ----------------------------------------------------------------------------- labels


def read_labels(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read an instance-label image.

    Args:
        path: TIFF (or PNG/BMP) label file; any integer dtype (int16 included), or a
            float dtype holding whole numbers; ``HxW``, ``HxWx1`` or ``1xHxW``.
        shape: expected ``(H, W)`` (the image's); a mismatch raises.

    Returns:
        ``HxW`` labels, uint16 when the largest id is at most 65535, else uint32.
        0 is background; ids need not be sequential.

    Raises:
        ImageReadError: missing, empty, truncated or corrupt file.
        LabelError: more than one channel, non-integer or non-finite values, negative
            ids, ids above 2**32 - 1, a JPEG file, or a shape other than ``shape``.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        raise LabelError(f"{path}: JPEG is lossy and cannot hold instance labels; use TIFF")
    if suffix in TIFF_SUFFIXES:
        raw = _read_tiff_raw(path)
    else:
        raw = _read_pil_raw(path, convert_modes=False)
    labels = _as_labels(raw, str(path))
    if shape is not None and labels.shape != tuple(shape):
        raise LabelError(
            f"{path}: label shape {labels.shape[0]}x{labels.shape[1]} does not match "
            f"image shape {shape[0]}x{shape[1]}"
        )
    return labels


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    *,
    compression: str | None = "zlib",
) -> Path:
    """Write instance labels as a compressed TIFF, atomically.

    The file is written to a temporary name in the same folder and renamed over
    ``path`` only when complete; on any error the temporary file is removed and an
    existing ``path`` is left untouched. Images above 2**25 px are written in 512x512
    tiles (so they can be read by window), and as BigTIFF when the data nears 4 GiB.

    Args:
        path: output file (``.tif``/``.tiff``); missing parent folders are created.
        labels: ``HxW`` (or ``HxWx1``) array of non-negative whole numbers, any dtype.
        compression: tifffile compression name, or None for none.

    Returns:
        ``path`` as a Path. The file holds uint16 when the largest id is at most 65535,
        else uint32.

    Raises:
        LabelError: ``labels`` has more than one channel, negative or non-integer values.
    """
    path = Path(path)
    arr = _as_labels(np.asarray(labels), f"{path} (writing)")
    kwargs: dict[str, Any] = {
        "photometric": "minisblack",
        "compression": compression,
        "metadata": None,
    }
    if arr.size > _TILED_LABELS_PX:
        kwargs["tile"] = (512, 512)
    if arr.nbytes > _BIGTIFF_BYTES:
        kwargs["bigtiff"] = True
    with atomic_write(path, "wb") as fh:
        tifffile.imwrite(fh, arr, **kwargs)
    logger.debug("wrote %s: %s %s", path, arr.shape, arr.dtype)
    return path


# ----------------------------------------------------------------------------- files


# ----------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_file(path: Path) -> None:
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


def _kept_axes(shape: Sequence[int]) -> list[int]:
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

    After dropping singleton axes (see :func:`_kept_axes`) the array must be HxW, HxWxC or
    CxHxW with C <= 5; CxHxW when the first axis is 2..5 long and the last longer than 5.
    """
    if len(shape) < 2 or any(s == 0 for s in shape):
        dims = "x".join(str(s) for s in shape)
        raise InvalidImageError(f"{path}: image is {dims}; both sides must be at least 2 px")
    kept = _kept_axes(shape)
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


class TiffWindows:
    """Windows of a TIFF read as :func:`read_image` reads them (``region=``), from one open
    file and zarr store: a whole slide read tile by tile pays the header parsing (OME-XML,
    thousands of IFDs) once instead of per window.

    ::

        with TiffWindows("slide.ome.tif") as win:
            tile = win((slice(0, 512), slice(0, 512)))    # 512x512xC, the file's dtype
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import zarr

        self.path = Path(path)
        _check_file(self.path)
        try:
            self._tif = tifffile.TiffFile(self.path)
        except tifffile.TiffFileError as exc:
            raise ImageReadError(f"{self.path}: not a valid TIFF ({_one_line(exc)})") from exc
        try:
            level = _first_level(self._tif, self.path)
            self._axes = _plan_axes(level.shape, self.path)
            self._ndim = len(level.shape)
            self.shape = (level.shape[self._axes[0]], level.shape[self._axes[1]])
            _check_complete(self._tif, level, self.path)
            self._store = self._tif.series[0].aszarr(level=0)
            node = zarr.open(self._store, mode="r")
            self._node = node if hasattr(node, "shape") else node["0"]
        except BaseException:
            self._tif.close()
            raise

    def __call__(self, region: Region) -> np.ndarray:
        ys, xs = _region_slices(region, *self.shape, self.path)
        try:
            arr = _to_hwc(
                np.asarray(self._node[_index(self._ndim, self._axes, ys, xs)]), self._axes
            )
        except _TIFF_ERRORS as exc:
            raise ImageReadError(f"{self.path}: cannot read TIFF ({_one_line(exc)})") from exc
        if arr.dtype.kind == "f":
            _replace_non_finite(arr, self.path, window=True, report=None)
        return arr

    def close(self) -> None:
        self._store.close()
        self._tif.close()

    def __enter__(self) -> TiffWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


# An image with more non-finite pixels than this share is refused (see read_image).
MAX_NON_FINITE_FRACTION = 0.5
_warned_windows: set[str] = set()


def _replace_non_finite(
    arr: np.ndarray, path: Path, *, window: bool, report: Callable[[str], None] | None
) -> None:
    """Replace NaN/inf pixels of a float ``HxWxC`` array in place (see :func:`read_image`)."""
    bad = ~np.isfinite(arr)
    n_bad = int(bad.sum())
    if not n_bad:
        return
    n_nan = int(np.isnan(arr).sum())
    what = " and ".join(f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_bad - n_nan, "inf")) if n)
    share = n_bad / arr.size
    if not window and share > MAX_NON_FINITE_FRACTION:
        raise InvalidImageError(
            f"{path}: image has {what} pixel values ({share:.0%} of its pixels); at most "
            f"{MAX_NON_FINITE_FRACTION:.0%} non-finite pixels can be replaced"
        )
    for c in range(arr.shape[2]):
        ch, bad_c = arr[..., c], bad[..., c]
        if bad_c.any():
            finite = ch[~bad_c]
            ch[bad_c] = np.median(finite) if finite.size else 0.0
    message = (
        f"{path}: replaced {what} pixel values ({share:.2%}"
        f"{' of a window' if window else ''}) by the channel's median of the finite pixels"
    )
    if report is not None:
        report(message)
    elif not window:
        logger.warning("%s", message)
    elif str(path) not in _warned_windows:
        _warned_windows.add(str(path))
        logger.warning("%s (reported once per file)", message)


def _check_values(arr: np.ndarray, path: Path, *, allow_constant: bool) -> None:
    if arr.dtype.kind not in "uif":
        raise InvalidImageError(f"{path}: unsupported pixel type {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo == hi and not allow_constant:
        value = lo.item()
        raise InvalidImageError(
            f"{path}: image is constant (all pixels = {value:g}); nothing to segment "
            "(pass allow_constant=True to read it anyway)"
        )


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


def _read_tiff_image(path: Path, region: Region | None) -> np.ndarray:
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


def _read_tiff_raw(path: Path) -> np.ndarray:
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


def _read_pil_raw(path: Path, *, convert_modes: bool) -> np.ndarray:
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


def _read_pil_image(path: Path, region: Region | None) -> np.ndarray:
    raw = _read_pil_raw(path, convert_modes=True)
    axes = _plan_axes(raw.shape, path)
    h, w = raw.shape[axes[0]], raw.shape[axes[1]]
    _check_size(h, w, path)
    if region is None:
        ys, xs = slice(None), slice(None)
    else:
        ys, xs = _region_slices(region, h, w, path)
    return _to_hwc(raw[_index(raw.ndim, axes, ys, xs)], axes)


def _as_labels(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate an instance-label array; return it as HxW uint16 or uint32."""
    if arr.ndim > 2:
        arr = arr.reshape([arr.shape[i] for i in _kept_axes(arr.shape)])
    if arr.ndim != 2:
        raise LabelError(
            f"{where}: labels have shape {arr.shape}; expected a single-channel HxW image"
        )
    if arr.size == 0:
        raise LabelError(f"{where}: labels are empty ({arr.shape[0]}x{arr.shape[1]})")
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.astype(np.uint8)
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise LabelError(f"{where}: labels hold NaN or inf values")
        fractional = arr != np.floor(arr)
        if fractional.any():
            example = arr[fractional].flat[0].item()
            raise LabelError(
                f"{where}: labels hold non-integer values (e.g. {example:g}); "
                "instance ids must be whole numbers"
            )
    elif kind not in "iu":
        raise LabelError(f"{where}: unsupported label dtype {arr.dtype}")
    lo, hi = arr.min().item(), arr.max().item()
    if lo < 0:
        raise LabelError(
            f"{where}: has negative labels (min {lo:g}); use 0 for background, 1..N for cells"
        )
    if hi > _UINT32_MAX:
        raise LabelError(f"{where}: label id {hi:g} does not fit in uint32")
    dtype = np.uint16 if hi <= np.iinfo(np.uint16).max else np.uint32
    out = arr.astype(dtype, copy=False)
    return out if out.flags.writeable else out.copy()


__all__ = [
    "IMAGE_SUFFIXES",
    "TIFF_SUFFIXES",
    "MAX_CHANNELS",
    "read_image",
    "image_shape",
    "TiffWindows",
    "read_labels",
    "write_labels",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "normalize_image",
    "to_rgb",
]
