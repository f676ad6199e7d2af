"""SAM's validation with true prompts, and the calibration of its mask threshold and
inference zoom on training images (stored in the checkpoint)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.instances import Instances
from cellfuse.nn.checkpoints import load_checkpoint, save_checkpoint
from teachers.sam import SAMTeacher
from teachers.sam_prompts import (
    MASK_MERGE_PROB,
    MASK_NOISE,
    perturb_labels,
)

log = logging.getLogger(__name__)


def prompt_noise(train_cfg: dict | None) -> dict[str, float]:
    """``mask_noise`` and ``mask_merge_prob`` of a teacher's ``train`` config (with the
    defaults of :func:`train_sam`): how its validation perturbs the true cells."""
    cfg = dict(train_cfg or {})
    return {
        "mask_noise": cfg.get("mask_noise", MASK_NOISE),
        "mask_merge_prob": cfg.get("mask_merge_prob", MASK_MERGE_PROB),
    }


def truth_prompts(
    teacher: SAMTeacher,
    truth: np.ndarray,
    rng: np.random.Generator,
    mask_noise: float = MASK_NOISE,
    mask_merge_prob: float = MASK_MERGE_PROB,
) -> np.ndarray:
    """The true cells as prompts for ``teacher``: as they are, or for a teacher with
    ``mask_prompts`` an imperfect copy (:func:`perturb_labels`), since the true masks would
    answer themselves."""
    if not teacher.mask_prompts:
        return truth
    return perturb_labels(truth, rng, mask_noise, mask_merge_prob)


def evaluate_sam(
    teacher: SAMTeacher,
    val: list,
    max_images: int | None = None,
    mask_noise: float = MASK_NOISE,
    mask_merge_prob: float = MASK_MERGE_PROB,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean per-image challenge F1@0.5/0.75 with ground-truth cells as prompts.

    A teacher with ``mask_prompts`` gets imperfect copies of the true cells
    (:func:`perturb_labels`, the same every call for a ``seed``), not the true masks.
    """
    from cellfuse.io import read_image, read_labels
    from cellfuse.metric import evaluate_image

    if max_images is not None and len(val) > max_images:
        val = [val[i] for i in np.linspace(0, len(val) - 1, max_images).round().astype(int)]
    f50, f75 = [], []
    t0 = time.time()
    px = 0
    rng = np.random.default_rng(seed)
    for s in val:
        img = read_image(s.image)
        gt = read_labels(s.label, shape=img.shape[:2])
        cells = truth_prompts(teacher, gt, rng, mask_noise, mask_merge_prob)
        pred = teacher.predict_with_prompts(img, Instances.from_labels(cells))
        r = evaluate_image(gt, pred.labels, thresholds=(0.5, 0.75))["scores"]
        f50.append(r[0.5]["f1"])
        f75.append(r[0.75]["f1"])
        px += gt.size
    dt = time.time() - t0
    return {
        "f1_50": float(np.mean(f50)) if f50 else 0.0,
        "f1_75": float(np.mean(f75)) if f75 else 0.0,
        "n_images": len(f50),
        "seconds": round(dt, 1),
        "s_per_mpx": round(dt / max(px, 1) * 1e6, 3),
    }


MASK_THRESHOLDS = (0.5, 0.0, -0.5, -1.0, -1.5, -2.0)
ZOOMS = (1.0, 1.25, 1.5)  # inference cell diameter / training nominal_diameter


def _pick(
    teacher: SAMTeacher,
    samples: list,
    name: str,
    grid: tuple[float, ...],
    apply,
    prefer: float,
    max_images: int | None,
    noise: dict[str, float],
) -> tuple[float, dict[float, float]]:
    """The grid value (set with ``apply``) with the best mean F1@0.75 on ``samples``; ties
    (at 4 decimals) go to ``prefer``. The teacher is left at the best."""
    scores: dict[float, float] = {}
    for v in grid:
        apply(float(v))
        scores[float(v)] = evaluate_sam(teacher, samples, max_images, **noise)["f1_75"]
    best = max(scores, key=lambda v: (round(scores[v], 4), v == prefer))
    apply(best)
    log.info("%s: F1@0.75 %s -> %g", name, {k: round(v, 4) for k, v in scores.items()}, best)
    return best, scores


def calibrate_mask_threshold(
    teacher: SAMTeacher,
    samples: list,
    grid: tuple[float, ...] = MASK_THRESHOLDS,
    max_images: int | None = 40,
    **noise: float,
) -> tuple[float, dict[float, float]]:
    """Pick the mask-logit threshold that maximises F1@0.75 on (training) images.

    A small decoder trained with focal loss puts its 0-logit boundary inside the cell and the
    low-res logits are upsampled, so its masks come out too small: the threshold is a
    property of the trained weights, chosen on the training images with ground-truth
    cells as prompts (never on val), and stored in the checkpoint.

    Returns:
        ``(best threshold, {threshold: mean F1@0.75})``; the teacher is left at the best.
    """

    def apply(v: float) -> None:
        teacher.sam.mask_threshold = v

    old = float(teacher.sam.mask_threshold)
    return _pick(teacher, samples, "mask threshold", grid, apply, old, max_images, noise)


def calibrate_zoom(
    teacher: SAMTeacher,
    samples: list,
    grid: tuple[float, ...] = ZOOMS,
    max_images: int | None = 40,
    **noise: float,
) -> tuple[float, dict[float, float]]:
    """Pick the inference cell diameter (``nominal_diameter`` x ``grid``) that maximises
    F1@0.75 on (training) images, as :func:`calibrate_mask_threshold` does the threshold.

    SAM's masks come at 2 px per mask pixel (``vit_tiny``), so zooming in at inference
    beyond the training zoom can give finer masks; how far the weights carry is measured,
    never assumed (nor chosen on val). Ties go to the training zoom (cheaper).

    Returns:
        ``(best diameter, {diameter: mean F1@0.75})``; the teacher is left at the best.
    """

    def apply(v: float) -> None:
        teacher.infer_diameter = v

    diameters = tuple(round(teacher.nominal_diameter * z, 2) for z in grid)
    nominal = teacher.nominal_diameter
    return _pick(
        teacher, samples, "inference diameter", diameters, apply, nominal, max_images, noise
    )


def store_calibration(path: Path, name: str, value: float, scores: dict[float, float]) -> None:
    """Write a calibrated setting (``mask_threshold``, ``infer_diameter``) and the F1@0.75 of
    each candidate into a cellfuse SAM checkpoint (atomically)."""
    ck = load_checkpoint(path, what="SAM checkpoint")
    ck[name] = float(value)
    ck[f"{name}_f1_75"] = {str(k): v for k, v in scores.items()}
    save_checkpoint(ck, path)


def calibrate_and_store(
    teacher: SAMTeacher, samples: list, path: Path, max_images: int | None = 40, **noise: float
) -> dict[str, float]:
    """Calibrate the mask threshold, then the inference zoom, on ``samples`` (the training
    images) and store both in the checkpoint ``path``, which the teacher then reloads."""
    thr, scores = calibrate_mask_threshold(teacher, samples, max_images=max_images, **noise)
    store_calibration(path, "mask_threshold", thr, scores)
    diam, scores = calibrate_zoom(teacher, samples, max_images=max_images, **noise)
    store_calibration(path, "infer_diameter", diam, scores)
    teacher.load(path)
    return {"mask_threshold": thr, "infer_diameter": diam}
