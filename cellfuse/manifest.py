"""The pseudo-label folder format: an append-only ``manifest.jsonl`` of finished images
beside ``<id>_label.tiff``, ``<id>_conf.json`` and ``<id>_ignore.tiff``.

One reader for the writer (:mod:`ensemble.pseudolabel`) and the reader (the student's
distillation): :meth:`Manifest.latest` skips a torn last line left by a crash.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cellfuse.errors import ConfigError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
OUTPUT_SUFFIXES = ("_label.tiff", "_conf.json", "_ignore.tiff")


class Manifest:
    """Append-only JSON-lines record of finished images; the driver is its only writer."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def latest(self) -> dict[str, dict]:
        """Last entry per image id (a torn last line from a crash is skipped)."""
        out: dict[str, dict] = {}
        if not self.path.is_file():
            return out
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                out[entry["id"]] = entry
            except (ValueError, KeyError):
                logger.warning("%s:%d: skipping a damaged line", self.path, n)
        return out

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [
            json.loads(x) for x in self.path.read_text().splitlines() if x.strip().endswith("}")
        ]

    def append(self, entry: Mapping) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def list_pseudo(folder: str | Path) -> list[dict[str, Path]]:
    """Pseudo-labeled images of an ensemble output folder, from its ``manifest.jsonl``.

    The latest manifest entry of each image id decides (a torn last line is skipped, as
    :meth:`Manifest.latest` skips it); only ``status == "ok"`` entries whose files exist are
    returned.

    Returns:
        ``[{"id", "image", "label", "conf", "ignore"}]`` sorted by id.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ConfigError(
            f"{folder}: no manifest.jsonl; run tools/pseudo_label.py first or set student.pseudo=None"
        )
    out = []
    for image_id, e in sorted(Manifest(manifest).latest().items()):
        item = dict(
            id=image_id,
            image=Path(e["image"]),
            label=folder / f"{image_id}_label.tiff",
            conf=folder / f"{image_id}_conf.json",
            ignore=folder / f"{image_id}_ignore.tiff",
        )
        if e.get("status") == "ok" and all(
            p.is_file() for k, p in item.items() if k in ("image", "label", "conf")
        ):
            out.append(item)
    return out


__all__ = ["MANIFEST", "OUTPUT_SUFFIXES", "Manifest", "list_pseudo"]
