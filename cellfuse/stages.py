"""Stage records: each pipeline stage records what it was computed from in
``work/stages/<stage>.json`` and is skipped when a re-run would compute the same thing.

The key of a stage is the SHA-1 of its name and its inputs' description (config text, input
folder signatures, upstream stage keys); a stage folder left by another key is moved aside
to ``<work>.stale`` before the stage runs again, so a changed config trains afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellfuse.files import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

STAGES = (
    "check",
    "teachers",
    "pseudo",
    "student",
    "export",
    "predict",
    "submit",
    "evaluate",
    "report",
)


def find_test_labels(input_dir: Path) -> Path | None:
    """Truth for the test images, if the input ships it apart (read only by evaluate)."""
    for name in ("test_labels", "test/labels"):
        if (input_dir / name).is_dir():
            return input_dir / name
    return None


def _sha1(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def folder_signature(folder: Path) -> list[tuple[str, int]]:
    """(name, size) of every file in ``folder``: cheap and stable across clones."""
    if not folder.is_dir():
        return []
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())


@dataclass
class Run:
    """One pipeline run: where things are and what each stage recorded."""

    input_dir: Path
    work_dir: Path
    profile: str
    cfg: Any
    address: str | None = None
    records: dict[str, dict] = field(default_factory=dict)

    @property
    def stage_dir(self) -> Path:
        return self.work_dir / "stages"

    def record(self, stage: str) -> dict | None:
        p = self.stage_dir / f"{stage}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def is_current(self, name: str, key_parts: Any) -> bool:
        """Whether stage ``name`` is recorded under this key (:meth:`stage` would skip it)."""
        rec = self.record(name)
        return rec is not None and rec.get("key") == _sha1([name, key_parts])

    def stage(
        self, name: str, key_parts: Any, fn: Callable[[], dict], work: Path | None = None
    ) -> dict:
        """Run ``fn`` unless the stage's record holds the same key; record its result.

        ``work``: the stage's own folder, where ``fn`` resumes from a checkpoint it left. It
        is only resumed by the same stage key: a folder left by a run under other inputs or
        config is moved aside to ``<work>.stale`` first, so a changed config trains afresh.
        """
        key = _sha1([name, key_parts])
        rec = self.record(name)
        if rec is not None and rec.get("key") == key:
            log.info("stage %s: up to date, skipped", name)
            self.records[name] = rec
            return rec
        started = self.stage_dir / f"{name}.started"
        if work is not None and work.exists():
            before = started.read_text().strip() if started.exists() else None
            if before is None and rec is not None:
                before = rec.get("key")
            if before is not None and before != key:
                stale = work.with_name(work.name + ".stale")
                shutil.rmtree(stale, ignore_errors=True)
                work.rename(stale)
                log.warning("stage %s: inputs or config changed; old work moved to %s", name, stale)
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(started, key + "\n")
        log.info("stage %s: running", name)
        t0 = time.time()
        result = fn()
        rec = {"key": key, "seconds": round(time.time() - t0, 1), **result}
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.stage_dir / f"{name}.json", "w") as fh:
            json.dump(rec, fh, indent=2, default=str)
        self.records[name] = rec
        return rec


__all__ = ["STAGES", "Run", "find_test_labels", "folder_signature"]
