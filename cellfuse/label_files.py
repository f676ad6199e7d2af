"""Instance-label files: read and validated (:func:`read_labels`), written compressed and
atomically (:func:`write_labels`). The one label validation is :func:`as_labels`: ``HxW``,
whole non-negative ids, returned as uint16 or uint32 by the largest id.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellfuse.errors import LabelError
from cellfuse.files import atomic_write
from cellfuse.image_files import TIFF_SUFFIXES, check_file, kept_axes, read_pil_raw, read_tiff_raw

logger = logging.getLogger(__name__)

# Label images above this many pixels are written tiled, so readers can window them.
_TILED_LABELS_PX = 2**25
# Classic TIFF offsets are 32-bit; switch to BigTIFF well before the raw data gets close.
_BIGTIFF_BYTES = 2**31
_UINT32_MAX = 2**32 - 1


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
    check_file(path)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        raise LabelError(f"{path}: JPEG is lossy and cannot hold instance labels; use TIFF")
    if suffix in TIFF_SUFFIXES:
        raw = read_tiff_raw(path)
    else:
        raw = read_pil_raw(path, convert_modes=False)
    labels = as_labels(raw, str(path))
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
    arr = as_labels(np.asarray(labels), f"{path} (writing)")
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


def as_labels(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate an instance-label array; return it as HxW uint16 or uint32."""
    if arr.ndim > 2:
        arr = arr.reshape([arr.shape[i] for i in kept_axes(arr.shape)])
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


__all__ = ["read_labels", "write_labels", "as_labels"]
