"""Coarse imaging modality of a microscopy image: fluorescence, stained or brightfield.

Used to stratify samples, to oversample the rare modalities in training and to report
per-modality scores. A heuristic, not a classifier: colour -> stained; gray with a bright
background -> brightfield; gray with a dark background -> fluorescence.
"""

from __future__ import annotations

import numpy as np

MODALITIES = ("fluorescence", "stained", "brightfield")


def modality(image: np.ndarray) -> str:
    """Guess the modality of an HxWxC image (any dtype)."""
    img = image.astype(np.float32)
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return "fluorescence"
    img = (img - lo) / (hi - lo)
    if img.shape[-1] >= 3:
        spread = np.abs(img[..., 0] - img[..., 1]).mean() + np.abs(img[..., 1] - img[..., 2]).mean()
        if spread > 0.02:
            return "stained"
    gray = img.mean(axis=-1)
    return "brightfield" if float(np.median(gray)) > 0.5 else "fluorescence"
