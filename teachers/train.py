"""Train any teacher from an MMEngine config (what ``cellfuse train-teacher`` calls).

``resolve_splits``, ``stratified_holdout`` (:mod:`cellfuse.splits`) and ``load_config``
(:mod:`cellfuse.config`) are re-exported here for the scripts that import them from here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cellfuse.config import load_config, start_work_dir
from cellfuse.errors import ConfigError
from cellfuse.files import atomic_write
from cellfuse.splits import resolve_splits, stratified_holdout
from teachers import build_teacher, teacher_class

log = logging.getLogger(__name__)


def train_teacher(cfg, work_dir: str | Path, *, resume: bool = False) -> Path:
    """Build ``cfg.teacher``, fit it on ``cfg.data`` and record the result in ``work_dir``.

    Returns:
        The best checkpoint's path; ``work_dir/result.json`` records it with the val scores.
    """
    if "teacher" not in cfg:
        raise ConfigError("config has no 'teacher' dict (teacher = dict(type='flowunet', ...))")
    work_dir = start_work_dir(cfg, work_dir)
    tcfg = dict(cfg.teacher.to_dict() if hasattr(cfg.teacher, "to_dict") else cfg.teacher)
    offset = int(cfg.get("seed") or 0)
    if offset:  # the run's seed (0: each teacher's own, as every profile ships)
        teacher_class(tcfg["type"]).offset_seed(tcfg, cfg, offset)
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
    with atomic_write(work_dir / "result.json", "w") as fh:
        json.dump(result, fh, indent=2)
    log.info("done: %s", result)
    return ckpt


__all__ = ["train_teacher", "resolve_splits", "stratified_holdout", "load_config"]
