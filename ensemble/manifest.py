"""The append-only manifest of finished images, and which images a (re-)run still has to do."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cellfuse.errors import ConfigError
from ensemble.outputs import outputs_match
from ensemble.spec import file_sha1

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


def outputs_exist(out_dir: Path, image_id: str) -> bool:
    return all((out_dir / f"{image_id}{sfx}").is_file() for sfx in OUTPUT_SUFFIXES)


def plan_jobs(
    images: Iterable[Path], out_dir: Path, chash: str, manifest: Manifest
) -> tuple[list[dict], int]:
    """Jobs still to do, and how many images are skipped as already done.

    An image is skipped when its latest manifest entry has the same input SHA-1 and config
    hash and either succeeded (and its outputs exist with the hashes the entry recorded) or
    failed on unreadable input.
    """
    from cellfuse.layout import image_id

    latest = manifest.latest()
    jobs, skipped, seen = [], 0, {}
    for path in images:
        iid = image_id(path)
        if iid in seen:
            raise ConfigError(f"two images share the id {iid!r}: {seen[iid]}, {path}")
        seen[iid] = path
        try:
            sha1 = file_sha1(path)
        except OSError as exc:
            sha1 = f"unreadable: {exc}"
        prev = latest.get(iid)
        if prev and prev.get("sha1") == sha1 and prev.get("config_hash") == chash:
            ok = prev.get("status") == "ok"
            if (ok and outputs_match(out_dir, iid, prev.get("outputs"))) or prev.get(
                "error_kind"
            ) == "input":
                skipped += 1
                continue
        jobs.append(
            {"id": iid, "path": str(Path(path).resolve()), "sha1": sha1, "config_hash": chash}
        )
    return jobs, skipped
