"""Quality of pseudo-labels against held-out truth (e.g. the val split treated as unlabeled).

Reads a ``tools/pseudo_label.py`` output folder (fused ``<id>_label.tiff``, ``<id>_ignore.tiff``,
``<id>_conf.json`` and the teachers' cached outputs under ``cache/<teacher>/``) and a truth
folder, and reports per source (each teacher, the fused labels):

- mean per-image F1 at IoU 0.5 and 0.75 (the challenge metric, border cells dropped),
- pooled precision / recall at 0.5 (for the fused labels: the precision of the confident
  subset and the share of true cells it recovers),

plus, for the fused labels: the fraction of clusters kept as confident cells, the fraction
of pixels ignored, and the pixel accuracy (foreground vs background) outside the ignore mask —
what the student actually learns from.

Two more views of the fusion:

- ``fused_seen``: the confident cells scored against the true cells the student sees, i.e.
  without the true cells that lie mostly (>= 50 % of their pixels) in the ignore mask. The
  pseudo-labels only teach outside that mask, so this is the quality of what they teach.
- ``fused_predict`` (when ``fusion_predict`` is given): the teachers' cached outputs fused
  again with the predictor's parameters (every cell with enough vote, nothing ignored), with
  the weights recorded in the manifest — the ensemble as a segmenter, comparable with each
  teacher's row.

And the ceiling of any vote: ``found_by_any``, the share of true cells that at least one
teacher found (IoU >= 0.5, all true cells counted). A fusion only chooses among the
teachers' cells, so its recall cannot pass this; when it is close to the best teacher's
recall, the teachers miss the same cells and no weighting will gain much.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cellfuse.errors import CellfuseError
from cellfuse.instances import Instances
from cellfuse.io import read_labels
from cellfuse.layout import find_label

if TYPE_CHECKING:
    from cellfuse.fusion import FusionResult

logger = logging.getLogger(__name__)

THRESHOLDS = (0.5, 0.75)


def _truth_files(truth_dir: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(truth_dir.iterdir()):
        if p.suffix.lower() in (".tif", ".tiff", ".png") and not p.name.startswith("."):
            stem = p.stem
            out[stem[: -len("_label")] if stem.endswith("_label") else stem] = p
    return out


def summarise(per_image: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in THRESHOLDS:
        out[f"f1@{t:g}"] = (
            round(float(np.mean([r[t]["f1"] for r in per_image])), 4) if per_image else 0.0
        )
    tp = sum(r[0.5]["tp"] for r in per_image)
    fp = sum(r[0.5]["fp"] for r in per_image)
    fn = sum(r[0.5]["fn"] for r in per_image)
    out["precision@0.5"] = round(tp / (tp + fp), 4) if tp + fp else 0.0
    out["recall@0.5"] = round(tp / (tp + fn), 4) if tp + fn else 0.0
    out["n_pred"] = tp + fp
    return out


def seen_truth(truth: np.ndarray, ignore: np.ndarray, frac: float = 0.5) -> np.ndarray:
    """The truth without the cells that have at least ``frac`` of their pixels ignored."""
    n = int(truth.max())
    area = np.bincount(truth.ravel(), minlength=n + 1)
    hidden = np.bincount(truth.ravel(), weights=ignore.ravel(), minlength=n + 1)
    drop = hidden >= frac * np.maximum(area, 1)
    drop[0] = True
    return np.where(drop[truth], 0, truth)


def keeps_teacher(name: str, teachers: Sequence[str] | None) -> bool:
    """Whether a cached output named ``name`` (e.g. ``flowunet@hflip``) belongs to one of
    ``teachers`` (all when None): a teacher keeps its test-time views."""
    return not teachers or name in teachers or name.split("@")[0] in teachers


def refuse_from_cache(
    pseudo_dir: Path, entry: dict, params: Any, teachers: Sequence[str] | None = None
) -> FusionResult | None:
    """Fuse one image's cached teacher outputs again (weights from its manifest ``entry``),
    only those of ``teachers`` when given (a name keeps its test-time views too: ``flowunet``
    keeps ``flowunet@hflip``); None when a teacher's cache is missing or unreadable, or none
    is left."""
    from cellfuse.fusion import fuse
    from ensemble.worker import cache_files

    preds, weights = [], []
    for name, t in (entry.get("teachers") or {}).items():
        if not keeps_teacher(name, teachers):
            continue
        lab, meta = cache_files(pseudo_dir, name, entry["id"])
        try:
            scores = np.asarray(json.loads(meta.read_text())["scores"], np.float32)
            preds.append(Instances(read_labels(lab), scores))
        except (OSError, ValueError, KeyError, CellfuseError) as exc:
            logger.warning("%s: cannot re-fuse, cache of %s: %s", entry["id"], name, exc)
            return None
        weights.append(float(t["weight"]))
    return fuse(preds, weights, params) if preds else None


def pseudo_quality(
    pseudo_dir: str | Path, truth_dir: str | Path, fusion_predict: Any = None
) -> dict[str, Any]:
    """Score the fused pseudo-labels and each cached teacher output against truth.

    Args:
        pseudo_dir: output folder of ``tools/pseudo_label.py``.
        truth_dir: folder of truth labels ``<id>_label.tiff``.
        fusion_predict: :class:`~cellfuse.fusion.FusionParams` of the ensemble as a
            predictor; when given, the cached teacher outputs are fused again with it
            (``fused_predict``).

    Returns:
        ``{"n_images", "n_true", "teachers": {name: scores}, "fused": scores + "kept_fraction",
        "ignored_px_fraction", "pixel_accuracy_outside_ignore", "fused_seen": scores +
        "true_cells_seen", "found_by_any", ["fused_predict": scores,] "missing"}``.
    """
    from cellfuse.metric import evaluate_image, iou_matrix
    from ensemble.manifest import Manifest

    pseudo_dir, truth_dir = Path(pseudo_dir), Path(truth_dir)
    truth = _truth_files(truth_dir)
    cache = pseudo_dir / "cache"
    teachers = sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else []
    sources = {"fused": pseudo_dir, **{t: cache / t for t in teachers}}
    scores: dict[str, list] = {s: [] for s in sources}
    seen: list = []
    predicted: list = []
    n_seen = 0
    entries = Manifest(pseudo_dir / "manifest.jsonl").latest() if fusion_predict else {}
    missing: dict[str, list[str]] = {s: [] for s in sources}
    n_true = found_any = 0
    clusters = confident = 0
    ignored = total = correct = counted = 0
    for iid, tpath in truth.items():
        t = read_labels(tpath)
        n_true += int(np.unique(t[t > 0]).size)
        found = np.zeros(int(t.max()) + 1, bool)  # true ids some teacher found
        for name, folder in sources.items():
            p_path = find_label(folder, iid)
            try:
                p = read_labels(p_path, shape=t.shape) if p_path else None
            except CellfuseError as exc:
                logger.warning("%s/%s: %s", name, iid, exc)
                p = None
            if p is None:
                missing[name].append(iid)
                p = np.zeros_like(t)
            scores[name].append(evaluate_image(t, p, THRESHOLDS)["scores"])
            if name != "fused":
                if p.any() and t.any():
                    found[1:] |= iou_matrix(t, p).max(axis=1) >= 0.5
                continue
            if p_path is None:
                continue
            conf = pseudo_dir / f"{iid}_conf.json"
            if conf.is_file():
                stats = json.loads(conf.read_text()).get("stats", {})
                clusters += int(stats.get("clusters", 0))
                confident += int(stats.get("confident", 0))
            ign_path = pseudo_dir / f"{iid}_ignore.tiff"
            ign = (
                read_labels(ign_path, shape=t.shape) > 0
                if ign_path.is_file()
                else np.zeros(t.shape, bool)
            )
            t_seen = seen_truth(t, ign)
            n_seen += int(np.unique(t_seen[t_seen > 0]).size)
            seen.append(evaluate_image(t_seen, p, THRESHOLDS)["scores"])
            if fusion_predict is not None:
                entry = entries.get(iid)
                res = refuse_from_cache(pseudo_dir, entry, fusion_predict) if entry else None
                full = res.instances.labels if res is not None else None
                if full is None:
                    missing.setdefault("fused_predict", []).append(iid)
                    full = np.zeros_like(t)
                predicted.append(evaluate_image(t, full, THRESHOLDS)["scores"])
            ignored += int(ign.sum())
            total += ign.size
            keep = ~ign
            correct += int(((p > 0) == (t > 0))[keep].sum())
            counted += int(keep.sum())
        found_any += int(found[np.unique(t[t > 0])].sum())
    out: dict[str, Any] = {"n_images": len(truth), "n_true": n_true, "teachers": {}}
    for name in teachers:
        out["teachers"][name] = summarise(scores[name])
    fused = summarise(scores["fused"])
    fused["kept_fraction"] = round(confident / clusters, 4) if clusters else 0.0
    fused["ignored_px_fraction"] = round(ignored / total, 4) if total else 0.0
    fused["pixel_accuracy_outside_ignore"] = round(correct / counted, 4) if counted else 0.0
    out["fused"] = fused
    out["fused_seen"] = {**summarise(seen), "true_cells_seen": n_seen}
    out["found_by_any"] = round(found_any / n_true, 4) if n_true else 0.0
    if fusion_predict is not None:
        out["fused_predict"] = summarise(predicted)
    out["missing"] = {k: len(v) for k, v in missing.items() if v}
    return out
