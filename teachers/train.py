"""Train any teacher from an MMEngine config: the library side of ``tools/train_teacher.py``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from cellfuse.errors import ConfigError, LayoutError
from cellfuse.layout import Sample, list_samples
from teachers import build_teacher, teacher_class

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


def load_config(path: str | Path, cfg_options: dict | None = None):
    """``Config.fromfile`` plus ``--cfg-options`` overrides."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def training_cli(description: str, default_root: str, train_fn, argv=None):
    """The command line shared by ``tools/train_teacher.py`` and ``tools/distill.py``:
    ``CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume]``; calls
    ``train_fn(cfg, work_dir, resume=...)`` (work dir default ``<default_root>/<config stem>``)."""
    import argparse

    from mmengine.config import DictAction

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config")
    ap.add_argument("--work-dir", help=f"default: {default_root}/<config stem>")
    ap.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, k=v")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or cfg.get("work_dir") or f"{default_root}/{Path(args.config).stem}"
    return train_fn(cfg, work_dir, resume=args.resume)


def train_teacher(cfg, work_dir: str | Path, *, resume: bool = False) -> Path:
    """Build ``cfg.teacher``, fit it on ``cfg.data`` and record the result in ``work_dir``.

    Returns:
        The best checkpoint's path; ``work_dir/result.json`` records it with the val scores.
    """
    if "teacher" not in cfg:
        raise ConfigError("config has no 'teacher' dict (teacher = dict(type='flowunet', ...))")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(work_dir)
    from cellfuse.durable import dump_config

    dump_config(cfg, work_dir / "config.py")
    tcfg = dict(cfg.teacher.to_dict() if hasattr(cfg.teacher, "to_dict") else cfg.teacher)
    if getattr(teacher_class(tcfg["type"]), "wants_full_config", False):
        tcfg["cfg"] = cfg
    teacher = build_teacher(tcfg)
    train, val = resolve_splits(cfg.data)
    log.info(
        "training %s on %d images (val %d) in %s", tcfg["type"], len(train), len(val), work_dir
    )
    t0 = time.time()
    ckpt = Path(teacher.fit(train, val, work_dir, resume=resume))
    result = {
        "type": tcfg["type"],
        "checkpoint": str(ckpt),
        "config": str(work_dir / "config.py"),
        "val_metrics": teacher.val_metrics,
        "train_seconds": round(time.time() - t0, 1),
    }
    from cellfuse.io import atomic_write

    with atomic_write(work_dir / "result.json", "w") as fh:
        json.dump(result, fh, indent=2)
    log.info("done: %s", result)
    return ckpt
