"""Atomic file writes: a temporary name in the target folder, then ``os.replace``.

A run that dies leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# Read once at import (single-threaded then): os.umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` that replaces ``path`` on success.

    The temporary file is hidden (``.<name>.<random>.tmp<suffix>``) and lives in
    ``path``'s folder, so the final ``os.replace`` is atomic. If the ``with`` body raises,
    the temporary file is removed and ``path`` is not touched.

    Args:
        path: final file; missing parent folders are created.
        mode: ``"w"``/``"wt"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (text mode only).
        newline: passed to ``open`` (text mode only); ``""`` for the csv module.

    Yields:
        The open temporary file.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w', 'wt' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = mode == "wb"
    text_kwargs = {} if binary else {"encoding": encoding, "newline": newline}
    tmp = tempfile.NamedTemporaryFile(
        mode="wb" if binary else "w",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=f".tmp{path.suffix}",
        delete=False,
        **text_kwargs,
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            yield tmp.file
            tmp.flush()
            os.fsync(tmp.fileno())
        # NamedTemporaryFile creates 0600; give the result the mode a plain open() would.
        os.chmod(tmp_path, _target_mode(path))
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`). Returns ``path``."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`). Returns ``path``."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]
