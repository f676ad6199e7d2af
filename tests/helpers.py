"""Shared test fixtures: synthetic cell images and label comparison."""

from __future__ import annotations

import numpy as np


def disc_labels(
    shape: tuple[int, int], n: int, rmin: int = 4, rmax: int = 10, seed: int = 0
) -> np.ndarray:
    """HxW uint16 labels of ``n`` random non-overlapping-ish discs (later discs win overlaps)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    k = 0
    for _ in range(n * 5):
        if k == n:
            break
        r = rng.integers(rmin, rmax + 1)
        cy, cx = rng.integers(r, shape[0] - r), rng.integers(r, shape[1] - r)
        y0, y1, x0, x1 = max(cy - r - 1, 0), cy + r + 2, max(cx - r - 1, 0), cx + r + 2
        if (labels[y0:y1, x0:x1] > 0).any():
            continue
        k += 1
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images hold the same instances, whatever their ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]), axis=1)
    return pairs.shape[1] == len(np.unique(a[fg])) == len(np.unique(b[fg]))
