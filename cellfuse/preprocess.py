"""Input preprocessing shared by every model: channels, intensity normalisation, cell scale,
resizing and padding. numpy only, so the ONNX predictor needs no torch.

Rules, each written once here:

- **Channels** (:func:`to_rgb`): any 1-5 channel image becomes 3 channels.
- **Intensity** (:func:`normalize_image`, :class:`Normalizer`): the ``lower``/``upper``
  (1/99.8) percentiles map to 0/1, clipped; a flat channel becomes 0. Percentiles come from
  a strided sample of at most 4 Mpx (:func:`percentile_sample`).
- **Inversion** (:func:`bright_background`): an image whose normalised channel-mean has a
  median above 0.5 has a bright background (brightfield, H&E-like stains) and is inverted,
  so cells are bright on dark for every model. The flow U-Net, the student, SAM and the
  classical teacher always used this rule; Mask R-CNN inverted only gray bright images
  (``modality() == "brightfield"``, so not stains) and now follows it too.
- **Cell scale** (:func:`median_diameter`, :func:`scale_for_diameter`): the median
  equivalent-circle diameter ``2 * sqrt(area / pi)`` of the instances; images are resized
  by ``nominal / diameter``, clamped.
- **Resizing** (:func:`resize_image`): bilinear, antialiased when shrinking, the same
  arithmetic as torch's ``F.interpolate(mode="bilinear", align_corners=False,
  antialias=shrink)`` to within 2 float32 ulp (float32 products of banded sparse
  matrices; ``tests/test_predict_without_torch.py`` checks it against torch);
  :func:`cellfuse.nn.augment.resize_image_torch` is its torch twin, used by training so
  that training replays bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from cellfuse.errors import InvalidImageError

MAX_CHANNELS = 5
# Percentiles are estimated on a strided subsample of at most this many pixels.
_PERCENTILE_SAMPLE_PX = 4_000_000
# The inversion rule of prepare_image looks at a strided sample of at most ~this many pixels.
_INVERT_SAMPLE_PX = 1_000_000


# ----------------------------------------------------------------------------- channels


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Three channels from any supported channel count, keeping the dtype.

    1 channel is repeated; 2 channels get a zero third channel; 3 are returned as they
    are; 4 channels (RGBA, or four stains) and 5 channels keep the first three, which
    drops the alpha of RGBA images.

    Args:
        img: ``HxWxC`` (or ``HxW``) array, ``C`` in 1..5.

    Returns:
        ``HxWx3`` array of ``img``'s dtype (``img`` itself when it already has 3 channels).

    Raises:
        InvalidImageError: more than 5 channels or not a 2-D image.
    """
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise InvalidImageError(f"to_rgb: expected an HxWxC image, got shape {arr.shape}")
    c = arr.shape[2]
    if c == 1:
        return np.repeat(arr, 3, axis=2)
    if c == 2:
        return np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=2)
    if c == 3:
        return arr
    if c <= MAX_CHANNELS:
        return np.ascontiguousarray(arr[..., :3])
    raise InvalidImageError(
        f"to_rgb: cannot convert a {c}-channel image (at most {MAX_CHANNELS} channels)"
    )


# ----------------------------------------------------------------------------- intensity


def percentile_sample(arr: np.ndarray) -> np.ndarray:
    """``Nx C`` pixels of an ``HxWxC`` array on a stride that keeps N <= 4 Mpx."""
    h, w, c = arr.shape
    step = max(1, math.ceil(math.sqrt(h * w / _PERCENTILE_SAMPLE_PX)))
    return arr[::step, ::step].reshape(-1, c)


def percentile_range(
    sample: np.ndarray, lower: float = 1.0, upper: float = 99.8, *, per_channel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): C float64 percentiles of ``NxC`` pixels, per channel or shared."""
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    if per_channel:
        lo, hi = np.percentile(sample, [lower, upper], axis=0)
    else:
        c = sample.shape[-1]
        lo, hi = np.repeat(np.percentile(sample, [lower, upper])[:, None], c, axis=1)
    return lo, hi


def apply_range(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(arr - lo) / (hi - lo)`` clipped to [0, 1] as ``HxWxC`` float32; flat channels -> 0."""
    span = hi - lo
    flat = ~(span > 0)
    # A flat channel gets scale 0, so it becomes 0 after the shift and the clip.
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=~flat)
    out = arr.astype(np.float32)
    # rows of W*C values: a C-long inner loop (broadcasting over the last axis) is ~10x slower
    h, w, c = out.shape
    rows = out.reshape(h, w * c)
    rows -= np.tile(np.broadcast_to(np.asarray(lo, np.float32), (c,)), w)
    rows *= np.tile(np.broadcast_to(np.asarray(scale, np.float32), (c,)), w)
    np.clip(out, 0.0, 1.0, out=out)
    if flat.any():
        out[..., flat] = 0.0
    return out


def normalize_image(
    img: np.ndarray,
    lower: float = 1.0,
    upper: float = 99.8,
    *,
    per_channel: bool = True,
) -> np.ndarray:
    """Percentile normalisation to [0, 1].

    Maps the ``lower`` percentile to 0 and the ``upper`` one to 1, and clips. A channel
    whose two percentiles are equal (flat, or nearly empty) becomes all 0. On images
    above 4 Mpx the percentiles are estimated on a strided subsample, which keeps this
    fast on whole slides and changes the result by far less than one grey level.

    Args:
        img: ``HxWxC`` (or ``HxW``) array of any real dtype, finite values.
        lower: lower percentile, in [0, 100).
        upper: upper percentile, in (lower, 100].
        per_channel: one pair of percentiles per channel (True) or one for the image.

    Returns:
        ``HxWxC`` float32 array with values in [0, 1].
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"normalize_image: expected an HxWxC image, got shape {arr.shape}")
    lo, hi = percentile_range(percentile_sample(arr), lower, upper, per_channel=per_channel)
    return apply_range(arr, lo, hi)


def bright_background(x: np.ndarray) -> bool:
    """The inversion rule: normalised pixels (``...xC`` in [0, 1]) whose channel-mean has a
    median above 0.5 show a bright background (brightfield, H&E-like stains)."""
    return bool(np.median(x.mean(axis=-1)) > 0.5)


def auto_invert(x: np.ndarray) -> bool:
    """:func:`bright_background` of a normalised ``HxWxC`` image, on a strided sample of
    about 1 Mpx (the whole image below 4 Mpx)."""
    step = max(1, int(math.sqrt(x.shape[0] * x.shape[1] / _INVERT_SAMPLE_PX)))
    return bright_background(x[::step, ::step])


def prepare_image(
    image: np.ndarray,
    invert: bool | str = "auto",
    *,
    lower: float = 1.0,
    upper: float = 99.8,
    per_channel: bool = True,
) -> np.ndarray:
    """The input every model sees: 3 channels, percentile-normalised, cells bright on dark.

    Args:
        image: HxW or HxWxC array of any real dtype.
        invert: True/False, or "auto" (:func:`auto_invert`).
        lower, upper: percentiles mapped to 0 and 1.
        per_channel: percentiles per channel (True) or shared by the channels.

    Returns:
        HxWx3 float32 in [0, 1].
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise InvalidImageError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    x = normalize_image(to_rgb(arr), lower, upper, per_channel=per_channel)
    if invert == "auto":
        invert = auto_invert(x)
    if invert:
        x = 1.0 - x
    return x


@dataclass
class Normalizer:
    """:func:`prepare_image` with percentiles fixed in advance, for images read by window
    (whole slides): the same per-channel range and inversion rule, estimated once from a
    pixel sample and applied to every tile, so tiles see the intensities of the whole image.

    Attributes:
        lo, hi: 3 float64 per-channel percentiles (of the RGB image).
        invert: invert after scaling.
    """

    lo: np.ndarray
    hi: np.ndarray
    invert: bool

    @classmethod
    def from_sample(
        cls, sample: np.ndarray, lower: float = 1.0, upper: float = 99.8
    ) -> Normalizer | None:
        """From ``Nx3`` sampled pixels; None when every channel is flat (nothing to segment)."""
        lo, hi = percentile_range(sample, lower, upper)
        if not (hi > lo).any():
            return None
        norm = cls(lo.astype(np.float64), hi.astype(np.float64), False)
        norm.invert = bright_background(norm(sample[:, None, :]))
        return norm

    @classmethod
    def from_image(cls, image: np.ndarray) -> Normalizer | None:
        """Percentiles of the whole image, sampled as :func:`normalize_image` samples."""
        return cls.from_sample(percentile_sample(to_rgb(image)))

    @classmethod
    def from_reader(
        cls, read: Any, shape: tuple[int, int], grid: int = 6, size: int = 256
    ) -> Normalizer | None:
        """Percentiles of a ``grid x grid`` lattice of ``size`` px windows (whole slides).

        Args:
            read: ``read((rows, cols))`` -> the pixels of that window.
            shape: (H, W) of the image.
        """
        h, w = shape
        if h * w <= (grid * size) ** 2:
            return cls.from_image(read((slice(0, h), slice(0, w))))
        ys = np.linspace(0, max(h - size, 0), grid).astype(int)
        xs = np.linspace(0, max(w - size, 0), grid).astype(int)
        parts = [
            to_rgb(read((slice(y, min(y + size, h)), slice(x, min(x + size, w))))).reshape(-1, 3)
            for y in ys
            for x in xs
        ]
        return cls.from_sample(np.concatenate(parts))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HxWxC raw pixels -> HxWx3 float32 in [0, 1]."""
        x = apply_range(to_rgb(image), self.lo, self.hi)
        if self.invert:
            x = 1.0 - x
        return x

    def to_dict(self) -> dict[str, Any]:
        return dict(lo=self.lo.tolist(), hi=self.hi.tolist(), invert=self.invert)


# ----------------------------------------------------------------------------- cell scale


def cell_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel areas of the instances of an HxW label image (ids without pixels left out)."""
    area = np.bincount(np.asarray(labels).ravel())[1:]
    return area[area > 0]


def equivalent_diameters(areas: np.ndarray) -> np.ndarray:
    """Diameter of the disc of each area: ``2 * sqrt(area / pi)`` (float64)."""
    return 2.0 * np.sqrt(np.asarray(areas) / np.pi)


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the instances (0 if none)."""
    return median_diameter_of_areas(cell_areas(labels))


def median_diameter_of_areas(areas: np.ndarray) -> float:
    """Median equivalent-circle diameter of cell ``areas`` (0 if none)."""
    areas = np.asarray(areas)
    areas = areas[areas > 0]
    if areas.size == 0:
        return 0.0
    return float(np.median(equivalent_diameters(areas)))


def scale_for_diameter(
    nominal: float, diameter: float, min_scale: float = 0.25, max_scale: float = 4.0
) -> float:
    """The resize factor that brings cells of ``diameter`` px to ``nominal`` px, clamped."""
    return float(np.clip(nominal / diameter, min_scale, max_scale))


# ----------------------------------------------------------------------------- resizing


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) after resizing by ``scale`` (at least 1 px)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


@functools.lru_cache(maxsize=64)
def _resize_weights(n_in: int, n_out: int, antialias: bool) -> sparse.csr_matrix:
    """``n_out x n_in`` float32 interpolation matrix of torch's bilinear resize of one axis
    (``align_corners=False``), its weights computed in float32 as torch computes them.

    Sparse: each row has 2 (upsampling) to ``2 * n_in / n_out + 1`` (antialiased
    shrinking) non-zeros, so resizing costs ``O(pixels)``, not ``O(pixels x side)`` as a dense
    product does (that was a quarter of the slide path's network time at scale 0.7). Cached:
    a slide's tiles share their shapes.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    rows = np.arange(n_out)
    i = rows.astype(f32)
    if not antialias:
        # source index rounded once from the exact product (as the fused multiply-add does)
        src = (np.float64(scale) * (i.astype(np.float64) + 0.5) - 0.5).astype(f32)
        src = np.maximum(src, f32(0))
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        l1 = (src - i0.astype(f32)).astype(f32)
        vals = np.r_[(f32(1) - l1).astype(f32), l1].astype(f32)
        # duplicates (i0 == i1 at the last row) are summed, as np.add.at did
        return sparse.csr_matrix((vals, (np.r_[rows, rows], np.r_[i0, i1])), (n_out, n_in))
    support = scale if scale >= 1 else f32(1.0)
    inv = f32(1) / scale if scale >= 1 else f32(1.0)
    center = scale * (i + f32(0.5))
    lo = np.maximum((center - support + f32(0.5)).astype(np.int64), 0)
    hi = np.minimum((center + support + f32(0.5)).astype(np.int64), n_in)
    r_idx, c_idx, vals = [], [], []
    for r in range(n_out):
        j = np.arange(hi[r] - lo[r], dtype=f32)
        tri = (j + f32(lo[r]) - center[r] + f32(0.5)) * inv
        wr = np.maximum(f32(1) - np.abs(tri), f32(0)).astype(f32)
        total = wr.sum(dtype=f32)
        if total > 0:
            r_idx.append(np.full(wr.size, r))
            c_idx.append(lo[r] + np.arange(wr.size))
            vals.append((wr / total).astype(f32))
    if not vals:
        return sparse.csr_matrix((n_out, n_in), dtype=f32)
    return sparse.csr_matrix(
        (np.concatenate(vals).astype(f32), (np.concatenate(r_idx), np.concatenate(c_idx))),
        (n_out, n_in),
    )


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HxWxC float image (antialiased when shrinking); see module doc.

    Returns:
        shape[0] x shape[1] x C float32.
    """
    if tuple(image.shape[:2]) == tuple(shape):
        return np.asarray(image, np.float32)
    h, w, c = image.shape
    shrink = shape[0] < h or shape[1] < w
    wy = _resize_weights(h, shape[0], shrink)
    wx = _resize_weights(w, shape[1], shrink)
    x = np.asarray(image, np.float32).reshape(h, w * c)
    y = (wy @ x).reshape(shape[0], w, c).transpose(1, 0, 2).reshape(w, shape[0] * c)
    z = (wx @ y).reshape(shape[1], shape[0], c).transpose(1, 0, 2)
    return np.ascontiguousarray(z, np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an HxW label image (pixel centres map to pixel centres)."""
    h, w = labels.shape
    if (h, w) == tuple(shape):
        return labels
    yi = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    xi = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return labels[yi[:, None], xi[None, :]]


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad (edge when too small) the bottom/right of ``...xHxW`` to a multiple.

    Crop the result back with ``[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode=mode)


__all__ = [
    "MAX_CHANNELS",
    "to_rgb",
    "percentile_sample",
    "percentile_range",
    "apply_range",
    "normalize_image",
    "bright_background",
    "auto_invert",
    "prepare_image",
    "Normalizer",
    "cell_areas",
    "equivalent_diameters",
    "median_diameter",
    "median_diameter_of_areas",
    "scale_for_diameter",
    "scaled_shape",
    "resize_image",
    "resize_labels",
    "pad_to_multiple",
]
