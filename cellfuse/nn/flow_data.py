"""What a flow network trains on: training images at the network scale with their flow
targets (cached per image as ``.npz``), the per-image sampling weights and the augmented
random crops of a batch.

:class:`FlowTrainingData` is the data half of :class:`cellfuse.nn.flow_training.FlowTrainer`
(the loop, schedule, validation and checkpoints are the other half); the student overrides
these hooks to add pseudo-labeled images, their weights and a sampling schedule. It reads
the trainer's ``nominal_diameter``, ``min_scale``, ``max_scale``, ``crop``, ``batch_size``,
``scale_jitter``, ``color`` and ``oversample``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cellfuse.files import atomic_write
from cellfuse.flows import labels_to_flows
from cellfuse.io import read_image, read_labels
from cellfuse.layout import Sample
from cellfuse.modality import modality
from cellfuse.nn.augment import resize_image_torch, sample_crop
from cellfuse.preprocess import (
    median_diameter,
    prepare_image,
    resize_labels,
    scale_for_diameter,
    scaled_shape,
)

CACHE_VERSION = 1


def load_npz_cached(path: Path | None, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A prepared training item from its ``.npz`` cache, or ``make()`` written there."""
    if path is not None and path.is_file():
        with np.load(path) as z:
            item = {k: z[k] for k in ("image", "target")}
            item["modality"] = str(z["modality"])
            item["scale"] = float(z["scale"])
        return item
    item = make()
    if path is not None:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, **item)
    return item


class FlowTrainingData:
    """Training-data hooks of a flow trainer (see module doc)."""

    nominal_diameter: float
    min_scale: float
    max_scale: float
    crop: int
    batch_size: int
    scale_jitter: tuple[float, float]
    color: dict[str, float]
    oversample: dict[str, float]

    def _cache_key(self, s: Sample) -> str:
        key = f"{CACHE_VERSION}:{s.image}:{s.label}:{self.nominal_diameter}:{self.min_scale}:{self.max_scale}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def prepare_sample(self, s: Sample) -> dict[str, Any]:
        """Image, targets and sampling weight of one training sample at the network scale.

        Returns:
            dict(image 3xHxW float16, target 3xHxW float16 (cell, dy, dx), modality, scale).
        """
        raw = read_image(s.image)
        return self.prepare_targets(raw, read_labels(s.label, shape=raw.shape[:2]))

    def prepare_targets(
        self, raw: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None
    ) -> dict[str, Any]:
        """An image and its labels at the network scale, with flow targets.

        Args:
            raw: HxWxC image as read.
            labels: HxW instance labels.
            weight: optional HxW per-pixel loss weight, a 4th target channel.

        Returns:
            dict(image 3xHxW float16, target (3 or 4)xHxW float16, modality, scale).
        """
        d = median_diameter(labels)
        scale = (
            scale_for_diameter(self.nominal_diameter, d, self.min_scale, self.max_scale)
            if d > 0
            else 1.0
        )
        shape = scaled_shape(labels.shape, scale)
        x = resize_image_torch(prepare_image(raw), shape)
        lab = resize_labels(labels, shape)
        channels = [(lab > 0)[None].astype(np.float32), labels_to_flows(lab)]
        if weight is not None:
            channels.append(resize_labels(weight, shape)[None])
        target = np.concatenate(channels)
        return dict(
            image=x.transpose(2, 0, 1).astype(np.float16),
            target=target.astype(np.float16),
            modality=modality(raw),
            scale=scale,
        )

    def prepare_data(self, samples: list[Sample], cache_dir: Path | None) -> list[dict[str, Any]]:
        """:meth:`prepare_sample` for every sample, cached as ``.npz`` under ``cache_dir``."""
        out = []
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        for s in tqdm(samples, desc="flow targets", unit="img", leave=False):
            path = cache_dir / f"{s.id}-{self._cache_key(s)}.npz" if cache_dir else None
            out.append(load_npz_cached(path, lambda s=s: self.prepare_sample(s)))
        return out

    def sampling_weights(self, data: list[dict[str, Any]]) -> np.ndarray:
        """Per-image probability: modality oversampling x sqrt(area in crops), clipped to [1, 3]."""
        w = []
        for d in data:
            area = d["image"].shape[1] * d["image"].shape[2] / self.crop**2
            w.append(
                self.oversample.get(d["modality"], 1.0) * float(np.clip(math.sqrt(area), 1, 3))
            )
        w = np.asarray(w, np.float64)
        return w / w.sum()

    def sampling_schedule(self, data: list[dict[str, Any]]) -> list[tuple[float, np.ndarray]]:
        """Phases of training as ``(start progress in [0, 1), per-image probabilities)``,
        in order; the teacher samples one way throughout."""
        return [(0.0, self.sampling_weights(data))]

    def make_batch(
        self, data: list[dict[str, Any]], weights: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bx3xSxS images and Bx3xSxS targets (cell, dy, dx) of augmented random crops."""
        imgs, tgts = [], []
        for i in rng.choice(len(data), size=self.batch_size, p=weights):
            img, tgt = sample_crop(
                data[i]["image"].astype(np.float32),
                data[i]["target"].astype(np.float32),
                rng,
                self.crop,
                self.scale_jitter,
                self.color,
            )
            imgs.append(img)
            tgts.append(tgt)
        return torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(tgts))


__all__ = ["CACHE_VERSION", "FlowTrainingData", "load_npz_cached"]
