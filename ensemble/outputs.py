"""The files of one pseudo-labelled image, tied to its manifest record by their hashes.

A worker writes ``<id>_label.tiff``, ``<id>_conf.json`` and ``<id>_ignore.tiff`` one after
the other (each atomically); a crash or a run under another config can leave a mix. The
worker therefore returns the SHA-1 of each file it wrote, the driver records them in the
image's manifest line (``outputs``), and a reader trusts the files only when they still
have those hashes (:func:`outputs_match`); a resumed run redoes an image whose files do
not match. Records written before the hashes existed are checked for presence only.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_label.tiff", "_conf.json", "_ignore.tiff")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_hashes(out_dir: str | Path, image_id: str) -> dict[str, str]:
    """``{suffix: sha1}`` of an image's output files (as just written)."""
    out_dir = Path(out_dir)
    return {sfx: _sha1(out_dir / f"{image_id}{sfx}") for sfx in OUTPUT_SUFFIXES}


def outputs_match(out_dir: str | Path, image_id: str, hashes: Mapping[str, str] | None) -> bool:
    """Whether the image's output files exist and, when the record has ``hashes``, are
    exactly the files the record describes (a mismatch is logged)."""
    out_dir = Path(out_dir)
    files = {sfx: out_dir / f"{image_id}{sfx}" for sfx in OUTPUT_SUFFIXES}
    if not all(p.is_file() for p in files.values()):
        return False
    if not hashes:
        return True
    for sfx, want in hashes.items():
        path = files.get(sfx, out_dir / f"{image_id}{sfx}")
        if not path.is_file() or _sha1(path) != want:
            logger.warning("%s: not the file its manifest record describes; redone", path)
            return False
    return True
