"""The NeurIPS 2022 Cell Segmentation challenge metric: F1 at IoU thresholds 0.5..0.9.

We follow the organisers' own evaluation script, ``baseline/compute_metric.py`` in
https://github.com/JunMa11/NeurIPS-CellSeg (the later revision with ``--thresholds`` and
per-image cell counts; theirs is adapted from StarDist's ``matching.py``):

* Border cells: any instance with a pixel in the 2-pixel frame of the image is dropped from
  truth and prediction, and both are relabelled 1..N (``remove_boundary_cells``).
* Matching: IoU of every (true, predicted) pair; ``linear_sum_assignment`` on the cost
  ``-(IoU >= t) - IoU / (2 * min(n_true, n_pred))``, and a pair is a true positive when its
  IoU is ``>= t``. The IoU term sums to less than 1/2, so this finds the largest possible
  number of one-to-one pairs with IoU >= t (the IoU only breaks ties). We get the same TP by
  running the same assignment on each connected group of candidate pairs (IoU >= t) instead
  of on the dense n_true x n_pred matrix. ``>=`` matters: a cell split into two exact halves
  keeps one match at 0.5.
* Scores: precision = TP / n_pred, recall = TP / n_true, F1 = 2PR / (P + R), and
  P = R = F1 = 0 whenever TP = 0. That includes an empty prediction, an empty truth with
  predictions, and both empty: the official script scores an image with no cells in either
  as 0, not 1.
* Large images: when H*W >= 25,000,000 (the script's whole-image path runs only for
  ``np.prod(shape) < 25000000``) the script zero-pads both images to a multiple of 2000,
  cuts them into 2000x2000 ROIs, drops the 2-px-border cells of each ROI (so a cell cut by an
  ROI edge is not scored at all, and at a padded edge the image's own border cells are kept),
  and sums TP and the cell counts over the ROIs before it computes one F1 for the image. It
  sums; it does not average per-ROI F1s.
* Dataset score: the script prints the mean (and median) of the per-image F1, which is the
  challenge's ranking score at IoU 0.5. We report that, plus a pooled F1 from TP/FP/FN
  summed over all images.

Where we differ, no F1 changes. The script records FP = FN = 0 for an empty prediction (its
F1 comes from the cell counts, so it is 0 either way); we record FN = n_true, which keeps
the pooled F1 honest. The script scores only the predictions it finds; ``evaluate_dirs``
walks the truth, scores a missing or unreadable prediction as an empty one (F1 0) and lists
it in the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import fastremap
import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

from cellfuse.errors import LabelError
from cellfuse.instances import check_labels

logger = logging.getLogger(__name__)

THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
BORDER = 2
ROI_SIZE = 2000
ROI_MIN_PIXELS = 25_000_000

Counts = tuple[int, int, int]  # (tp, fp, fn)


# --------------------------------------------------------------------------- label helpers


def _relabel(labels: np.ndarray, drop: np.ndarray | None = None) -> np.ndarray:
    """Relabel to 1..N keeping the order of the ids; ids in ``drop`` become 0.

    Returns HxW uint16 (uint32 when N > 65535), C-contiguous.
    """
    ids = fastremap.unique(labels)
    ids = ids[ids != 0]
    if drop is not None and drop.size:
        ids = ids[~np.isin(ids, drop)]
    n = int(ids.size)
    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    if n == 0:
        return np.zeros(labels.shape, dtype)
    if (drop is None or drop.size == 0) and int(ids[-1]) == n:
        return np.ascontiguousarray(labels, dtype=dtype)  # already 1..N
    table = {int(i): k for k, i in enumerate(ids.tolist(), start=1)}
    table[0] = 0
    if drop is not None:
        table.update((int(i), 0) for i in drop.tolist())
    return fastremap.remap(np.ascontiguousarray(labels), table).astype(dtype, copy=False)


def remove_boundary_cells(labels: Any, border: int = BORDER) -> np.ndarray:
    """Drop every instance with a pixel in the ``border``-pixel frame, then relabel 1..N.

    The official script's rule (``remove_boundary_cells``); ``border=0`` only relabels.

    Args:
        labels: HxW non-negative integer labels (or an object with ``.labels``).
        border: frame width in pixels.

    Returns:
        HxW uint16/uint32 labels 0..N, ids in their original order.
    """
    lab = check_labels(labels)
    drop = None
    if border > 0 and lab.size:
        b = border
        frame = np.concatenate(
            [lab[:b].ravel(), lab[-b:].ravel(), lab[:, :b].ravel(), lab[:, -b:].ravel()]
        )
        drop = fastremap.unique(frame)
        drop = drop[drop != 0]
    return _relabel(lab, drop)


# --------------------------------------------------------------------------- IoU and matching


def _pair_overlaps(
    true: np.ndarray, pred: np.ndarray
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse IoU of every overlapping (true, pred) pair.

    Returns:
        (n_true, n_pred, ti, pi, iou): ``n_*`` are the max ids, ``ti``/``pi`` are 0-based
        indices (id - 1) of the K overlapping pairs, ``iou`` their K float64 IoUs.
    """
    # bincount needs a safe cast to intp, which uint64 lacks
    t = true.ravel().astype(np.int64, copy=False) if true.dtype == np.uint64 else true.ravel()
    p = pred.ravel().astype(np.int64, copy=False) if pred.dtype == np.uint64 else pred.ravel()
    nt = int(t.max()) if t.size else 0
    npr = int(p.max()) if p.size else 0
    area_t = np.bincount(t, minlength=nt + 1)
    area_p = np.bincount(p, minlength=npr + 1)
    both = (t > 0) & (p > 0)
    key = t[both].astype(np.int64) * (npr + 1) + p[both]
    nbins = (nt + 1) * (npr + 1)
    # Joint histogram: one bincount when the n_true x n_pred table is small, else a sort.
    if nbins <= max(4 * key.size, 1 << 20):
        hist = np.bincount(key, minlength=nbins)
        idx = np.flatnonzero(hist)
        inter = hist[idx]
    else:
        idx, inter = np.unique(key, return_counts=True)
    ti, pi = np.divmod(idx, npr + 1)
    # Same integer arithmetic and one float division as the official script: identical IoUs.
    iou = inter / (area_t[ti] + area_p[pi] - inter)
    return nt, npr, ti - 1, pi - 1, iou


def iou_matrix(true: Any, pred: Any) -> np.ndarray:
    """Dense IoU of all instance pairs, computed from a sparse joint histogram.

    Row ``i`` is true id ``i + 1`` and column ``j`` predicted id ``j + 1`` (ids absent from
    the image give zero rows/columns; relabel first if ids are sparse).

    Args:
        true: HxW integer labels (or ``.labels``), 0 = background.
        pred: HxW integer labels of the same shape.

    Returns:
        n_true x n_pred float64, n_* = max id.
    """
    t = check_labels(true, "truth")
    p = check_labels(pred, "prediction")
    _check_same_shape(t, p)
    nt, npr, ti, pi, iou = _pair_overlaps(t, p)
    out = np.zeros((nt, npr), np.float64)
    out[ti, pi] = iou
    return out


def _true_positives(ti: np.ndarray, pi: np.ndarray, iou: np.ndarray, thr: float) -> int:
    """Largest number of one-to-one pairs with IoU >= thr (the official assignment's TP)."""
    keep = iou >= thr
    ti, pi, w = ti[keep], pi[keep], iou[keep]
    if ti.size == 0:
        return 0
    ut, tc = np.unique(ti, return_inverse=True)
    up, pc = np.unique(pi, return_inverse=True)
    if ut.size == ti.size and up.size == pi.size:
        return int(ti.size)  # no cell has two candidates: every pair is a match
    nr, nc = ut.size, up.size
    graph = sparse.coo_matrix((np.ones(ti.size), (tc, nr + pc)), shape=(nr + nc, nr + nc))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[tc]
    sizes = np.bincount(edge_comp)
    tp = int(np.count_nonzero(sizes == 1))
    order = np.argsort(edge_comp, kind="stable")
    starts = np.searchsorted(edge_comp[order], np.flatnonzero(sizes > 1))
    for s, c in zip(starts, np.flatnonzero(sizes > 1), strict=True):
        e = order[s : s + sizes[c]]
        rows, r = np.unique(tc[e], return_inverse=True)
        cols, k = np.unique(pc[e], return_inverse=True)
        m = np.zeros((rows.size, cols.size))
        m[r, k] = w[e]
        cost = -(m >= thr).astype(float) - m / (2 * min(m.shape))
        ri, ci = linear_sum_assignment(cost)
        tp += int(np.count_nonzero(m[ri, ci] >= thr))
    return tp


def _match_sequential(
    true: np.ndarray, pred: np.ndarray, thresholds: Sequence[float]
) -> tuple[int, int, dict[float, Counts]]:
    """Match labels already relabelled 1..N; returns (n_true, n_pred, {thr: (tp, fp, fn)})."""
    nt, npr, ti, pi, iou = _pair_overlaps(true, pred)
    out = {}
    for thr in thresholds:
        tp = _true_positives(ti, pi, iou, thr)
        out[thr] = (tp, npr - tp, nt - tp)
    return nt, npr, out


def match(true: Any, pred: Any, thresholds: Iterable[float] = THRESHOLDS) -> dict[float, Counts]:
    """Count TP, FP and FN at each IoU threshold (no border removal, no ROIs).

    Args:
        true: HxW integer labels (or ``.labels``), 0 = background; ids need not be 1..N.
        pred: HxW integer labels of the same shape.
        thresholds: IoU thresholds in (0, 1]; a pair counts when IoU >= threshold.

    Returns:
        ``{threshold: (tp, fp, fn)}``.
    """
    t = check_labels(true, "truth")
    p = check_labels(pred, "prediction")
    _check_same_shape(t, p)
    return _match_sequential(_relabel(t), _relabel(p), _check_thresholds(thresholds))[2]


def f1_scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1; all three are 0 when ``tp == 0`` (also when nothing exists).

    Args:
        tp: true positives.
        fp: false positives (unmatched predictions).
        fn: false negatives (unmatched true cells).

    Returns:
        (precision, recall, f1) as floats.
    """
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return precision, recall, 2 * (precision * recall) / (precision + recall)


def _check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    out = tuple(dict.fromkeys(float(t) for t in thresholds))
    if not out:
        raise ValueError("no IoU thresholds given")
    for t in out:
        if not 0.0 < t <= 1.0 or math.isnan(t):
            raise ValueError(f"IoU threshold {t} is outside (0, 1]")
    return out


def _check_same_shape(t: np.ndarray, p: np.ndarray) -> None:
    if t.shape != p.shape:
        raise LabelError(f"prediction is HxW {p.shape} but truth is {t.shape}; they must match")


# --------------------------------------------------------------------------- one image


def _rois(labels: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """size x size crops in row-major order, the last row/column zero-padded (as the script)."""
    h, w = labels.shape
    for y in range(0, h, size):
        for x in range(0, w, size):
            crop = labels[y : y + size, x : x + size]
            if crop.shape != (size, size):
                crop = np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1])))
            yield crop


def evaluate_image(
    true: Any,
    pred: Any,
    thresholds: Iterable[float] = THRESHOLDS,
    *,
    border: int = BORDER,
    roi_size: int = ROI_SIZE,
    roi_min_pixels: int = ROI_MIN_PIXELS,
) -> dict[str, Any]:
    """Score one image as the challenge does (border cells dropped, ROIs for huge images).

    Args:
        true: HxW integer truth labels (or ``.labels``), 0 = background.
        pred: HxW integer predicted labels (or an ``Instances``), same shape.
        thresholds: IoU thresholds in (0, 1].
        border: width of the frame whose cells are not scored (0 scores all cells).
        roi_size: ROI side for large images.
        roi_min_pixels: images with H*W >= this are scored in ROIs.

    Returns:
        ``{"n_true", "n_pred", "rois", "scores": {thr: {"tp", "fp", "fn", "precision",
        "recall", "f1"}}}``; counts are after border removal, summed over ROIs, and
        ``rois`` is 1 for the whole-image path.
    """
    t = check_labels(true, "truth")
    p = check_labels(pred, "prediction")
    _check_same_shape(t, p)
    if t.size == 0:
        raise LabelError(f"cannot score an empty image of shape {t.shape}")
    thr = _check_thresholds(thresholds)
    if t.size < roi_min_pixels:
        pairs: Iterable[tuple[np.ndarray, np.ndarray]] = [(t, p)]
    else:
        pairs = zip(_rois(t, roi_size), _rois(p, roi_size), strict=True)
    n_true = n_pred = n_rois = 0
    sums = {x: [0, 0, 0] for x in thr}
    for tc, pc in pairs:
        nt, npr, counts = _match_sequential(
            remove_boundary_cells(tc, border), remove_boundary_cells(pc, border), thr
        )
        n_true += nt
        n_pred += npr
        n_rois += 1
        for x, c in counts.items():
            sums[x] = [a + b for a, b in zip(sums[x], c, strict=True)]
    scores = {}
    for x, (tp, fp, fn) in sums.items():
        precision, recall, f1 = f1_scores(tp, fp, fn)
        scores[x] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    return {"n_true": n_true, "n_pred": n_pred, "rois": n_rois, "scores": scores}
