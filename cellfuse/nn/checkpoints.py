"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds tensors and plain containers (dict, list, str, int, float, bool, None)
only, so reading one never runs code: ``torch.load(..., weights_only=True)`` refuses any
other pickled object, and such a file is reported as a :class:`~cellfuse.errors.ConfigError`
that names it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from cellfuse.errors import ConfigError
from cellfuse.files import atomic_write


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def load_checkpoint(path: str | Path, *, what: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint dict read safely (tensors and plain containers only).

    Raises:
        ConfigError: the file is missing, is not a torch checkpoint, holds objects other
            than tensors and plain containers (e.g. a pickle that would run code), or is
            not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: not a {what} this code can read safely (tensors and plain containers "
            f"only): {_why(exc)}"
        ) from None
    if not isinstance(ck, dict):
        raise ConfigError(f"{path}: {what} holds a {type(ck).__name__}, expected a dict")
    return ck


def _why(exc: BaseException) -> str:
    """The part of torch's refusal a user needs: the object the pickle would have built
    (torch's own message is a paragraph of advice to turn the safety off)."""
    text = " ".join(str(exc).split())
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return f"it would run {found.group(1)}, refused"
    return text[:200]


__all__ = ["save_checkpoint", "load_checkpoint"]
