"""Cellpose-style flows: targets from instance labels, flow-following, masks from flows.

Pure numerical functions (numpy in, numpy out). Conventions:

- A flow field is ``2xHxW float32`` ``(dy, dx)``; inside each cell it is a unit vector that
  points towards the cell's centre, outside every cell it is 0.
- The network predicts ``FLOW_SCALE x flow`` (5, cellpose's scaling); the functions here
  take flows in unit scale, so callers divide the network output by :data:`FLOW_SCALE`.

Flow targets (:func:`labels_to_flows`) follow cellpose's heat diffusion: one unit of heat is
injected at each cell's centre (the cell pixel nearest its centroid) per iteration, and every
cell pixel is replaced by the mean of its 3x3 neighbourhood, where neighbours outside the
cell count as 0. The flow is the normalised central-difference gradient of the heat. All
cells diffuse at once, vectorised over every foreground pixel (cellpose's GPU variant), so
there is no per-pixel or per-cell Python loop; ``n_iter`` is twice the largest
(height + width) bounding box, enough for heat to reach every pixel of every cell.

Masks from flows (:func:`flows_to_labels`) follow cellpose's ``follow_flows`` and
``get_masks``: foreground pixels move ``n_iter`` Euler steps of 1 px along the bilinearly
interpolated flow (numpy); a histogram of final positions has
peaks at the cell centres; peaks (local maxima over 5x5 holding > 10 pixels) seed regions
that grow for a few 3x3 steps through bins holding > 2 pixels; each pixel takes the label of
the bin it converged to. Masks larger than ``max_size_fraction`` of the image, masks whose
own flows disagree with the predicted flows (mean squared error > ``flow_threshold``,
cellpose's ``remove_bad_flow_masks``), and masks under ``min_size`` px are removed; holes
are filled.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from cellfuse.instances import check_labels, fill_holes, relabel_sequential, remove_small

log = logging.getLogger(__name__)

#: networks predict ``FLOW_SCALE x`` the unit flow (cellpose's scaling)
FLOW_SCALE = 5.0

# 3x3 neighbourhood offsets (dy, dx); index 4 is the centre
_OFFSETS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.int64)


def cell_centers(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each present id, the cell pixel nearest the cell's centroid.

    Args:
        labels: HxW integer labels, 0 = background.

    Returns:
        (ids K int64 sorted, K x 2 int64 (y, x) centre pixels).
    """
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs].astype(np.int64)
    if lab.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    n = int(lab.max()) + 1
    cnt = np.bincount(lab, minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(lab, ys, minlength=n) / cnt
        cx = np.bincount(lab, xs, minlength=n) / cnt
    d2 = (ys - cy[lab]) ** 2 + (xs - cx[lab]) ** 2
    order = np.lexsort((d2, lab))  # by id, then by distance to the centroid
    lab_sorted = lab[order]
    first = np.r_[True, lab_sorted[1:] != lab_sorted[:-1]]
    pick = order[first]
    return lab[pick], np.stack([ys[pick], xs[pick]], axis=1)


def _stack_centers(masks: np.ndarray) -> np.ndarray:
    """Kx2 int64 (y, x): per mask of a ``KxBxB`` stack, its pixel nearest its centroid."""
    ks, ys, xs = np.nonzero(masks)
    k = masks.shape[0]
    cnt = np.bincount(ks, minlength=k).astype(np.float64)
    cy = np.bincount(ks, ys, minlength=k) / cnt
    cx = np.bincount(ks, xs, minlength=k) / cnt
    d2 = (ys - cy[ks]) ** 2 + (xs - cx[ks]) ** 2
    order = np.lexsort((d2, ks))
    first = np.r_[True, ks[order][1:] != ks[order][:-1]]
    pick = order[first]
    return np.stack([ys[pick], xs[pick]], axis=1)


def _diffuse(heat: np.ndarray, inner_mask: np.ndarray) -> None:
    """One heat step in place: 3x3 mean of ``heat`` (KxBxB stacks with a zero 1-px border,
    so no padding is needed) times the cells' masks (``inner_mask``, the stacks' interior)."""
    rows = heat[:, :-2] + heat[:, 1:-1] + heat[:, 2:]
    inner = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    inner *= inner_mask
    heat[:, 1:-1, 1:-1] = inner


def _box_size(extent: int) -> int:
    """Round a box side up to a coarse size, so cells of similar size share one stack."""
    size = 8
    while size < extent:
        size = int(size * 1.5)
    return size


def labels_to_flows(labels: np.ndarray, n_iter: int | None = None) -> np.ndarray:
    """Unit flow field pointing to each cell's centre, by heat diffusion (see module doc).

    Each cell diffuses inside its own bounding box. Cells are grouped by box size into
    ``K x B x B`` stacks that diffuse together (a 3x3 mean, ``avg_pool2d``, times the cell
    mask), each stack for ``2 * max(box height + box width)`` iterations, so small cells
    do not pay for large ones and nothing loops over pixels or cells in Python.

    Args:
        labels: HxW integer labels, 0 = background (ids need not be sequential).
        n_iter: diffusion iterations for every cell; default ``2 * (box height + box width)``
            of the largest cell in each size group.

    Returns:
        2xHxW float32 ``(dy, dx)``, unit length inside cells (0 for 1-pixel cells), 0 outside.
    """
    labels = check_labels(labels)
    h, w = labels.shape
    flows = np.zeros((2, h, w), np.float32)
    if not labels.any():
        return flows
    objs = [(i, sl) for i, sl in enumerate(ndi.find_objects(labels), start=1) if sl is not None]
    groups: dict[int, list[tuple[int, tuple[slice, slice]]]] = {}
    for i, sl in objs:
        ext = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        groups.setdefault(_box_size(ext), []).append((i, sl))
    for b, members in groups.items():
        k = len(members)
        masks = np.zeros((k, b + 2, b + 2), np.float64)  # 1-px zero border: heat stays inside
        for j, (i, sl) in enumerate(members):
            bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            masks[j, 1 : bh + 1, 1 : bw + 1] = labels[sl] == i
        centers = _stack_centers(masks)
        iters = n_iter
        if iters is None:
            ext = max((sl[0].stop - sl[0].start) + (sl[1].stop - sl[1].start) for _, sl in members)
            iters = 2 * ext
        heat = np.zeros_like(masks)
        inner_mask = masks[:, 1:-1, 1:-1] / 9.0
        kk = np.arange(k)
        for _ in range(iters):
            heat[kk, centers[:, 0], centers[:, 1]] += 1.0
            _diffuse(heat, inner_mask)
        dy = np.zeros_like(heat)
        dx = np.zeros_like(heat)
        dy[:, 1:-1] = heat[:, 2:] - heat[:, :-2]
        dx[:, :, 1:-1] = heat[:, :, 2:] - heat[:, :, :-2]
        norm = np.sqrt(dy**2 + dx**2)
        norm[norm == 0] = 1.0
        dy /= norm
        dx /= norm
        for j, (i, sl) in enumerate(members):
            bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            m = labels[sl] == i
            flows[0][sl][m] = dy[j, 1 : bh + 1, 1 : bw + 1][m]
            flows[1][sl][m] = dx[j, 1 : bh + 1, 1 : bw + 1][m]
    return flows


def _bilinear(field: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample a 2xHxW field at float positions (inside the image) with bilinear weights."""
    h, w = field.shape[1:]
    y0 = np.minimum(y.astype(np.int64), h - 2) if h > 1 else np.zeros(y.shape, np.int64)
    x0 = np.minimum(x.astype(np.int64), w - 2) if w > 1 else np.zeros(x.shape, np.int64)
    wy = (y - y0).astype(np.float32)
    wx = (x - x0).astype(np.float32)
    dy1 = w if h > 1 else 0
    dx1 = 1 if w > 1 else 0
    i00 = y0 * w + x0
    out = []
    for c in range(2):
        f = field[c].ravel()
        top = f[i00] * (1 - wx) + f[i00 + dx1] * wx
        bot = f[i00 + dy1] * (1 - wx) + f[i00 + dy1 + dx1] * wx
        out.append(top * (1 - wy) + bot * wy)
    return out[0], out[1]


def follow_flows(
    flows: np.ndarray, mask: np.ndarray, n_iter: int = 200, step: float = 1.0
) -> np.ndarray:
    """Move every pixel of ``mask`` along the flow field by Euler steps.

    The flow at each position is interpolated bilinearly (what cellpose does with
    ``grid_sample``); positions are clamped to the image. Written in numpy on flat arrays
    rather than torch: on a small, shared CPU a torch thread pool costs more than it gives
    for these gather-heavy steps.

    Args:
        flows: 2xHxW float (dy, dx) in px per step (unit scale).
        mask: HxW bool, the pixels to move (cell probability above threshold).
        n_iter: number of steps.
        step: step size multiplier.

    Returns:
        Px2 float32 final (y, x) positions of the P mask pixels (in ``np.nonzero`` order).
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((0, 2), np.float32)
    field = np.ascontiguousarray(flows, dtype=np.float32) * np.float32(step)
    y = ys.astype(np.float32)
    x = xs.astype(np.float32)
    for _ in range(n_iter):
        dy, dx = _bilinear(field, y, x)
        y = np.clip(y + dy, 0, h - 1, out=y)
        x = np.clip(x + dx, 0, w - 1, out=x)
    return np.stack([y, x], axis=1)


def masks_from_positions(
    points: np.ndarray,
    final: np.ndarray,
    shape: tuple[int, int],
    *,
    min_count: int = 10,
    grow_count: int = 2,
    grow_iter: int = 5,
) -> np.ndarray:
    """Cluster pixels by where they converged (cellpose ``get_masks``).

    Args:
        points: Px2 int (y, x) start pixels.
        final: Px2 float (y, x) final positions from :func:`follow_flows`.
        shape: (H, W) of the image.
        min_count: a histogram peak must hold more than this many pixels to seed a mask.
        grow_count: seeds grow through bins holding more than this many pixels.
        grow_iter: 3x3 growth steps of each seed.

    Returns:
        HxW int32 labels (ids not sequential; 0 = background).
    """
    labels = np.zeros(shape, np.int32)
    if points.shape[0] == 0:
        return labels
    h, w = shape
    fy = np.clip(np.rint(final[:, 0]).astype(np.int64), 0, h - 1)
    fx = np.clip(np.rint(final[:, 1]).astype(np.int64), 0, w - 1)
    hist = np.bincount(fy * w + fx, minlength=h * w).reshape(h, w).astype(np.float32)
    hmax = ndi.maximum_filter(hist, size=5, mode="constant")
    seeds = (hist >= hmax) & (hist > min_count)
    seed_lab, n = ndi.label(seeds, structure=np.ones((3, 3)))  # plateaus give one seed
    if n == 0:
        return labels
    allowed = hist > grow_count
    grown = seed_lab
    for _ in range(grow_iter):
        dil = ndi.grey_dilation(grown, size=(3, 3))
        grown = np.where((grown == 0) & allowed, dil, grown)
    labels[points[:, 0], points[:, 1]] = grown[fy, fx]
    return labels


def flow_errors(labels: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """Per-mask mean squared difference between the mask's own flows and ``flows``.

    Args:
        labels: HxW int labels 1..N (sequential).
        flows: 2xHxW predicted flows, unit scale.

    Returns:
        N float32 errors (sum over the two components of the per-pixel squared error, averaged
        over the mask), as in cellpose's ``metrics.flow_error`` (on unit-scale flows).
    """
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return np.zeros(0, np.float32)
    own = labels_to_flows(labels)
    se = ((own - flows) ** 2).sum(0)
    flat = labels.ravel()
    cnt = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    tot = np.bincount(flat, se.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / cnt, 0.0).astype(np.float32)


def flows_to_labels(
    flows: np.ndarray,
    prob: np.ndarray,
    *,
    prob_threshold: float = 0.5,
    n_iter: int = 200,
    flow_threshold: float | None = 0.4,
    min_size: int = 15,
    max_size_fraction: float = 0.4,
    fill: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance labels from flows and cell probability.

    Args:
        flows: 2xHxW float (dy, dx), unit scale.
        prob: HxW float cell probability in [0, 1].
        prob_threshold: pixels with ``prob > prob_threshold`` are followed.
        n_iter: Euler steps of flow-following.
        flow_threshold: drop masks whose flow error exceeds it (None or <= 0: keep all).
        min_size: drop masks under this many px (after hole filling).
        max_size_fraction: drop masks larger than this fraction of the image.
        fill: fill holes in each mask.

    Returns:
        (HxW uint16/uint32 labels 1..N, N float32 mean probability per mask,
        N float32 flow error per mask).
    """
    shape = prob.shape
    mask = prob > prob_threshold
    empty = (np.zeros(shape, np.uint16), np.zeros(0, np.float32), np.zeros(0, np.float32))
    if not mask.any():
        return empty
    points = np.argwhere(mask)
    final = follow_flows(flows, mask, n_iter=n_iter)
    labels = masks_from_positions(points, final, shape)
    if max_size_fraction < 1.0 and labels.any():
        cnt = np.bincount(labels.ravel())
        big = cnt > max_size_fraction * labels.size
        big[0] = False
        if big.any():
            labels[big[labels]] = 0
    labels, _ = relabel_sequential(labels)
    if labels.max() == 0:
        return empty
    err = flow_errors(labels, flows)
    if flow_threshold is not None and flow_threshold > 0:
        bad = np.r_[False, err > flow_threshold]
        if bad.any():
            labels = labels.copy()
            labels[bad[labels]] = 0
            err = err[~bad[1:]]
            labels, _ = relabel_sequential(labels)
    if fill:
        labels = fill_holes(labels)
    kept = labels
    if min_size > 0:
        kept = remove_small(labels, min_size)
    kept, old = relabel_sequential(kept)
    err = err[old.astype(np.intp) - 1]  # the surviving ids, ascending
    m = int(kept.max())
    if m == 0:
        return empty
    flat = kept.ravel()
    cnt = np.bincount(flat, minlength=m + 1)[1:]
    mean_prob = np.bincount(flat, prob.ravel().astype(np.float64), minlength=m + 1)[1:] / cnt
    return kept, mean_prob.astype(np.float32), err.astype(np.float32)


__all__ = [
    "cell_centers",
    "labels_to_flows",
    "follow_flows",
    "masks_from_positions",
    "flow_errors",
    "flows_to_labels",
]
