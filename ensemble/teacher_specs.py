"""The ensemble's teachers as the workers need them: names, configs, checkpoints, weights.

A config's ``teachers`` list is resolved once, in the driver, into :class:`TeacherSpec`s
(absolute checkpoint paths, checkpoint SHA-1s, numeric weights), which travel to every worker
and into the manifest; :func:`config_hash` fingerprints everything that shapes the outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cellfuse.errors import ConfigError
from cellfuse.fusion import FusionParams

logger = logging.getLogger(__name__)

# Keys tried, in order, for a teacher's validation F1 (weight="val_f1").
VAL_F1_KEYS = ("f1_50", "f1@0.5", "val_f1", "f1_0.5", "mean_f1@0.5", "f1")


@dataclass(frozen=True)
class TeacherSpec:
    """One ensemble member as the workers need it.

    Attributes:
        name: unique name (cache folder, manifest key).
        cfg: teacher config dict (``type`` + kwargs) for ``teachers.build_teacher``.
        checkpoint: absolute checkpoint path, or None for teachers without weights.
        checkpoint_sha1: SHA-1 of the checkpoint file ("" without one).
        weight: voting weight (>= 0).
        view: a test-time view (:mod:`cellfuse.flip_views`) the teacher predicts in, or None.
        source: name of the spec whose loaded model this one runs (a view of that teacher),
            or None for its own.
    """

    name: str
    cfg: dict
    checkpoint: str | None
    checkpoint_sha1: str
    weight: float
    view: str | None = None
    source: str | None = None

    @property
    def key(self) -> str:
        """Hash of what determines this teacher's predictions (config + weights + view)."""
        what = [self.cfg, self.checkpoint_sha1] + ([self.view] if self.view else [])
        return sha1_text(json.dumps(what, sort_keys=True, default=str))

    @property
    def model(self) -> str:
        """Name of the loaded model this spec runs."""
        return self.source or self.name


def file_sha1(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file's content."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha1_text(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def plain(obj: Any) -> Any:
    """MMEngine ConfigDict / tuples -> plain dicts and lists (JSON- and pickle-friendly)."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def read_val_f1(checkpoint: str | os.PathLike[str]) -> float:
    """A teacher's val F1@0.5, from the JSON written beside its checkpoint.

    Looks in ``<ckpt>.json``, ``<ckpt dir>/result.json`` (written by ``tools/train_teacher.py``,
    key ``val_metrics``), ``<ckpt dir>/best_metrics.json`` (Mask R-CNN), ``<ckpt dir>/metrics.json``
    and, for JSON checkpoints, the file itself.

    Raises:
        ConfigError: no such file or key; set the teacher's ``weight`` to a number instead.
    """
    ckpt = Path(checkpoint)
    candidates = [ckpt.with_suffix(ckpt.suffix + ".json"), ckpt.parent / "result.json"]
    candidates += [ckpt.parent / "best_metrics.json", ckpt.parent / "metrics.json"]
    if ckpt.suffix == ".json":
        candidates.insert(0, ckpt)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for metrics in (data.get("val_metrics"), data.get("metrics"), data):
            if not isinstance(metrics, Mapping):
                continue
            # MMEngine prefixes metric names ("cell/f1_50"); compare the last part.
            metrics = {str(k).split("/")[-1]: v for k, v in metrics.items()}
            for key in VAL_F1_KEYS:
                value = metrics.get(key)
                if isinstance(value, int | float) and 0.0 <= value <= 1.0:
                    return float(value)
    raise ConfigError(
        f"{ckpt}: no val F1 found in {[str(c) for c in candidates]} (keys {VAL_F1_KEYS}); "
        "give the teacher a numeric weight instead of 'val_f1'"
    )


def _find_checkpoint(path: Path) -> Path | None:
    """A checkpoint file, or a training work dir whose ``result.json`` names the checkpoint."""
    if path.is_dir():
        result = path / "result.json"
        if not result.is_file():
            return None
        try:
            path = Path(json.loads(result.read_text())["checkpoint"])
        except (OSError, ValueError, KeyError):
            return None
    return path.resolve() if path.is_file() else None


def _teacher_cfg(name: str, cfg: Any, registry: Mapping[str, str]) -> dict:
    """A teacher entry's ``cfg``: a dict, or a config file whose ``teacher`` dict is used
    (plus the whole config as ``cfg`` for teachers built by an MMEngine Runner)."""
    if isinstance(cfg, str):
        from mmengine.config import Config

        from cellfuse.config import resolve_config_path

        try:
            path = resolve_config_path(cfg)
        except ConfigError:
            raise ConfigError(f"teacher {name!r}: config file {cfg} not found") from None
        try:
            full = Config.fromfile(str(path))
        except Exception as exc:  # noqa: BLE001 - mmengine raises many types (missing mmdet...)
            raise ConfigError(f"teacher {name!r}: cannot load {cfg}: {exc}") from exc
        cfg = plain(full.get("teacher"))
        if isinstance(cfg, dict) and cfg.get("type") in registry:
            from teachers import teacher_class

            if getattr(teacher_class(cfg["type"]), "wants_full_config", False):
                cfg["cfg"] = plain(full)
    if not isinstance(cfg, dict) or cfg.get("type") not in registry:
        raise ConfigError(
            f"teacher {name!r}: cfg must be a dict (or a config file with a teacher dict) "
            f"whose type is one of {sorted(registry)}"
        )
    return cfg


def teacher_entries(cfg: Mapping) -> list:
    """A config's ``teachers`` plus its ``extra_teachers`` (MMEngine replaces inherited lists
    whole, so a config that adds one teacher to its base's list names only the new one)."""
    return list(cfg.get("teachers") or []) + list(cfg.get("extra_teachers") or [])


def config_teachers(cfg: Mapping, custom_teachers: Mapping | None = None) -> list[TeacherSpec]:
    """The resolved teachers of a pseudo-label config: its ``teachers`` + ``extra_teachers``,
    its ``refiner``, ``min_weight_fraction`` and ``views`` (see :func:`resolve_teachers`)."""
    return resolve_teachers(
        teacher_entries(cfg),
        custom_teachers,
        cfg.get("refiner"),
        min_weight_fraction=cfg.get("min_weight_fraction", 0.5),
        views=cfg.get("views"),
    )


def resolve_teachers(
    entries: Sequence[Mapping],
    custom_teachers: Mapping | None = None,
    refiner: str | None = None,
    min_weight_fraction: float = 0.5,
    views: Sequence[str] | None = None,
) -> list[TeacherSpec]:
    """Config ``teachers`` list -> specs with absolute paths, checkpoint hashes and weights.

    Each entry: ``name``; ``cfg`` (a teacher config dict, or a config file whose ``teacher``
    key is used); ``checkpoint`` (a file, a training work dir holding ``result.json``, or
    None); ``weight`` (a number, or ``"val_f1"``, the default when a checkpoint is given; 1.0
    otherwise); ``optional`` (leave the teacher out, with a warning, when its checkpoint is
    missing); ``views`` (test-time views from :data:`cellfuse.flip_views.VIEWS`, e.g.
    ``["hflip", "vflip", "rot180"]``: the teacher also votes in each of them, as specs named
    ``<name>@<view>`` that run its model; its weight is shared equally by its views).
    ``views`` given here is the default of every entry without its own, except the refiner's.

    The ``refiner`` (SAM) is validated with the true cells as prompts, an upper bound that
    does not compare with the other teachers' val F1; with ``weight="val_f1"`` it therefore
    votes with the mean weight of the teachers that prompt it. A number is taken as given.

    A teacher whose val F1 is below ``min_weight_fraction`` times the best weight (a teacher
    that failed to train, or a budget too small for it) gets weight 0: it still predicts (and
    is scored), but neither votes nor prompts the refiner. Otherwise every cell it misses
    would lower every other cell's vote. Explicit numeric weights are never changed.
    """
    if not 0.0 <= min_weight_fraction <= 1.0:
        raise ConfigError(f"min_weight_fraction must be in [0, 1], got {min_weight_fraction}")
    from teachers import TEACHER_REGISTRY

    registry = {**TEACHER_REGISTRY, **dict(custom_teachers or {})}
    if not entries:
        raise ConfigError(
            "config has no teachers (teachers = [dict(name=..., cfg=..., checkpoint=...)])"
        )
    specs: list[TeacherSpec] = []
    names: set[str] = set()
    from_val: set[str] = set()
    for i, raw in enumerate(entries):
        e = plain(raw)
        unknown = set(e) - {"name", "cfg", "checkpoint", "weight", "optional", "views"}
        if unknown:
            raise ConfigError(f"teacher {i}: unknown keys {sorted(unknown)}")
        name = e.get("name")
        if not name or name in names or "@" in str(name):
            raise ConfigError(f"teacher {i}: needs a unique 'name' without '@', got {name!r}")
        names.add(name)
        ckpt = None
        if e.get("checkpoint") is not None:
            ckpt = _find_checkpoint(Path(e["checkpoint"]))
            if ckpt is None and e.get("optional", False):
                logger.warning("teacher %r: no checkpoint at %s; left out", name, e["checkpoint"])
                continue
            if ckpt is None:
                raise ConfigError(
                    f"teacher {name!r}: checkpoint {e['checkpoint']} not found "
                    "(train it, or mark the entry optional=True)"
                )
        cfg = _teacher_cfg(name, e.get("cfg"), registry)
        weight = e.get("weight", "val_f1" if ckpt is not None else 1.0)
        if weight == "val_f1":
            if ckpt is None:
                raise ConfigError(f"teacher {name!r}: weight='val_f1' needs a checkpoint")
            weight = read_val_f1(ckpt)
            from_val.add(name)
        elif not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"teacher {name!r}: weight must be a number >= 0, got {weight!r}")
        specs.append(
            TeacherSpec(
                name=name,
                cfg=cfg,
                checkpoint=str(ckpt) if ckpt else None,
                checkpoint_sha1=file_sha1(ckpt) if ckpt else "",
                weight=float(weight),
            )
        )
    if not specs:
        raise ConfigError(
            "no teacher is available (every optional teacher's checkpoint is missing)"
        )
    best = max(s.weight for s in specs if s.name != refiner or len(specs) == 1)
    for i, s in enumerate(specs):
        if s.name in from_val and s.name != refiner and s.weight < min_weight_fraction * best:
            logger.warning(
                "teacher %r: val F1 %.3f is below %.2f x the best weight %.3f; it does not vote "
                "(min_weight_fraction)",
                s.name,
                s.weight,
                min_weight_fraction,
                best,
            )
            specs[i] = replace(s, weight=0.0)
    by_name = {plain(e).get("name"): plain(e) for e in entries}
    if refiner in by_name and len(specs) > 1:
        e = by_name[refiner]
        default = "val_f1" if e.get("checkpoint") is not None else 1.0
        if e.get("weight", default) == "val_f1":
            others = [s.weight for s in specs if s.name != refiner and s.weight > 0] or [0.0]
            mean = float(sum(others) / len(others))
            specs = [replace(s, weight=mean) if s.name == refiner else s for s in specs]
            logger.info(
                "refiner %r votes with the prompting teachers' mean weight %.3f", refiner, mean
            )
    return _expand_views(specs, by_name, refiner, views)


def _expand_views(
    specs: list[TeacherSpec],
    entries: Mapping[str, Mapping],
    refiner: str | None,
    default: Sequence[str] | None,
) -> list[TeacherSpec]:
    """Each teacher with ``views`` becomes one spec per view (itself first), sharing its
    weight equally; weights are settled before, so a teacher counts once for
    ``min_weight_fraction`` and for the refiner's mean."""
    from cellfuse.flip_views import check_view

    out: list[TeacherSpec] = []
    for s in specs:
        own = entries[s.name].get("views")
        views = list(own if own is not None else (default or []) if s.name != refiner else [])
        for v in views:
            check_view(v)
        views = [v for v in dict.fromkeys(views) if v != "identity"]
        if views and s.name == refiner:
            raise ConfigError(f"teacher {s.name!r}: the refiner cannot have views")
        share = s.weight / (1 + len(views))
        out.append(replace(s, weight=share))
        out += [
            replace(s, name=f"{s.name}@{v}", weight=share, view=v, source=s.name) for v in views
        ]
    return out


def config_hash(
    specs: Sequence[TeacherSpec], fusion: FusionParams, refiner: str | None, extra: Mapping
) -> str:
    """Hash of everything that determines the outputs of one image."""
    payload = {
        "teachers": [[s.name, s.key, s.weight] for s in specs],
        "fusion": asdict(fusion),
        "refiner": refiner,
        **extra,
    }
    return sha1_text(json.dumps(payload, sort_keys=True, default=str))[:16]
