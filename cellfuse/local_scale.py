"""Local cell scale: a rescale factor per region of a slide, and the ownership rule that
stitches predictions made at different scales without seams.

A slide mixes cell sizes (tissue types, magnifications pasted together, sparse vs dense
regions). One diameter for the whole slide segments part of it at the wrong scale. Here
the network's own first pass (at the slide's global scale ``s0``) is measured per region
of ``region x region`` px:

1. **Diameter per region**: the median equivalent diameter of the first pass's cells whose
   centroid lies in the region; a region with fewer than ``min_cells`` cells (but some)
   pools the cells of its 3x3 neighbourhood (smoothing where the estimate is noisy); no
   cells, or still too few: no estimate. When ``s0`` is far from 1, regions without an estimate are probed by a
   pass at the network's own scale (cells far from ``s0``'s size may be missed entirely
   by the first pass); still none: the region keeps ``s0``.
2. **Quantised scale**: ``nominal / diameter`` is rounded, in log2 units relative to
   ``s0``, to steps of ``step`` (default half an octave, x1.41), so a slide has a few
   scales and a region only leaves ``s0`` when its cells differ by more than a factor
   ``2 ** (step / 2)`` (1.19) from the slide's. A slide of one scale keeps ``s0``
   everywhere, and its labels are the first pass's, unchanged.
3. **Ownership across scales** (the tiling rule of :mod:`cellfuse.tiling`, generalised):
   the regions partition the slide; each scale predicts windows that cover its regions
   plus a margin; a cell predicted at scale ``s`` is kept only if its centroid lies in a
   region assigned ``s`` and it touches no cut edge of its window. Cells of the first
   pass are painted first, then each other scale's on free pixels only. **Assumes the
   margin exceeds a cell's radius** (``margin = ceil(overlap / (2 s)) + 1`` image px: cells
   smaller than the overlap at the network scale, the assumption of the tiling itself).

The functions are pure numpy; :func:`repredict` runs the three steps with any predictor
(:class:`student.predictor.StudentPredictor` passes its own, ``local_scale=True``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import numpy as np

from cellfuse.instances import Instances
from cellfuse.preprocess import equivalent_diameters
from cellfuse.tiling import cut_edge_ids

Window = tuple[slice, slice]
log = logging.getLogger(__name__)


def cell_stats(labels: np.ndarray, band: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Area and centroid of every id of a label image, read in row bands (memmaps welcome).

    Returns:
        ``(area, centroid)``: N int64 areas and Nx2 float64 (y, x) centroids for ids
        1..N (N = the largest id; absent ids have area 0 and NaN centroids).
    """
    h, w = labels.shape
    n = 0
    for y in range(0, h, band):
        n = max(n, int(np.asarray(labels[y : y + band]).max(initial=0)))
    area = np.zeros(n + 1, np.float64)
    sy = np.zeros(n + 1, np.float64)
    sx = np.zeros(n + 1, np.float64)
    xs = np.arange(w, dtype=np.float64)
    for y in range(0, h, band):
        part = np.asarray(labels[y : y + band])
        flat = part.ravel()
        fg = flat > 0
        k = flat[fg].astype(np.intp)
        rows = np.repeat(np.arange(y, y + part.shape[0], dtype=np.float64), w)[fg]
        cols = np.tile(xs, part.shape[0])[fg]
        area += np.bincount(k, minlength=n + 1)
        sy += np.bincount(k, rows, minlength=n + 1)
        sx += np.bincount(k, cols, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = np.stack([sy / area, sx / area], axis=1)[1:]
    return area[1:].astype(np.int64), cent


def region_index(points: np.ndarray, region: int, grid: tuple[int, int]) -> np.ndarray:
    """Nx2 int (row, col) of the region holding each (y, x) point."""
    idx = np.floor(np.asarray(points, np.float64) / region).astype(np.int64)
    return np.clip(idx, 0, np.array(grid) - 1)


def region_diameters(
    area: np.ndarray,
    centroid: np.ndarray,
    shape: tuple[int, int],
    region: int,
    min_cells: int = 8,
) -> np.ndarray:
    """Median cell diameter per region (step 1 of the module docstring).

    Args:
        area, centroid: :func:`cell_stats` of the first pass.
        shape: (H, W) of the slide.
        region: region side (px).
        min_cells: fewest cells for an estimate.

    Returns:
        ``ceil(H / region) x ceil(W / region)`` float64 diameters, 0 where unknown.
    """
    grid = (-(-shape[0] // region), -(-shape[1] // region))
    ok = area > 0
    rc = region_index(centroid[ok], region, grid)
    flat = rc[:, 0] * grid[1] + rc[:, 1]
    d = equivalent_diameters(area[ok])
    order = np.argsort(flat, kind="stable")
    flat, d = flat[order], d[order]
    starts = np.searchsorted(flat, np.arange(grid[0] * grid[1] + 1))
    out = np.zeros(grid, np.float64)
    for r in range(grid[0]):
        for c in range(grid[1]):
            own = d[starts[r * grid[1] + c] : starts[r * grid[1] + c + 1]]
            if own.size == 0:  # nothing seen here: no estimate (not the neighbours')
                continue
            if own.size < min_cells:  # pool the 3x3 neighbourhood
                parts = [
                    d[starts[i * grid[1] + j] : starts[i * grid[1] + j + 1]]
                    for i in range(max(r - 1, 0), min(r + 2, grid[0]))
                    for j in range(max(c - 1, 0), min(c + 2, grid[1]))
                ]
                own = np.concatenate(parts)
            if own.size >= min_cells:
                out[r, c] = float(np.median(own))
    return out


def region_scales(
    diameters: np.ndarray,
    base_scale: float,
    nominal: float,
    *,
    step: float = 0.5,
    min_scale: float = 0.25,
    max_scale: float = 4.0,
) -> np.ndarray:
    """Quantised rescale factor per region (step 2 of the module docstring).

    Returns:
        float64 array like ``diameters``: ``base_scale * 2 ** (k * step)`` (clamped to
        ``[min_scale, max_scale]``), ``k`` the nearest integer; ``base_scale`` exactly
        where the diameter is unknown or ``k == 0``.
    """
    out = np.full(diameters.shape, float(base_scale))
    known = diameters > 0
    ratio = np.log2(nominal / diameters[known] / base_scale)
    k = np.rint(ratio / step)
    scaled = np.clip(base_scale * np.exp2(k * step), min_scale, max_scale)
    out[known] = np.where(k == 0, base_scale, scaled)
    return out


def scale_windows(
    scales: np.ndarray, scale: float, region: int, shape: tuple[int, int], margin: int
) -> Iterator[tuple[Window, Window]]:
    """``(window, core)`` pairs covering the regions of ``scales`` equal to ``scale``: the
    core is one run of consecutive such regions in a region row, the window that core
    grown by ``margin`` px (clipped). Cores do not overlap."""
    h, w = shape
    for r in range(scales.shape[0]):
        hit = np.concatenate([[False], scales[r] == scale, [False]])
        edges = np.flatnonzero(hit[1:] != hit[:-1])
        for c0, c1 in zip(edges[::2], edges[1::2], strict=True):
            core = (
                slice(r * region, min((r + 1) * region, h)),
                slice(int(c0) * region, min(int(c1) * region, w)),
            )
            yield (
                (
                    slice(max(core[0].start - margin, 0), min(core[0].stop + margin, h)),
                    slice(max(core[1].start - margin, 0), min(core[1].stop + margin, w)),
                ),
                core,
            )


def margin_for(overlap: int, scale: float) -> int:
    """Image px around a window that hold the radius of a cell smaller than ``overlap``
    network px at ``scale``."""
    return int(math.ceil(overlap / (2 * scale))) + 1


def owned_in_core(
    labels: np.ndarray, window: Window, core: Window, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which cells of a window's prediction the window keeps (step 3): centroid in
    ``core`` (image coordinates, inside ``window``) and no cut edge touched.

    Returns:
        ``(keep, area, centroid)`` over ids 1..N of ``labels``; centroids in image
        coordinates.
    """
    area, cent = cell_stats(labels)
    if area.size == 0:
        return np.zeros(0, bool), area, cent
    cent = cent + np.array([window[0].start, window[1].start])
    cy, cx = np.nan_to_num(cent, nan=-1.0).T
    keep = (area > 0) & (cy >= core[0].start) & (cy < core[0].stop)
    keep &= (cx >= core[1].start) & (cx < core[1].stop)
    keep[cut_edge_ids(labels, window, shape) - 1] = False
    return keep, area, cent


def repredict(
    base: Instances,
    s0: float,
    shape: tuple[int, int],
    predict_window: Callable[[Window, float], Instances],
    *,
    nominal: float,
    overlap: int,
    region: int = 256,
    region_cells: int = 8,
    step: float = 0.5,
    min_scale: float = 0.25,
    max_scale: float = 4.0,
    timing: MutableMapping[str, float] | None = None,
    progress: bool = False,
) -> tuple[Instances, np.ndarray]:
    """Steps 1-3 of the module docstring on a first pass ``base`` predicted at scale ``s0``.

    Args:
        base: the first pass's cells (the whole image, at ``s0``).
        shape: the image's ``(H, W)``.
        predict_window: ``(window, scale) -> Instances`` of that window of the image
            predicted at that scale (labels in window coordinates).
        nominal: the network's cell diameter (px); overlap: its tiles' overlap (network px).
        region, region_cells, step, min_scale, max_scale: as in the module docstring.
        timing: ``"postprocess"`` seconds are added to it (the network's are the caller's).

    Returns:
        ``(instances, scales)``: ``base`` itself when every region keeps ``s0``; ``scales``
        is the per-region scale grid.
    """
    timing = timing if timing is not None else {"postprocess": 0.0}

    def windows(scales: np.ndarray, s: float) -> list[tuple[Window, Window]]:
        return list(scale_windows(scales, s, region, shape, margin_for(overlap, s)))

    t0 = time.perf_counter()
    area, cent = cell_stats(base.labels)
    diam = region_diameters(area, cent, shape, region, region_cells)
    timing["postprocess"] += time.perf_counter() - t0
    unknown = diam == 0
    if unknown.any() and abs(math.log2(s0)) >= step / 2:
        # cells far from s0's size may be missed entirely: probe the regions without
        # cells at the network's own scale (where the first measuring pass looks)
        areas, cents = [], []
        for win, core in windows(np.where(unknown, 1.0, s0), 1.0):
            own, a, c = owned_in_core(predict_window(win, 1.0).labels, win, core, shape)
            areas.append(a[own])
            cents.append(c[own])
        if areas:
            found = region_diameters(
                np.concatenate(areas),
                np.concatenate(cents),
                shape,
                region,
                region_cells,
            )
            diam[unknown] = found[unknown]
    scales = region_scales(
        diam,
        s0,
        nominal,
        step=step,
        min_scale=min_scale,
        max_scale=max_scale,
    )
    others = [float(s) for s in np.unique(scales) if s != s0]
    if not others:
        return base, scales
    t0 = time.perf_counter()
    rc = region_index(np.nan_to_num(cent), region, scales.shape)
    keep = (area > 0) & (scales[rc[:, 0], rc[:, 1]] == s0)
    lut = np.zeros(area.size + 1, np.uint32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    labels = lut[base.labels]
    scores = [base.scores[: area.size][keep]]
    next_id = int(keep.sum()) + 1
    timing["postprocess"] += time.perf_counter() - t0
    todo: Any = [(s, win, core) for s in others for win, core in windows(scales, s)]
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(todo, desc="local scale", unit="window", leave=False)
    for s, win, core in todo:
        sub = predict_window(win, s)
        t1 = time.perf_counter()
        own = owned_in_core(sub.labels, win, core, shape)[0]
        k = int(own.sum())
        sub_lut = np.zeros(own.size + 1, np.uint32)
        sub_lut[1:][own] = np.arange(next_id, next_id + k, dtype=np.uint32)
        new, window = sub_lut[sub.labels], labels[win]
        free = (new > 0) & (window == 0)  # first painter wins, as in the tiling
        window[free] = new[free]
        scores.append(sub.scores[: own.size][own])
        next_id += k
        timing["postprocess"] += time.perf_counter() - t1
    log.info(
        "local scale: %d of %d regions re-predicted at %s",
        int((scales != s0).sum()),
        scales.size,
        ", ".join(f"{s:.3f}" for s in others),
    )
    return Instances.from_labels(labels, np.concatenate(scores)), scales


__all__ = [
    "cell_stats",
    "margin_for",
    "owned_in_core",
    "region_diameters",
    "region_index",
    "region_scales",
    "repredict",
    "scale_windows",
]
