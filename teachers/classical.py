"""A classical teacher: Otsu threshold + distance-transform watershed, no network.

A legitimate baseline and a cheap, independent ensemble member (its errors differ from the
networks'). "Training" is a small grid search of the smoothing and peak-distance parameters
on the training images; the checkpoint is a JSON file of the chosen parameters and the val
scores.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from cellfuse.errors import ConfigError
from cellfuse.instances import Instances, fill_holes, remove_small
from cellfuse.io import atomic_write, read_image, read_labels
from cellfuse.layout import Sample
from cellfuse.model_api import Teacher
from cellfuse.preprocess import auto_invert, prepare_image

logger = logging.getLogger(__name__)


def foreground_image(image: np.ndarray, invert: str | bool = "auto") -> np.ndarray:
    """HxW float32 in [0, 1] where cells are bright.

    Args:
        image: HxWxC any dtype.
        invert: True/False, or "auto": invert when the background (median) is bright
            (brightfield, H&E-like stains).
    """
    rgb = prepare_image(image, invert=False, per_channel=False)
    gray = rgb.mean(axis=-1)
    if invert == "auto":
        invert = auto_invert(rgb)
    return 1.0 - gray if invert else gray


def segment(
    image: np.ndarray,
    *,
    sigma: float = 1.0,
    min_distance: int = 5,
    min_size: int = 15,
    invert: str | bool = "auto",
) -> Instances:
    """Otsu + watershed segmentation of one image.

    Args:
        image: HxWxC any dtype.
        sigma: Gaussian smoothing (px) before thresholding.
        min_distance: minimum distance (px) between two cells' seeds.
        min_size: drop cells smaller than this (px).
        invert: see :func:`foreground_image`.

    Returns:
        Instances; score = 0.5 + 0.5 * (mean contrast above the threshold, in [0, 1]).
    """
    fgi = foreground_image(image, invert)
    if sigma > 0:
        fgi = ndi.gaussian_filter(fgi, sigma)
    if float(fgi.max()) <= float(fgi.min()):
        return Instances.empty(fgi.shape)
    thr = threshold_otsu(fgi)
    mask = ndi.binary_fill_holes(fgi > thr)
    if not mask.any():
        return Instances.empty(fgi.shape)
    dist = ndi.distance_transform_edt(mask)
    dist = ndi.gaussian_filter(dist, 1.0)
    comps, _ = ndi.label(mask)
    peaks = peak_local_max(
        dist, min_distance=max(int(min_distance), 1), labels=comps, exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (tiny, flat) still get one seed at their maximum.
    seeded = np.zeros(int(comps.max()) + 1, bool)
    seeded[comps[tuple(peaks.T)]] = True
    for c in np.flatnonzero(~seeded[1:]) + 1:
        pos = ndi.maximum_position(dist, comps, c)
        markers[pos] = markers.max() + 1
    labels = watershed(-dist, markers, mask=mask)
    inst = Instances.from_labels(remove_small(fill_holes(labels), min_size))
    if inst.n == 0:
        return inst
    top = max(float(np.percentile(fgi[mask], 99)), thr + 1e-6)
    contrast = np.clip((fgi - thr) / (top - thr), 0.0, 1.0)
    flat = inst.labels.ravel()
    mean = np.bincount(flat, contrast.ravel(), inst.n + 1)[1:] / np.maximum(inst.areas(), 1)
    return Instances(inst.labels, (0.5 + 0.5 * mean).astype(np.float32))


class ClassicalTeacher(Teacher):
    """Otsu + watershed; ``fit`` grid-searches ``sigma`` x ``min_distance`` on train."""

    name = "classical"

    def __init__(
        self,
        sigma: float = 1.0,
        min_distance: int = 5,
        min_size: int = 15,
        invert: str | bool = "auto",
        grid_sigma: tuple[float, ...] = (0.5, 1.0, 2.0),
        grid_min_distance: tuple[int, ...] = (3, 5, 7, 10),
        fit_images: int = 60,
    ) -> None:
        super().__init__()
        self.params: dict[str, Any] = dict(
            sigma=float(sigma),
            min_distance=int(min_distance),
            min_size=int(min_size),
            invert=invert,
        )
        self.grid = (tuple(grid_sigma), tuple(grid_min_distance))
        self.fit_images = int(fit_images)

    def predict(self, image: np.ndarray) -> Instances:
        return segment(image, **self.params)

    def _score(self, samples: list[Sample], params: dict[str, Any]) -> dict[str, float]:
        from cellfuse.metric import evaluate_image

        f1 = {0.5: [], 0.75: []}
        for s in samples:
            res = evaluate_image(
                read_labels(s.label), segment(read_image(s.image), **params), (0.5, 0.75)
            )
            for t in f1:
                f1[t].append(res["scores"][t]["f1"])
        return {"f1_50": float(np.mean(f1[0.5])), "f1_75": float(np.mean(f1[0.75]))}

    def fit(
        self, train: list[Sample], val: list[Sample], work_dir: Path, resume: bool = False
    ) -> Path:
        """Pick (sigma, min_distance) by mean F1@0.5 on up to ``fit_images`` training images,
        score on ``val`` and write ``work_dir/classical.json``."""
        work_dir = Path(work_dir)
        ckpt = work_dir / "classical.json"
        if resume and ckpt.is_file():
            self.load(ckpt)
            return ckpt
        if not train:
            raise ConfigError("classical teacher: no training images")
        subset = train[:: max(1, len(train) // self.fit_images)][: self.fit_images]
        best, best_f1 = dict(self.params), -1.0
        for sigma, md in itertools.product(*self.grid):
            params = {**self.params, "sigma": float(sigma), "min_distance": int(md)}
            f1 = self._score(subset, params)["f1_50"]
            logger.info("classical sigma=%s min_distance=%s: train F1@0.5 %.4f", sigma, md, f1)
            if f1 > best_f1:
                best, best_f1 = params, f1
        self.params = best
        self.val_metrics = self._score(val, best) if val else {}
        logger.info("classical: chose %s, val %s", best, self.val_metrics)
        with atomic_write(ckpt, "w") as fh:
            json.dump({"params": best, "val_metrics": self.val_metrics}, fh, indent=2)
        return ckpt

    def load(self, checkpoint: Path) -> None:
        data = json.loads(Path(checkpoint).read_text())
        self.params.update(data["params"])
        self.val_metrics = data.get("val_metrics", {})
