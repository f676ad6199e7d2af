"""Read images and instance labels; write labels and other files atomically.

Every image comes back channel-last, ``HxWxC`` with ``C >= 1``, in the file's own dtype
(:func:`read_image`, here with its pixel-value rules: NaN/inf replacement, constant images).
Instance labels come back as ``HxW`` uint16 or uint32 (0 = background, 1..N = cells, not
necessarily sequential). The code lives by concern, re-exported here as the one import:
file decoding and headers in :mod:`cellfuse.image_files` (:func:`image_shape`), label files
in :mod:`cellfuse.label_files` (:func:`read_labels`, :func:`write_labels`), atomic writes in
:mod:`cellfuse.files`, :func:`to_rgb` and :func:`normalize_image` in :mod:`cellfuse.preprocess`.

Failures raise :class:`~cellfuse.errors.ImageReadError` (the file cannot be read),
:class:`~cellfuse.errors.InvalidImageError` (it was read but cannot be used) or
:class:`~cellfuse.errors.LabelError`, each with a one-line message that names the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cellfuse.errors import ImageReadError, InvalidImageError
from cellfuse.files import atomic_write, atomic_write_bytes, atomic_write_text
from cellfuse.image_files import (
    _TIFF_ERRORS,
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    Region,
    _check_complete,
    _first_level,
    _index,
    _one_line,
    _plan_axes,
    _region_slices,
    _to_hwc,
    check_file,
    image_shape,
    read_pil_image,
    read_tiff_image,
)
from cellfuse.label_files import read_labels, write_labels
from cellfuse.preprocess import MAX_CHANNELS, normalize_image, to_rgb

logger = logging.getLogger(__name__)


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
    check_file(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = read_tiff_image(path, region)
    else:
        arr = read_pil_image(path, region)
    if arr.dtype.kind == "f":
        _replace_non_finite(arr, path, window=region is not None, report=on_non_finite)
    _check_values(arr, path, allow_constant=allow_constant or region is not None)
    logger.debug("read %s: %s %s", path, arr.shape, arr.dtype)
    return arr


# ----------------------------------------------------------------------------- pixel values


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


class TiffWindows:
    """Windows of a TIFF read as :func:`read_image` reads them (``region=``), from one open
    file and zarr store: a whole slide read tile by tile pays the header parsing (OME-XML,
    thousands of IFDs) once instead of per window.

    ::

        with TiffWindows("slide.ome.tif") as win:
            tile = win((slice(0, 512), slice(0, 512)))    # 512x512xC, the file's dtype
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tifffile
        import zarr

        self.path = Path(path)
        check_file(self.path)
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
