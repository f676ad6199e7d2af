"""Which unlabeled images to label next: the ensemble's disagreement as a labelling plan.

    cellfuse suggest (--pseudo DIR | --work DIR) [--n K] [--out DIR] [--candidates FILE]

Reads only what pseudo-labelling left (``manifest.jsonl``, ``<id>_label.tiff``,
``<id>_conf.json``, ``<id>_ignore.tiff``; the teachers' cache ``cache/<teacher>/`` for the
contact sheet) and the source images (modality, appearance). No model runs.

**Score** (the ensemble's uncertainty about an image; three shares in [0, 1], the score is
their mean, so 0 = the teachers agree on every cell, 1 = they agree on none):

- ``ignored``: the share of the image's cell area the vote left undecided,
  ``I / (I + C)``, with ``I`` the ignore-mask pixels and ``C`` the confident cells' pixels
  (size-free: a small image with 3 doubtful cells of 6 counts like a big one with 30 of 60);
- ``unconfirmed``: the share of the cell candidates the vote did not confirm,
  ``(uncertain + background clusters) / clusters`` (cells only some teachers saw);
- ``doubt``: ``1 - `` the mean confidence (vote) of the confident cells (1 when the vote
  confirmed none).

An image where no teacher found a cell scores 0 and says so (nothing to disagree on; a
committee cannot see a failure all its members share).

**Diversity** (diverse mini-batch active learning, Zhdanov 2019): the ``beta * K`` most
uncertain images are grouped into K kinds by k-means weighted by the score, on an appearance
descriptor standardised over the pool (modality one-hot, weighted so that a kind does not mix
modalities; log median cell area; log cells per megapixel; log image area; grey mean and
contrast); each kind gives its image nearest its centre. The K picks are uncertain and of K
different kinds; ``beta = 1`` is plain top-K by score.

Outputs (``--out``): ``suggestions.csv`` (every image ranked, the K picks first, with the
score, its terms and the reasons), ``suggestions.png`` (contact sheet of the K picks: the
image, each teacher's outlines, the confident pseudo-labels with the undecided pixels in
magenta) and ``suggestions.json`` (parameters, timing, picks), written by
:mod:`ensemble.suggest_report` (which also holds the command line).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellfuse.errors import ConfigError, LayoutError

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "rank",
    "id",
    "score",
    "picked",
    "kind",
    "modality",
    "ignored",
    "unconfirmed",
    "doubt",
    "cells",
    "clusters",
    "reasons",
)
MODALITY_WEIGHT = 3.0  # one-hot scale: two modalities are >= 4.2 standard deviations apart


@dataclass
class ImageUncertainty:
    """What the ensemble's outputs say about one unlabeled image."""

    id: str
    image: str
    modality: str
    ignored: float
    unconfirmed: float
    doubt: float
    cells: int
    clusters: int
    descriptor: list[float] = field(repr=False)
    score: float = 0.0
    picked: bool = False
    kind: int | None = None
    reasons: str = ""


@dataclass
class Suggestions:
    """Every candidate ranked (the picks first) and the picks alone."""

    ranked: list[ImageUncertainty]
    picks: list[ImageUncertainty]
    seconds: float
    params: dict


def uncertainty_score(ignored: float, unconfirmed: float, doubt: float) -> float:
    """The score: mean of the three shares (see the module docstring)."""
    return (ignored + unconfirmed + doubt) / 3.0


# ----------------------------------------------------------------------------- reading


def pool_entries(pseudo_dir: Path, ids: Iterable[str] | None = None) -> list[dict]:
    """Latest ``ok`` manifest entry of every pseudo-labeled image whose outputs exist (by id),
    restricted to ``ids`` when given."""
    from ensemble.manifest import MANIFEST, Manifest, outputs_exist

    if not pseudo_dir.is_dir():
        raise LayoutError(f"{pseudo_dir}: no such folder")
    if not (pseudo_dir / MANIFEST).is_file():
        raise LayoutError(
            f"{pseudo_dir}: no {MANIFEST} (not a pseudo-label folder; run the pseudo stage first)"
        )
    latest = Manifest(pseudo_dir / MANIFEST).latest()
    want = None if ids is None else set(ids)
    out = [
        e
        for i, e in sorted(latest.items())
        if e.get("status") == "ok" and outputs_exist(pseudo_dir, i) and (want is None or i in want)
    ]
    if want is not None and len(out) < len(want):
        log.warning(
            "%d of %d candidate ids have no pseudo-labels in %s",
            len(want) - len(out),
            len(want),
            pseudo_dir,
        )
    return out


def measure(pseudo_dir: Path, entry: Mapping) -> ImageUncertainty:
    """Score terms and appearance descriptor of one image from its fused outputs."""
    import tifffile

    from cellfuse.io import read_image, read_labels
    from cellfuse.modality import modality

    iid = entry["id"]
    conf = json.loads((pseudo_dir / f"{iid}_conf.json").read_text())
    labels = read_labels(pseudo_dir / f"{iid}_label.tiff")
    ignore = tifffile.imread(pseudo_dir / f"{iid}_ignore.tiff") > 0
    stats = conf.get("stats") or entry.get("stats") or {}
    scores = np.asarray(conf.get("scores") or [], np.float64)
    clusters = int(stats.get("clusters", len(scores)))
    confident = int(stats.get("confident", len(scores)))
    cell_px = int(np.count_nonzero(labels))
    ignore_px = int(np.count_nonzero(ignore & (labels == 0)))
    ignored = ignore_px / (ignore_px + cell_px) if ignore_px + cell_px else 0.0
    unconfirmed = (clusters - confident) / clusters if clusters else 0.0
    # no confident cell at all: the vote is sure of nothing (and there is no mean to take)
    doubt = float(1.0 - scores.mean()) if scores.size else (1.0 if clusters else 0.0)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    h, w = labels.shape
    mod, grey_mean, grey_std = "unknown", math.nan, math.nan
    path = Path(entry.get("image", ""))
    if path.is_file():
        img = read_image(path, allow_constant=True)
        mod = modality(img)
        grey = img[::2, ::2, :3].astype(np.float32).mean(axis=-1)  # a subsample is enough
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        grey_mean, grey_std = float(grey.mean()), float(grey.std())
    descriptor = [
        math.log(float(np.median(areas))) if areas.size else math.nan,
        math.log1p(clusters / (h * w / 1e6)),
        math.log(h * w),
        grey_mean,
        grey_std,
    ]
    return ImageUncertainty(
        id=iid,
        image=str(path),
        modality=mod,
        ignored=round(ignored, 4),
        unconfirmed=round(unconfirmed, 4),
        doubt=round(doubt, 4),
        cells=len(scores),
        clusters=clusters,
        descriptor=descriptor,
        score=round(uncertainty_score(ignored, unconfirmed, doubt), 4),
    )


# ----------------------------------------------------------------------------- choosing


def appearance_matrix(items: Sequence[ImageUncertainty]) -> np.ndarray:
    """N x D features: the descriptors standardised over ``items`` (missing values -> the
    pool's median), then the modality one-hot times :data:`MODALITY_WEIGHT`."""
    from cellfuse.modality import MODALITIES

    x = np.array([it.descriptor for it in items], np.float64).reshape(len(items), -1)
    for j in range(x.shape[1]):
        col = x[:, j]
        ok = np.isfinite(col)
        col[~ok] = np.median(col[ok]) if ok.any() else 0.0
        sd = col.std()
        x[:, j] = (col - col.mean()) / sd if sd > 0 else 0.0
    kinds = [*MODALITIES, "unknown"]
    onehot = np.array([[it.modality == m for m in kinds] for it in items], np.float64)
    return np.concatenate([x, MODALITY_WEIGHT * onehot], axis=1)


def weighted_kmeans(
    x: np.ndarray, weights: np.ndarray, k: int, seed: int = 0, iters: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """K-means with sample weights (k-means++ start, Lloyd steps); deterministic for a seed.

    Returns:
        ``(assignment N ints in 0..k-1, centres k x D)``.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means: need 1 <= k <= {n} points, got k={k}")
    w = np.maximum(np.asarray(weights, np.float64), 1e-9)
    rng = np.random.default_rng(seed)
    centres = [x[int(np.argmax(w))]]  # the heaviest point first
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        p = w * d2
        if p.sum() <= 0:  # duplicates: every point already sits on a centre
            free = [i for i in range(n) if not any(np.array_equal(x[i], c) for c in centres)]
            centres.append(x[free[0] if free else int(rng.integers(n))])
            continue
        centres.append(x[int(rng.choice(n, p=p / p.sum()))])
    c = np.array(centres)
    assign = np.full(n, -1)
    for _ in range(iters):
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        new = d2.argmin(axis=1)
        for j in range(k):  # an empty cluster takes the point farthest from its centre
            if not (new == j).any():
                far = int(np.argmax(d2[np.arange(n), new] * w))
                new[far] = j
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            m = assign == j
            c[j] = (x[m] * w[m, None]).sum(axis=0) / w[m].sum()
    return assign, c


def choose(
    items: Sequence[ImageUncertainty], k: int, beta: float = 5.0, seed: int = 0
) -> list[ImageUncertainty]:
    """The K picks of ``items`` (scores already set): the ``ceil(beta * k)`` highest scores,
    k-means into K kinds weighted by score, the image nearest each centre; sorted by score.
    Marks ``picked`` and ``kind`` on the items."""
    if k < 1:
        raise ConfigError(f"suggest: --n must be >= 1, got {k}")
    if beta < 1:
        raise ConfigError(f"suggest: beta must be >= 1, got {beta}")
    by_score = sorted(items, key=lambda it: (-it.score, it.id))
    if len(by_score) <= k:
        picks = list(by_score)
        for j, it in enumerate(picks):
            it.kind = j
    else:
        top = by_score[: max(k, math.ceil(beta * k))]
        x = appearance_matrix(top)
        w = np.array([it.score for it in top])
        assign, centres = weighted_kmeans(x, w, k, seed)
        picks = []
        for j in range(k):
            members = np.flatnonzero(assign == j)
            if members.size == 0:
                continue
            d2 = ((x[members] - centres[j]) ** 2).sum(axis=1)
            best = members[int(np.argmin(d2))]
            for m in members:
                top[m].kind = j
            picks.append(top[best])
        # k-means may leave a kind empty: fill up with the most uncertain images left
        taken = {it.id for it in picks}
        picks += [it for it in top if it.id not in taken][: k - len(picks)]
    for it in picks:
        it.picked = True
    return sorted(picks, key=lambda it: (-it.score, it.id))


def reasons(it: ImageUncertainty, kind_sizes: Mapping[int, int] | None = None) -> str:
    """Human-readable why, strongest term first."""
    if it.clusters == 0:
        return "no teacher found a cell (nothing to disagree on; check for a shared failure)"
    terms = [
        (it.ignored, f"{it.ignored:.0%} of the cell area undecided"),
        (
            it.unconfirmed,
            f"{it.clusters - it.cells} of {it.clusters} candidate cells unconfirmed",
        ),
        (
            it.doubt,
            f"confident cells at mean vote {1 - it.doubt:.2f}" if it.cells else "no confident cell",
        ),
    ]
    text = [t for _, t in sorted(terms, key=lambda x: -x[0])]
    text.append(f"{it.modality}, {it.cells} confident cells")
    if it.picked and kind_sizes is not None and it.kind is not None:
        n = kind_sizes.get(it.kind, 1)
        text.append(
            f"one of {n} similar uncertain images" if n > 1 else "unlike the other uncertain images"
        )
    return "; ".join(text)


def suggest(
    pseudo_dir: str | Path,
    k: int = 8,
    *,
    ids: Iterable[str] | None = None,
    beta: float = 5.0,
    seed: int = 0,
    threads: int = 2,
) -> Suggestions:
    """Rank the pseudo-labeled images of ``pseudo_dir`` by the ensemble's uncertainty and pick
    ``k`` diverse ones to label (see the module docstring).

    Args:
        pseudo_dir: a folder written by :func:`ensemble.pseudolabel.run_pseudo_label`.
        k: images to pick.
        ids: only these image ids are candidates (default: every pseudo-labeled image).
        beta: the picks come from the ``beta * k`` most uncertain images (1 = top-k).
        seed: k-means seed.
        threads: images read at once.
    """
    t0 = time.perf_counter()
    pseudo_dir = Path(pseudo_dir)
    entries = pool_entries(pseudo_dir, ids)
    if not entries:
        raise LayoutError(f"{pseudo_dir}: no pseudo-labeled image to rank")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, min(threads, len(entries)))) as pool:  # I/O + numpy: no GIL
        items = list(pool.map(lambda e: measure(pseudo_dir, e), entries))
    picks = choose(items, k, beta, seed)
    sizes: dict[int, int] = {}
    for it in items:
        if it.kind is not None:
            sizes[it.kind] = sizes.get(it.kind, 0) + 1
    for it in items:
        it.reasons = reasons(it, sizes)
    chosen = {it.id for it in picks}
    rest = sorted((it for it in items if it.id not in chosen), key=lambda it: (-it.score, it.id))
    seconds = time.perf_counter() - t0
    log.info("suggest: ranked %d images in %.1f s", len(items), seconds)
    params = {"pseudo": str(pseudo_dir), "k": k, "beta": beta, "seed": seed, "pool": len(items)}
    return Suggestions([*picks, *rest], picks, round(seconds, 2), params)
