"""Small helpers for config dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from cellfuse.errors import ConfigError

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """Build dataclass ``cls`` from a config dict; unknown keys are a ConfigError naming ``what``."""
    d = dict(d or {})
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {what} keys {sorted(unknown)}; known: {sorted(fields)}")
    return cls(**d)
