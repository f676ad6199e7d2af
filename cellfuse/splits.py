"""Labeled train/val splits of a data config (the val part selects checkpoints only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cellfuse.errors import ConfigError, LayoutError
from cellfuse.layout import Sample, list_samples

log = logging.getLogger(__name__)


def resolve_splits(data: Any, *, val_every: int = 5) -> tuple[list[Sample], list[Sample]]:
    """Labeled train and val samples of a ``data`` config dict.

    ``data`` holds ``root``, ``train`` and optionally ``val`` (folders relative to ``root``).
    Without a val folder (Med-MLE-bench ships none), every ``val_every``-th training image in
    sorted order is held out for checkpoint selection. With ``data.holdout="stratified"``
    (scarce labels) the share is taken per modality instead, and never the only image of a
    modality: with 8 labels of which one is stained, the stained one stays in training.
    """
    if "root" not in data or "train" not in data:
        raise ConfigError(
            "data config needs 'root' and 'train' (e.g. data=dict(root=..., train='train'))"
        )
    root = Path(data["root"])
    train = list_samples(root / data["train"], require_labels=True)
    val_dir = root / data["val"] if data.get("val") else None
    if val_dir is not None and (val_dir / "images").is_dir():
        return train, list_samples(val_dir, require_labels=True)
    if len(train) < 2:
        raise LayoutError(
            f"{root / data['train']}: need at least 2 labeled images to hold one out for validation"
        )
    if data.get("holdout", "every") == "stratified":
        val = stratified_holdout(train, val_every)
    else:
        val = train[::val_every]
    held = {s.id for s in val}
    log.info(
        "no val split under %s: holding out %d of %d training images", root, len(val), len(train)
    )
    return [s for s in train if s.id not in held], val


def stratified_holdout(train: list[Sample], val_every: int = 5) -> list[Sample]:
    """``round(len / val_every)`` (at least 1) samples to hold out, shared among the modalities
    in proportion to their counts, every k-th of each in sorted order, never a modality's
    last image (:func:`cellfuse.modality.modality` of each image)."""
    from cellfuse.io import read_image
    from cellfuse.modality import MODALITIES, modality

    groups: dict[str, list[Sample]] = {m: [] for m in MODALITIES}
    for s in train:
        groups[modality(read_image(s.image, allow_constant=True))].append(s)
    want = max(1, round(len(train) / val_every))
    quota = {m: min(len(g) - 1, round(want * len(g) / len(train))) for m, g in groups.items()}
    quota = {m: max(q, 0) for m, q in quota.items()}
    biggest = max(groups, key=lambda m: len(groups[m]))
    if sum(quota.values()) < want and len(groups[biggest]) - 1 > quota[biggest]:
        quota[biggest] += min(want - sum(quota.values()), len(groups[biggest]) - 1 - quota[biggest])
    val = []
    for m, g in groups.items():
        if quota[m] > 0:
            step = len(g) / quota[m]
            val += [g[int(i * step)] for i in range(quota[m])]
    return sorted(val, key=lambda s: s.id)


__all__ = ["resolve_splits", "stratified_holdout"]
