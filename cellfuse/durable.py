"""On-disk contracts that a crash cannot tear: atomic config dumps, a folder swap with no
moment without the folder, and the clean-up of what an interrupted swap or write left.

- :func:`dump_config`: an mmengine ``Config`` written to a temporary file next to the
  target and renamed over it (``Config.dump`` writes in place; configs are read back by
  resumed runs and by the ensemble).
- :func:`swap_dirs`: ``new`` takes ``target``'s place. On Linux the two are exchanged
  with one ``renameat2(RENAME_EXCHANGE)`` call, so ``target`` always exists; elsewhere (or on a
  filesystem without it) two renames, and :func:`recover_swap` restores the previous folder
  when a crash fell between them.
- :func:`clean_stale`: removes the ``<name>.tmp-XXXXXXXX`` / ``<name>.old-XXXXXXXX``
  siblings and the hidden temporary files of :func:`cellfuse.files.atomic_write` that a killed
  run left in a work folder (only call it when no other run uses that folder).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# <name>.tmp-1a2b3c4d / <name>.old-1a2b3c4d (cellfuse.submission), .labels-* (predictor),
# .<name>.<random>.tmp<suffix> (cellfuse.files.atomic_write), .tmp-<name> (student.export)
_SIBLING = re.compile(r"^(?P<base>.+)\.(?P<tag>tmp|old)-[0-9a-f]{8}$")
_HIDDEN_TMP = re.compile(r"^\.(.+\.[A-Za-z0-9_]{6,}\.tmp.*|labels-.+|tmp-.+)$")


def dump_config(cfg, path: str | os.PathLike[str]) -> Path:
    """``cfg.dump(path)``, atomically (the format follows ``path``'s suffix)."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    try:
        cfg.dump(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    from cellfuse.files import _UMASK

    return _UMASK


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically exchange two existing paths (Linux ``renameat2``); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not on this kernel/filesystem
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def swap_dirs(new: Path, target: Path, old: Path) -> Path | None:
    """Put folder ``new`` at ``target``; the previous ``target`` ends at ``old`` (returned),
    or None when there was none. ``old`` must not exist."""
    if not target.exists():
        os.replace(new, target)
        return None
    if exchange(new, target):
        os.replace(new, old)  # ``new`` now holds the previous folder
        return old
    os.replace(target, old)  # the window: recover_swap() restores ``old`` after a crash here
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    return old


def recover_swap(target: Path) -> Path | None:
    """When ``target`` is missing but an interrupted swap left ``<target>.old-XXXXXXXX``,
    move the newest one back; returns the restored folder (or None)."""
    if target.exists():
        return None
    olds = sorted(
        (p for p in target.parent.glob(f"{target.name}.old-*") if _SIBLING.match(p.name)),
        key=lambda p: p.stat().st_mtime,
    )
    if not olds:
        return None
    os.replace(olds[-1], target)
    logger.warning("%s: restored from %s (a swap was interrupted)", target, olds[-1].name)
    return target


def clean_siblings(target: str | os.PathLike[str]) -> list[Path]:
    """:func:`recover_swap` ``target``, then remove its stale ``.tmp-``/``.old-`` siblings."""
    target = Path(target)
    recover_swap(target)
    removed = []
    for p in sorted(target.parent.glob(f"{target.name}.*-*")):
        if _SIBLING.match(p.name) and _SIBLING.match(p.name).group("base") == target.name:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def clean_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Restore interrupted swaps, then remove stale temporary siblings and files under
    ``folder`` (see the module docstring); returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for dirpath, dirnames, _ in os.walk(folder):
        here = Path(dirpath)
        for name in list(dirnames):
            m = _SIBLING.match(name)
            if m and m.group("tag") == "old":
                recover_swap(here / m.group("base"))
        for name in sorted(set(os.listdir(here))):
            p = here / name
            if _SIBLING.match(name) or _HIDDEN_TMP.match(name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
                if name in dirnames:
                    dirnames.remove(name)
    if removed:
        logger.info("removed %d stale temporary files/folders under %s", len(removed), folder)
    return removed
