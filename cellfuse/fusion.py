"""Weighted mask voting: fuse several teachers' instances into pseudo-labels.

Pure functions on :class:`~cellfuse.instances.Instances`, no I/O. One call, :func:`fuse`,
does the whole pipeline for one image:

1. **Clusters.** Instances of different teachers that overlap with IoU >= ``iou_thr`` are
   matched per teacher pair (greedy by IoU, one partner per instance); matches are edges of
   a graph whose connected components are the clusters. A component that would hold two
   instances of one teacher (a chain A1-B1-A2) is split by re-joining its edges greedily
   by IoU, never merging two groups that share a teacher.
2. **Votes.** For a cluster ``c`` the pixel vote is
   ``V_c(x) = sum_{i in c} w_t(i) * s_i * [x in mask_i] / sum_t w_t`` — the denominator
   sums over *all* teachers, so a cell seen by one teacher of three gets a low vote.
3. **Confidence.** The fused mask of ``c`` is ``V_c >= tau``; its confidence is the mean of
   ``V_c`` over that mask (so it is >= ``tau``). A cluster with an empty fused mask gets its
   peak vote (< ``tau``) as confidence instead, which lets ``lo`` sort weak clusters into
   "uncertain" and "background".
4. **Decision.** Clusters with ``conf >= hi`` become pseudo-label instances scored by their
   confidence. A pixel claimed by two of them goes to the higher vote there; each cell keeps
   its largest connected piece, holes are filled and cells under ``min_size`` are dropped.
   The ignore mask holds every pixel outside the kept cells that (a) belongs to an
   uncertain cluster (``lo <= conf < hi``), (b) lies inside a member mask of a kept cluster
   but outside its fused mask (boundary disagreement, removed small cells), or (c) has a
   foreground vote strictly inside ``disagree`` (teachers disagree). Clusters below ``lo``
   are background unless (c) applies.

Everything after clustering is vectorised over foreground pixels: each pixel carries at
most one candidate cluster per teacher, so the per-cluster votes are ``T x T`` array
comparisons, not a loop over clusters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as connected_label

from cellfuse.config import dataclass_from_dict
from cellfuse.errors import ConfigError, LabelError
from cellfuse.instances import Instances, fill_holes, label_dtype, remove_small

logger = logging.getLogger(__name__)


@dataclass
class FusionParams:
    """Parameters of :func:`fuse` (the config's ``fusion`` dict).

    Attributes:
        iou_thr: IoU at which two teachers' instances are the same cell.
        tau: vote a pixel needs to be in a cluster's fused mask.
        lo: clusters with confidence below ``lo`` are background.
        hi: clusters with confidence >= ``hi`` become pseudo-labels; between: ignored.
        disagree: open interval of the foreground vote where teachers disagree (ignored).
        min_size: fused cells with fewer pixels are dropped (their pixels are ignored).
        fill_holes: fill holes inside fused cells.
    """

    iou_thr: float = 0.5
    tau: float = 0.5
    lo: float = 0.25
    hi: float = 0.6
    disagree: tuple[float, float] = (0.2, 0.8)
    min_size: int = 10
    fill_holes: bool = True

    def __post_init__(self) -> None:
        self.disagree = tuple(float(x) for x in self.disagree)  # type: ignore[assignment]
        if not 0.0 < self.iou_thr <= 1.0:
            raise ConfigError(f"fusion.iou_thr must be in (0, 1], got {self.iou_thr}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"fusion.tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.lo <= self.hi <= 1.0:
            raise ConfigError(f"fusion needs 0 <= lo <= hi <= 1, got lo={self.lo}, hi={self.hi}")
        if len(self.disagree) != 2 or not 0.0 <= self.disagree[0] <= self.disagree[1] <= 1.0:
            raise ConfigError(f"fusion.disagree must be (low, high) in [0, 1], got {self.disagree}")
        if self.min_size < 0:
            raise ConfigError(f"fusion.min_size must be >= 0, got {self.min_size}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> FusionParams:
        return dataclass_from_dict(cls, d, "fusion")

    @classmethod
    def from_config(cls, cfg: Mapping, predict: bool = False) -> FusionParams:
        """A pseudo-label config's ``fusion``; with ``predict``, plus its ``fusion_predict``
        overrides (the ensemble as a predictor, see :meth:`for_prediction`)."""
        params = cls.from_dict(cfg.get("fusion"))
        return params.for_prediction(cfg.get("fusion_predict")) if predict else params

    def for_prediction(self, overrides: Mapping | None) -> FusionParams:
        """These parameters with the config's ``fusion_predict`` overrides: the ensemble used
        as a predictor (every cell with enough vote), not as a pseudo-labeller (only the
        confident ones, the rest ignored)."""
        d = dict(overrides or {})
        unknown = set(d) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"fusion_predict: unknown keys {sorted(unknown)}")
        return FusionParams(**{**self.__dict__, **d})


@dataclass
class FusionResult:
    """Fused pseudo-labels of one image.

    Attributes:
        instances: confident cells; labels HxW uint16/uint32, scores N float32 = confidence.
        ignore: HxW bool, pixels the student must not learn from.
        votes: HxW float32 foreground vote ``sum_t w_t * s_t(x) / sum_t w_t`` in [0, 1],
            where ``s_t(x)`` is the score of teacher t's instance at x (0 outside its cells).
        stats: cluster counts: ``clusters``, ``confident``, ``uncertain``, ``background``.
    """

    instances: Instances
    ignore: np.ndarray
    votes: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- matching


def pair_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of every pair of instances of two label images, from one sparse histogram.

    Args:
        a: HxW labels 0..Na.
        b: HxW labels 0..Nb, same shape.

    Returns:
        ``(ia, ib, inter)``: K int64 zero-based instance indices (label - 1) of the pairs
        that overlap, and K int64 overlap pixel counts.
    """
    both = (a > 0) & (b > 0)
    ka = a[both].astype(np.int64) - 1
    kb = b[both].astype(np.int64) - 1
    if ka.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    hist = sparse.coo_matrix(
        (np.ones(ka.size, np.int64), (ka, kb)), shape=(int(ka.max()) + 1, int(kb.max()) + 1)
    ).tocsr()
    hist.sum_duplicates()
    coo = hist.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.int64)


def pair_ious(a: Instances, b: Instances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every overlapping pair of instances of ``a`` and ``b`` (sparse).

    Returns:
        ``(ia, ib, iou)``: K zero-based indices into ``a`` and ``b``, K float64 IoUs > 0.
    """
    ia, ib, inter = pair_overlaps(a.labels, b.labels)
    union = a.areas()[ia] + b.areas()[ib] - inter
    return ia, ib, inter / np.maximum(union, 1)


def match_greedy(
    ia: np.ndarray, ib: np.ndarray, iou: np.ndarray, thr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of candidate pairs with IoU >= ``thr``, best IoU first.

    For ``thr > 0.5`` every instance has at most one candidate (two cells of one teacher do
    not overlap), so all candidates are returned without a loop; for lower thresholds
    candidates are accepted in decreasing IoU while both sides are free.

    Returns:
        The accepted ``(ia, ib, iou)``.
    """
    keep = iou >= thr
    ia, ib, iou = ia[keep], ib[keep], iou[keep]
    if np.unique(ia).size == ia.size and np.unique(ib).size == ib.size:
        return ia, ib, iou
    order = np.argsort(-iou, kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    accepted = []
    for k in order.tolist():
        x, y = int(ia[k]), int(ib[k])
        if x in used_a or y in used_b:
            continue
        used_a.add(x)
        used_b.add(y)
        accepted.append(k)
    sel = np.sort(np.asarray(accepted, np.int64))
    return ia[sel], ib[sel], iou[sel]


def cluster_instances(preds: Sequence[Instances], iou_thr: float = 0.5) -> np.ndarray:
    """Group the instances of all teachers into clusters, at most one per teacher each.

    Args:
        preds: T Instances of one image (same shape).
        iou_thr: IoU for two instances to be matched.

    Returns:
        sum(n_t) int64 cluster ids 0..K-1, teacher after teacher (instance ``j`` of teacher
        ``t`` is entry ``offset_t + j``).
    """
    counts = np.array([p.n for p in preds], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = int(offsets[-1])
    teacher_of = np.repeat(np.arange(len(preds)), counts)
    src, dst, wgt = [], [], []
    for t in range(len(preds)):
        for u in range(t + 1, len(preds)):
            if preds[t].n == 0 or preds[u].n == 0:
                continue
            ia, ib, iou = match_greedy(*pair_ious(preds[t], preds[u]), iou_thr)
            src.append(ia + offsets[t])
            dst.append(ib + offsets[u])
            wgt.append(iou)
    if not src:
        return np.arange(n, dtype=np.int64)
    src_a, dst_a, wgt_a = np.concatenate(src), np.concatenate(dst), np.concatenate(wgt)
    graph = sparse.coo_matrix((np.ones(src_a.size), (src_a, dst_a)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    comp = comp.astype(np.int64)

    # A component with two instances of one teacher came from a chain of matches: split it.
    n_comp = int(comp.max()) + 1
    per_teacher = np.bincount(comp * len(preds) + teacher_of, minlength=n_comp * len(preds))
    bad = np.zeros(n_comp, bool)
    bad[np.flatnonzero(per_teacher > 1) // len(preds)] = True
    if bad.any():
        sel = bad[comp[src_a]]
        comp = _split_components(comp, bad, teacher_of, src_a[sel], dst_a[sel], wgt_a[sel])
    _, comp = np.unique(comp, return_inverse=True)
    return comp.astype(np.int64).reshape(-1)


def _split_components(
    comp: np.ndarray,
    bad: np.ndarray,
    teacher_of: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    iou: np.ndarray,
) -> np.ndarray:
    """Re-cluster the nodes of ``bad`` components: union by decreasing IoU, never joining
    two groups that both hold an instance of the same teacher."""
    comp = comp.copy()
    nodes = np.flatnonzero(bad[comp])
    parent = {int(i): int(i) for i in nodes}
    members = {int(i): {int(teacher_of[i])} for i in nodes}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in np.argsort(-iou, kind="stable").tolist():
        ra, rb = find(int(src[k])), find(int(dst[k]))
        if ra == rb or members[ra] & members[rb]:
            continue
        parent[rb] = ra
        members[ra] |= members.pop(rb)
    base = int(comp.max()) + 1
    for i in nodes.tolist():
        comp[i] = base + find(i)
    return comp


# --------------------------------------------------------------------------- fusion


def _check_inputs(
    preds: Sequence[Instances], weights: Sequence[float] | np.ndarray | None
) -> tuple[tuple[int, int], np.ndarray]:
    if len(preds) == 0:
        raise ConfigError("fuse: need at least one teacher prediction, got none")
    for i, p in enumerate(preds):
        if not isinstance(p, Instances):
            raise LabelError(f"fuse: prediction {i} is a {type(p).__name__}, not Instances")
    shape = preds[0].shape
    bad = [(i, p.shape) for i, p in enumerate(preds) if p.shape != shape]
    if bad:
        raise LabelError(
            f"fuse: all teachers must predict the same HxW; teacher 0 has {shape}, "
            + ", ".join(f"teacher {i} has {s}" for i, s in bad)
        )
    w = np.ones(len(preds)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.size != len(preds):
        raise ConfigError(f"fuse: {len(preds)} predictions but {w.size} weights")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"fuse: weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return shape, w


def fuse(
    preds: Sequence[Instances],
    weights: Sequence[float] | np.ndarray | None = None,
    params: FusionParams | Mapping | None = None,
    **overrides,
) -> FusionResult:
    """Fuse T teachers' instances of one image into pseudo-labels (see the module docstring).

    Args:
        preds: T Instances, one per teacher, all HxW; scores in [0, 1] (clipped).
        weights: T non-negative teacher weights (default all 1), e.g. each one's val F1.
        params: :class:`FusionParams` or a dict of its fields; ``overrides`` replace fields.

    Returns:
        :class:`FusionResult` with the confident cells, the ignore mask and the votes.

    Raises:
        LabelError: predictions of different shapes or not Instances.
        ConfigError: no predictions, bad weights or bad parameters.
    """
    if isinstance(params, FusionParams):
        p = FusionParams(**{**params.__dict__, **overrides}) if overrides else params
    else:
        p = FusionParams.from_dict({**dict(params or {}), **overrides})
    shape, w = _check_inputs(preds, weights)
    n_teachers = len(preds)
    total = sum(q.n for q in preds)
    votes_img = np.zeros(shape, np.float32)
    ignore_img = np.zeros(shape, bool)
    if total == 0:
        return FusionResult(Instances.empty(shape), ignore_img, votes_img, _stats(0, 0, 0))

    cluster = cluster_instances(preds, p.iou_thr)
    n_clusters = int(cluster.max()) + 1
    offsets = np.concatenate([[0], np.cumsum([q.n for q in preds])])

    # Work on foreground pixels only: F pixels x T candidates (cluster id, weighted score).
    fg = np.zeros(shape, bool)
    for q in preds:
        fg |= q.labels > 0
    idx = np.flatnonzero(fg)
    cand = np.empty((n_teachers, idx.size), np.int64)
    contrib = np.empty((n_teachers, idx.size), np.float32)
    for t, q in enumerate(preds):
        lab = q.labels.ravel()[idx]
        cand[t] = np.concatenate([[-1], cluster[offsets[t] : offsets[t + 1]]])[lab]
        s = np.clip(q.scores, 0.0, 1.0) * (w[t] / w.sum())
        contrib[t] = np.concatenate([[0.0], s]).astype(np.float32)[lab]
    fg_vote = contrib.sum(axis=0)

    # vote[t] = vote of candidate cluster cand[t] at each pixel (sum over teachers agreeing).
    vote = np.zeros_like(contrib)
    for t in range(n_teachers):
        for u in range(n_teachers):
            vote[t] += np.where(cand[u] == cand[t], contrib[u], 0.0)
    vote[cand < 0] = -1.0
    # Count each (pixel, cluster) once: the first teacher carrying that cluster there.
    first = cand >= 0
    for t in range(1, n_teachers):
        for u in range(t):
            first[t] &= cand[u] != cand[t]

    conf = _cluster_confidence(cand, vote, first, n_clusters, p.tau)
    confident = conf >= p.hi
    uncertain = (conf >= p.lo) & ~confident

    # Each pixel goes to the confident cluster with the highest vote there, if >= tau.
    ok = np.append(confident, False)[cand] & (vote >= p.tau)  # cand -1 -> appended False
    masked = np.where(ok, vote, -1.0)
    best = masked.argmax(axis=0)
    cols = np.arange(idx.size)
    won = masked[best, cols] >= 0
    winner = np.where(won, cand[best, cols], -1)

    # Confident clusters -> labels 1..M (in cluster order), then clean up.
    lut = np.zeros(n_clusters + 1, np.int64)  # index -1 (no winner) -> 0
    lut[:-1][confident] = np.arange(1, int(confident.sum()) + 1)
    labels = np.zeros(shape, label_dtype(int(confident.sum())))
    labels.ravel()[idx] = lut[winner]
    labels = _largest_piece(labels)
    if p.fill_holes:
        labels = fill_holes(labels)
    # from_labels (not Instances.clean) so a vanished highest id cannot break the scores.
    inst = Instances.from_labels(remove_small(labels, p.min_size), conf[confident])

    kept = inst.labels.ravel()[idx] > 0
    member_conf = np.append(confident, False)[cand].any(axis=0)
    member_unc = np.append(uncertain, False)[cand].any(axis=0)
    lo_d, hi_d = p.disagree
    disagree = (fg_vote > lo_d) & (fg_vote < hi_d)
    ignore_img.ravel()[idx] = ~kept & (member_conf | member_unc | disagree)
    votes_img.ravel()[idx] = fg_vote
    stats = _stats(n_clusters, int(confident.sum()), int(uncertain.sum()))
    logger.debug("fused %d teachers: %s -> %d cells", n_teachers, stats, inst.n)
    return FusionResult(inst, ignore_img, votes_img, stats)


def _cluster_confidence(
    cand: np.ndarray, vote: np.ndarray, first: np.ndarray, n_clusters: int, tau: float
) -> np.ndarray:
    """K float64: mean vote over each cluster's fused mask (vote >= tau), or its peak vote
    when that mask is empty."""
    c, v = cand[first], vote[first]
    inside = v >= tau
    mass = np.bincount(c[inside], weights=v[inside], minlength=n_clusters)
    area = np.bincount(c[inside], minlength=n_clusters)
    peak = np.zeros(n_clusters)
    np.maximum.at(peak, c, v)
    return np.where(area > 0, mass / np.maximum(area, 1), peak)


def _largest_piece(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest 4-connected piece of each instance (conflicts can cut cells)."""
    if labels.max() == 0:
        return labels
    pieces = connected_label(labels, background=0, connectivity=1)
    n_pieces = int(pieces.max())
    if n_pieces == np.unique(labels).size - 1:
        return labels
    size = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    owner = np.zeros(n_pieces + 1, np.int64)
    owner[pieces.ravel()] = labels.ravel()
    order = np.lexsort((size[1:], owner[1:])) + 1  # by owner, then size ascending
    last = np.ones(order.size, bool)
    last[:-1] = owner[order[:-1]] != owner[order[1:]]
    keep = np.zeros(n_pieces + 1, bool)
    keep[order[last]] = True
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out


def _stats(n: int, confident: int, uncertain: int) -> dict[str, int]:
    return {
        "clusters": n,
        "confident": confident,
        "uncertain": uncertain,
        "background": n - confident - uncertain,
    }


def merge_for_prompts(
    preds: Sequence[Instances], weights: Sequence[float] | np.ndarray | None = None
) -> Instances:
    """One instance per cluster of ``preds`` (every cluster, even one seen by one teacher),
    used as prompts for a refiner teacher (SAM). Scores are the cluster confidences."""
    return fuse(
        preds, weights, iou_thr=0.5, tau=1e-6, lo=0.0, hi=0.0, min_size=0, fill_holes=False
    ).instances
