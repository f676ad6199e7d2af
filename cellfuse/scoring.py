"""Scoring folders of predictions against truth folders with the challenge F1
(:func:`cellfuse.metric.evaluate_image` per image): :func:`evaluate_dirs` and its
:class:`Report` (per-image CSV, summary JSON, a printable table)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cellfuse.errors import CellfuseError, LayoutError
from cellfuse.io import atomic_write, read_labels
from cellfuse.layout import find_label, image_id, list_images
from cellfuse.metric import (
    THRESHOLDS,
    _check_same_shape,
    _check_thresholds,
    evaluate_image,
    f1_scores,
)

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """Scores of a prediction folder against a truth folder.

    Attributes:
        thresholds: the IoU thresholds.
        images: one dict per truth image, sorted by id: ``image_id``, ``status``
            (``ok`` | ``missing`` | ``failed``), ``n_true``, ``n_pred``, ``scores``
            (as :func:`evaluate_image`).
        missing: ids with no prediction (scored as empty: F1 0).
        failed: id -> why the prediction could not be scored (also scored F1 0).
        extra: prediction ids with no truth (ignored).
    """

    thresholds: tuple[float, ...]
    images: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    def summary(self) -> dict[float, dict[str, float]]:
        """Per threshold: mean/median of per-image F1 (the challenge score), mean precision
        and recall, summed tp/fp/fn and the pooled precision/recall/F1 from those sums."""
        out = {}
        for thr in self.thresholds:
            s = [im["scores"][thr] for im in self.images]
            tp, fp, fn = (sum(x[k] for x in s) for k in ("tp", "fp", "fn"))
            precision, recall, f1 = f1_scores(tp, fp, fn)
            f1s = [x["f1"] for x in s]
            out[thr] = {
                "mean_f1": float(np.mean(f1s)) if s else 0.0,
                "median_f1": float(np.median(f1s)) if s else 0.0,
                "mean_precision": float(np.mean([x["precision"] for x in s])) if s else 0.0,
                "mean_recall": float(np.mean([x["recall"] for x in s])) if s else 0.0,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "pooled_precision": precision,
                "pooled_recall": recall,
                "pooled_f1": f1,
            }
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Flat per-image rows, one column per (score, threshold), e.g. ``f1@0.5``."""
        rows = []
        for im in self.images:
            row = {k: im[k] for k in ("image_id", "status", "n_true", "n_pred")}
            for thr in self.thresholds:
                for k, v in im["scores"][thr].items():
                    row[f"{k}@{thr:g}"] = v
            rows.append(row)
        return rows

    def to_csv(self, path: str | Path) -> Path:
        """Write the per-image rows as CSV (atomically); returns the path."""
        rows = self.rows()
        fields = ["image_id", "status", "n_true", "n_pred"] + [
            f"{k}@{t:g}"
            for t in self.thresholds
            for k in ("f1", "precision", "recall", "tp", "fp", "fn")
        ]
        with atomic_write(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return Path(path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: thresholds, summary, missing/failed/extra and the per-image rows."""
        return {
            "thresholds": list(self.thresholds),
            "n_images": len(self.images),
            "summary": {f"{t:g}": v for t, v in self.summary().items()},
            "missing": self.missing,
            "failed": self.failed,
            "extra": self.extra,
            "images": self.rows(),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return Path(path)

    def table(self) -> str:
        """A readable summary table, one line per threshold."""
        head = (
            f"{len(self.images)} images ({len(self.missing)} missing, "
            f"{len(self.failed)} failed, {len(self.extra)} predictions without truth)"
        )
        cols = f"{'IoU':>5} {'mean F1':>8} {'median F1':>9} {'pooled P':>8} {'pooled R':>8} {'pooled F1':>9} {'TP':>8} {'FP':>8} {'FN':>8}"
        lines = [head, cols]
        for thr, s in self.summary().items():
            lines.append(
                f"{thr:>5.2f} {s['mean_f1']:>8.4f} {s['median_f1']:>9.4f} {s['pooled_precision']:>8.4f} "
                f"{s['pooled_recall']:>8.4f} {s['pooled_f1']:>9.4f} {s['tp']:>8d} {s['fp']:>8d} {s['fn']:>8d}"
            )
        return "\n".join(lines)


def _label_id(path: Path) -> str:
    """``a_label.tiff`` / ``a.tif`` -> ``a``."""
    stem = image_id(path)
    return stem[: -len("_label")] if stem.endswith("_label") else stem


def _label_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in list_images(folder):
        key = _label_id(path)
        if key in out:
            raise LayoutError(
                f"{folder}: two label files for '{key}': {out[key].name}, {path.name}"
            )
        out[key] = path
    return out


def evaluate_dirs(
    truth_dir: str | Path,
    pred_dir: str | Path,
    thresholds: Iterable[float] = THRESHOLDS,
    *,
    progress: bool | None = None,
) -> Report:
    """Score every truth label in ``truth_dir`` against its prediction in ``pred_dir``.

    Truth files may be named ``<id>_label.tiff|.tif`` or ``<id>.tiff|.tif|.png``; the
    prediction for ``<id>`` is found by :func:`cellfuse.layout.find_label`
    (``<id>_label.tiff`` first). A missing prediction, or one that cannot be read or has
    another shape, is scored as an empty prediction (F1 0) and listed in the report.

    Args:
        truth_dir: folder of truth label images.
        pred_dir: folder of predicted label images.
        thresholds: IoU thresholds in (0, 1].
        progress: show a tqdm bar; default only when stderr is a terminal.

    Returns:
        The :class:`Report`.

    Raises:
        LayoutError: a folder is missing, or ``truth_dir`` holds no labels.
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    for d, what in ((truth_dir, "truth"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise LayoutError(f"{d}: {what} folder does not exist")
    thr = _check_thresholds(thresholds)
    truth = _label_files(truth_dir)
    if not truth:
        raise LayoutError(f"{truth_dir}: no label images found (expected <id>_label.tiff)")
    report = Report(thresholds=thr)
    report.extra = sorted({_label_id(p) for p in list_images(pred_dir)} - set(truth))
    if report.extra:
        logger.warning(
            "%d predictions have no truth and are ignored: %s", len(report.extra), report.extra[:5]
        )
    show = sys.stderr.isatty() if progress is None else progress
    with logging_redirect_tqdm():
        for key in tqdm(sorted(truth), desc="evaluate", unit="image", disable=not show):
            _evaluate_one(report, key, truth[key], pred_dir, thr)
    if report.missing:
        logger.warning(
            "%d images have no prediction (scored F1 0): %s",
            len(report.missing),
            report.missing[:5],
        )
    return report


def _evaluate_one(
    report: Report, key: str, truth_path: Path, pred_dir: Path, thresholds: tuple[float, ...]
) -> None:
    """Score one truth file; a missing or unusable prediction is scored as empty."""
    t = read_labels(truth_path)
    status = "ok"
    p_path = find_label(pred_dir, key)
    if p_path is None:
        status = "missing"
        report.missing.append(key)
        p = np.zeros_like(t)
    else:
        try:
            p = read_labels(p_path)
            _check_same_shape(t, p)
        except CellfuseError as e:
            status = "failed"
            report.failed[key] = str(e)
            logger.warning("%s: scored as empty: %s", key, e)
            p = np.zeros_like(t)
    res = evaluate_image(t, p, thresholds)
    report.images.append({"image_id": key, "status": status, **res})
