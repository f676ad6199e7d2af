"""Teachers: models trained on the few labeled images whose predictions become pseudo-labels.

All teachers share one small interface, so the ensemble never knows which it holds::

    teacher = build_teacher(cfg)                 # cfg = dict(type="flowunet", ...)
    ckpt = teacher.fit(train, val, work_dir)     # writes a checkpoint, logs metrics
    teacher = load_teacher(cfg, ckpt)
    inst = teacher.predict(image)                # HxWxC array -> Instances

Teacher modules import torch/mmdet/segment-anything themselves; the registry maps a type
name to its module and imports it only when that type is built. Other packages add teacher
types as entry points of the group ``cellfuse.teachers`` (``name = "module:Class"``, a
:class:`cellfuse.model_api.Teacher`): the student declares itself that way (type
``student``: a trained student votes in the next self-training round), and so can a lab's
own model, with no change here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellfuse.errors import ConfigError
from cellfuse.model_api import Teacher
from cellfuse.plugins import TEACHER_GROUP, declared

# type name -> "module:Class"; imported lazily so `import teachers` stays light.
BUILTIN_TEACHERS: dict[str, str] = {
    "flowunet": "teachers.flowunet:FlowUNetTeacher",
    "sam": "teachers.sam:SAMTeacher",
    "maskrcnn": "teachers.maskrcnn:MaskRCNNTeacher",
    "classical": "teachers.classical:ClassicalTeacher",
}
# the built-in types, then those other packages declare (they cannot replace a built-in)
TEACHER_REGISTRY: dict[str, str] = {
    **{n: ep.value for n, ep in declared(TEACHER_GROUP).items()},
    **BUILTIN_TEACHERS,
}


def teacher_class(type_name: str) -> type[Teacher]:
    """The class registered under ``type_name``."""
    if type_name not in TEACHER_REGISTRY:
        known = ", ".join(sorted(TEACHER_REGISTRY))
        raise ConfigError(
            f"unknown teacher type {type_name!r}; known types: {known} (other packages add "
            f"types as {TEACHER_GROUP!r} entry points; re-run tools/setup.sh after adding one)"
        )
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
