"""Training crops: one affine resampling per crop, colour jitter, and the torch resize.

Augmentation (:func:`sample_crop`): one affine resampling per crop (scale jitter, any
rotation, a flip, translation) applied to image and targets together, with the flow vectors
rotated and flipped to match; then colour jitter on the image (stain simulation, gray
conversion, channel shuffle, hue/saturation/value jitter, contrast/gamma, inversion, noise).

The input representation and the scale rule are :mod:`cellfuse.preprocess`'s.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv

from cellfuse.errors import ConfigError
from cellfuse.preprocess import prepare_image


def resize_image_torch(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HxWxC float image (antialiased when shrinking), by torch.

    The training rule (flow targets and the flow U-Net teacher's inference); its numpy twin
    :func:`cellfuse.preprocess.resize_image` agrees to 1 float32 ulp.

    Returns:
        shape[0] x shape[1] x C float32.
    """
    if tuple(image.shape[:2]) == tuple(shape):
        return np.asarray(image, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
    shrink = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].permute(1, 2, 0).numpy()


def affine_sample(
    arrays: np.ndarray,
    center: tuple[float, float],
    size: int,
    scale: float,
    theta: float,
    flip: bool,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a ``size x size`` window from ``CxHxW`` arrays (zeros outside).

    Output pixel ``q`` reads input position ``center + M @ (q - c_out)`` with
    ``M = R(theta) @ diag(1, -1 if flip else 1) / scale``.

    Args:
        arrays: CxHxW float arrays.
        center: (y, x) input position that lands in the middle of the output.
        size: output side in px.
        scale: > 1 enlarges (zooms in).
        theta: rotation in radians.
        flip: mirror the x axis.
        order: interpolation order (1 = bilinear).

    Returns:
        (C x size x size float32, 2x2 orthogonal part ``Q = R @ F`` of ``M``; a vector field
        ``v`` (dy, dx) in input coordinates becomes ``Q.T @ v`` in output coordinates).
    """
    c, s = math.cos(theta), math.sin(theta)
    q = np.array([[c, -s], [s, c]]) @ np.diag([1.0, -1.0 if flip else 1.0])
    m = q / scale
    grid = np.mgrid[0:size, 0:size].reshape(2, -1).astype(np.float64) - (size - 1) / 2.0
    pos = m @ grid + np.asarray(center, np.float64)[:, None]
    out = np.stack(
        [
            ndi.map_coordinates(a, pos, order=order, mode="constant", cval=0.0).reshape(size, size)
            for a in arrays
        ]
    ).astype(np.float32)
    return out, q


def transform_flows(flows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotate/flip a 2xHxW (dy, dx) field sampled by :func:`affine_sample`: ``Q.T @ v``."""
    return np.einsum("ji,jhw->ihw", q, flows).astype(np.float32)


# Optical densities (R, G, B) of haematoxylin and eosin (Ruifrok & Johnston 2001): the
# absorbance model of a brightfield stain, jittered per crop by :func:`simulate_stain`.
HEMATOXYLIN_OD = (0.65, 0.70, 0.29)
EOSIN_OD = (0.07, 0.99, 0.11)


def _unit_od(base: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    v = np.asarray(base) * rng.uniform(0.6, 1.4, 3) + rng.uniform(0.0, 0.15, 3)
    return v / np.linalg.norm(v)


def simulate_stain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fluorescence-like crop rendered as a stained brightfield image, then normalised the
    way :func:`cellfuse.preprocess.prepare_image` normalises such an image.

    Hue jitter cannot colour a gray image (its saturation is 0), so a network trained on
    fluorescence labels never sees the input a stained slide gives it: coloured nuclei on a
    textured, differently coloured tissue background. Here the crop's intensity becomes
    haematoxylin density and a smooth random field becomes eosin (cytoplasm, stroma), with
    the Beer-Lambert law ``I = exp(-(OD_h * h + OD_e * e))`` per channel; both stain
    vectors and densities are jittered. The result is per-channel percentile-normalised and
    inverted (bright background), as every stained input is. Labels are unchanged: nuclei
    stay where they were, now as the dense-stain regions.

    Args:
        img: HxWx3 float32 in [0, 1], cells bright.
        rng: random generator.

    Returns:
        HxWx3 float32 in [0, 1].
    """
    nuclei = np.clip(img.mean(axis=-1), 0.0, 1.0) * rng.uniform(0.3, 1.5)
    h, w = nuclei.shape

    def field() -> np.ndarray:  # smooth texture in [0, 1]
        f = ndi.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(1.0, 6.0))
        return (f - f.min()) / max(float(np.ptp(f)), 1e-6)

    hema = nuclei + field() * rng.uniform(0.0, 0.4)  # nuclei + lightly stained tissue
    eosin = field() * rng.uniform(0.1, 0.9) + rng.uniform(0.0, 0.1)
    od = hema[..., None] * _unit_od(HEMATOXYLIN_OD, rng) + eosin[..., None] * _unit_od(
        EOSIN_OD, rng
    )
    return prepare_image(np.exp(-od), invert=True)  # a bright-background input's rule


COLOR_KEYS = ("stain", "hsv", "shuffle", "gray", "contrast", "invert", "blur", "noise")


def check_color(p: dict[str, float] | None, what: str = "color") -> dict[str, float]:
    """``p`` as :func:`color_jitter` probabilities, or a one-line ConfigError naming ``what``
    (a misspelt key would otherwise be ignored silently)."""
    p = dict(p or {})
    unknown = sorted(set(p) - set(COLOR_KEYS))
    if unknown:
        raise ConfigError(f"{what}: unknown augmentation {unknown}; known: {list(COLOR_KEYS)}")
    bad = {k: v for k, v in p.items() if not 0.0 <= float(v) <= 1.0}
    if bad:
        raise ConfigError(f"{what}: probabilities must be in [0, 1], got {bad}")
    return {k: float(v) for k, v in p.items()}


def check_scale_range(r: tuple[float, float] | list[float], what: str) -> tuple[float, float]:
    """``(lo, hi)`` with ``0 < lo <= hi``, or a one-line ConfigError naming ``what``."""
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be two numbers (lo, hi), got {r!r}") from None
    if not 0.0 < lo <= hi:
        raise ConfigError(f"{what} must satisfy 0 < lo <= hi, got {r!r}")
    return lo, hi


def color_jitter(img: np.ndarray, rng: np.random.Generator, p: dict[str, float]) -> np.ndarray:
    """Random colour/intensity changes of an HxWx3 float image in [0, 1].

    Args:
        img: HxWx3 float32.
        rng: random generator.
        p: probabilities, keys ``stain`` (:func:`simulate_stain`), ``gray``, ``shuffle``,
            ``hsv``, ``contrast``, ``invert``, ``blur`` (Gaussian, sigma 0.5-1.5 px),
            ``noise`` (missing keys mean 0).

    Returns:
        HxWx3 float32 in [0, 1].
    """
    x = img
    # stain off draws nothing: the random stream (and so every run without the stain
    # simulation) stays what it was before the option existed
    if p.get("stain", 0.0) > 0 and rng.random() < p["stain"]:
        x = simulate_stain(x, rng)
    if rng.random() < p.get("hsv", 0.0):
        hsv = rgb2hsv(np.clip(x, 0, 1))
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.5, 0.5)) % 1.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 1)
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.2), 0, 1)
        x = hsv2rgb(hsv).astype(np.float32)
    if rng.random() < p.get("shuffle", 0.0):
        x = x[..., rng.permutation(3)]
    if rng.random() < p.get("gray", 0.0):
        x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    if rng.random() < p.get("contrast", 0.0):
        gamma = math.exp(rng.uniform(-0.5, 0.5))
        x = np.clip(x, 0, 1) ** gamma * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)
    if rng.random() < p.get("invert", 0.0):
        x = 1.0 - x
    # like the stain simulation, blur off draws nothing (older runs replay unchanged)
    if p.get("blur", 0.0) > 0 and rng.random() < p["blur"]:
        sigma = rng.uniform(0.5, 1.5)
        x = np.stack([ndi.gaussian_filter(x[..., c], sigma) for c in range(x.shape[-1])], axis=-1)
    if rng.random() < p.get("noise", 0.0):
        x = x + rng.normal(0, rng.uniform(0.01, 0.05), x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def sample_crop(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    size: int,
    scale_range: tuple[float, float] = (0.75, 1.33),
    color: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training crop.

    Args:
        image: 3xHxW float image in [0, 1] (at the normalised scale).
        target: 3xHxW float targets: cell probability (0/1), flow dy, flow dx; any further
            channels (Kx, e.g. per-pixel loss weights) are resampled with the crop (bilinear,
            0 outside the image) and returned after the first three.
        rng: random generator.
        size: crop side in px.
        scale_range: log-uniform scale jitter range.
        color: probabilities for :func:`color_jitter` (None: no colour jitter).

    Returns:
        (3 x size x size float32 image, (3 + K) x size x size float32 target; probability
        is 0/1).
    """
    h, w = image.shape[1:]
    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    scale = math.exp(rng.uniform(lo, hi))
    half = (size / scale) / 2.0
    # keep the window centre inside the image, and the window inside it when it fits
    cy = rng.uniform(min(half, h / 2), max(h - half, h / 2))
    cx = rng.uniform(min(half, w / 2), max(w - half, w / 2))
    theta = rng.uniform(0, 2 * math.pi)
    flip = bool(rng.random() < 0.5)
    out, q = affine_sample(
        np.concatenate([image, target]), (cy, cx), size, scale, theta, flip, order=1
    )
    img = out[:3]
    prob = (out[3:4] > 0.5).astype(np.float32)
    flows = transform_flows(out[4:6], q) * prob  # zero flow outside cells
    extra = out[6:]  # further target channels (e.g. per-pixel loss weights): resampled as is
    if color:
        img = color_jitter(img.transpose(1, 2, 0), rng, color).transpose(2, 0, 1)
    return np.ascontiguousarray(img), np.concatenate([prob, flows, extra])


__all__ = [
    "resize_image_torch",
    "affine_sample",
    "transform_flows",
    "simulate_stain",
    "color_jitter",
    "check_color",
    "check_scale_range",
    "COLOR_KEYS",
    "sample_crop",
]
