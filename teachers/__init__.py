"""Teachers: models trained on the few labeled images whose predictions become pseudo-labels.

All teachers share one small interface, so the ensemble never knows which it holds::

    teacher = build_teacher(cfg)                 # cfg = dict(type="flowunet", ...)
    ckpt = teacher.fit(train, val, work_dir)     # writes a checkpoint, logs metrics
    teacher = load_teacher(cfg, ckpt)
    inst = teacher.predict(image)                # HxWxC array -> Instances

Teacher modules import torch/mmdet/segment-anything themselves; the registry maps a type
name to its module and imports it only when that type is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellfuse.errors import ConfigError
from cellfuse.model_api import Teacher

# type name -> "module:Class"; imported lazily so `import teachers` stays light.
TEACHER_REGISTRY: dict[str, str] = {
    "flowunet": "teachers.flowunet:FlowUNetTeacher",
    "sam": "teachers.sam:SAMTeacher",
    "maskrcnn": "teachers.maskrcnn:MaskRCNNTeacher",
    "classical": "teachers.classical:ClassicalTeacher",
    "student": "student.as_teacher:StudentAsTeacher",  # a trained student joins the next round
}


def teacher_class(type_name: str) -> type[Teacher]:
    """The class registered under ``type_name``."""
    if type_name not in TEACHER_REGISTRY:
        known = ", ".join(sorted(TEACHER_REGISTRY))
        raise ConfigError(f"unknown teacher type {type_name!r}; known types: {known}")
    module, cls = TEACHER_REGISTRY[type_name].split(":")
    return getattr(importlib.import_module(module), cls)


def _as_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    if "type" not in cfg:
        raise ConfigError(f"teacher config has no 'type' key (one of {sorted(TEACHER_REGISTRY)})")
    return cfg


def build_teacher(cfg: Mapping[str, Any]) -> Teacher:
    """Build an untrained teacher from a config dict whose ``type`` names a registered teacher."""
    cfg = _as_dict(cfg)
    return teacher_class(cfg.pop("type"))(**cfg)


def load_teacher(cfg: Mapping[str, Any], checkpoint: str | Path) -> Teacher:
    """Build a teacher and load its weights from ``checkpoint`` (a local path; nothing is downloaded)."""
    teacher = build_teacher(cfg)
    teacher.load(Path(checkpoint))
    return teacher


__all__ = ["Teacher", "TEACHER_REGISTRY", "build_teacher", "load_teacher", "teacher_class"]
