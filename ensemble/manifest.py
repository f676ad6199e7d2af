"""Which images a (re-)run still has to do, from the manifest (:mod:`cellfuse.manifest`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from cellfuse.errors import ConfigError
from cellfuse.manifest import MANIFEST, OUTPUT_SUFFIXES, Manifest
from ensemble.outputs import outputs_match
from ensemble.teacher_specs import file_sha1

logger = logging.getLogger(__name__)


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


__all__ = ["MANIFEST", "OUTPUT_SUFFIXES", "Manifest", "outputs_exist", "plan_jobs"]
