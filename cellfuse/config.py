"""Configs: where they live, how they load, and small helpers for config dicts.

Configs are MMEngine Python files with ``_base_`` inheritance. They ship with the package
(``cellfuse/configs`` in a wheel; the repository's top-level ``configs/`` in a checkout), and
a config path is looked up in this order: as given (absolute, or relative to the current
folder), then inside :func:`config_root`. So ``configs/teachers/flowunet_demo.py`` (how the
profiles name their stage configs) and ``teachers/flowunet_demo.py`` both work from any
folder once cellfuse is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from cellfuse.errors import ConfigError

T = TypeVar("T")

_PACKAGE = Path(__file__).resolve().parent


def package_parent() -> Path:
    """The folder that holds the ``cellfuse`` package (and, in a checkout, ``teachers``,
    ``student``, ``ensemble``): what a child process needs on its import path."""
    return _PACKAGE.parent


def config_root() -> Path:
    """The folder of the shipped configs (its children: ``pipeline``, ``teachers``, ...)."""
    for root in (_PACKAGE / "configs", _PACKAGE.parent / "configs"):
        if (root / "pipeline").is_dir():
            return root
    raise ConfigError(f"no configs found next to {_PACKAGE} (a broken install?)")


def resolve_config_path(path: str | Path) -> Path:
    """A config file from a path as given, else inside :func:`config_root` (see module doc).

    Raises:
        ConfigError: no such file either way.
    """
    p = Path(path)
    if p.is_absolute() or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        return p
    parts = p.parts[1:] if p.parts and p.parts[0] == "configs" else p.parts
    shipped = config_root().joinpath(*parts)
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{p}: config file not found (here or in {config_root()})")


def profile_path(profile: str) -> Path:
    """``configs/pipeline/<profile>.py`` of the shipped configs."""
    path = config_root() / "pipeline" / f"{profile}.py"
    if not path.is_file():
        known = sorted(p.stem for p in (config_root() / "pipeline").glob("*.py"))
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(known)})")
    return path


def load_config(path: str | Path, cfg_options: dict | None = None, *, imports: bool = True):
    """``mmengine.Config.fromfile`` of :func:`resolve_config_path`, plus ``--cfg-options``
    overrides (a dict of dotted keys); ``imports=False`` skips the config's
    ``custom_imports`` (mmdet's plugins: seconds to import, not needed to read a config)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(resolve_config_path(path)), import_custom_modules=imports)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def config_text(path: str | Path) -> str:
    """A config file's text with its ``_base_`` files' (what stage keys hash)."""
    from mmengine.config import Config

    return Config.fromfile(str(resolve_config_path(path))).pretty_text


def start_work_dir(cfg: Any, work_dir: str | Path) -> Path:
    """Create a training run's ``work_dir``, point ``cfg.work_dir`` at it and dump the
    resolved config there as ``config.py`` (what a later stage or a reader reloads)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(work_dir)
    from cellfuse.durable import dump_config

    dump_config(cfg, work_dir / "config.py")  # atomic: a reader never sees half a config
    return work_dir


# The config key that takes an official checkpoint, per teacher type: what a profile's
# ``checkpoints = dict(<teacher name>=PATH)`` sets in that teacher's stage config.
CHECKPOINT_OPTIONS = {"sam": "teacher.checkpoint", "maskrcnn": "load_from"}


def official_checkpoint(cfg: Any) -> str | None:
    """The official checkpoint a stage config starts from (None when it names none)."""
    teacher = cfg.get("teacher") or {}
    if teacher.get("type") == "sam":
        return teacher.get("checkpoint")
    if teacher.get("type") == "maskrcnn" or "model" in cfg:
        return cfg.get("load_from")
    return None


def checkpoint_fallback(cfg: Any, name: str) -> str | None:
    """Apply a stage config's ``without_checkpoint`` overrides when it names no checkpoint.

    A config that fine-tunes official weights (``configs/teachers/sam_vit_b_finetune.py``)
    may say what to train instead when the user has none; a profile run applies it.

    Returns:
        One line that says what was substituted, or None (a checkpoint is given, or the
        config has no fallback).
    """
    fallback = cfg.get("without_checkpoint")
    if not fallback or official_checkpoint(cfg):
        return None
    fallback = fallback.to_dict() if hasattr(fallback, "to_dict") else dict(fallback)
    cfg.merge_from_dict(flatten_options(fallback))
    cfg.without_checkpoint = None
    teacher = cfg.get("teacher") or {}
    train = teacher.get("train") or {}
    budget = train.get("time_budget_min")
    what = f"{teacher.get('type', name)} {teacher.get('variant', '')}".strip()
    return (
        f"{name}: no official checkpoint (checkpoints.{name}=PATH): training {what} from "
        f"scratch instead" + (f", {budget:g} min budget" if budget else "")
    )


def flatten_options(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (what ``merge_from_dict`` takes)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_options(v, key + "."))
        else:
            out[key] = v
    return out


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """Build dataclass ``cls`` from a config dict; unknown keys are a ConfigError naming ``what``."""
    d = dict(d or {})
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {what} keys {sorted(unknown)}; known: {sorted(fields)}")
    return cls(**d)
