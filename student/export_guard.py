"""What an export must satisfy before anyone uses it: the sidecar belongs to its ONNX file
(a SHA-256 ties them), and the ONNX network agrees with the torch one within a stated
tolerance on a random input and on real images (else the export fails)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellfuse.errors import CellfuseError, ConfigError

log = logging.getLogger(__name__)

# Network outputs (cell logit; flows x flow_scale): float32 with folded batch norms differs
# by ~1e-5 from torch; 1e-3 is far above that and far below anything that moves a cell.
PARITY_MAX_ABS = 1e-3
# Final labels, torch as the truth: F1@0.5 of the ONNX labels per check image.
PARITY_MIN_F1 = 0.99


class ParityError(CellfuseError):
    """The exported network does not reproduce the torch network within the tolerance."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_onnx_hash(side: Mapping[str, Any], onnx_path: str | Path, sidecar: Path) -> None:
    """Raise ConfigError when the sidecar's ``onnx_sha256`` is not the ONNX file's (a crash
    between writing the two, or files from two exports mixed). Sidecars written before the
    hash existed are accepted with a warning."""
    want = side.get("onnx_sha256")
    if want is None:
        log.warning("%s: no onnx_sha256 (an older export); not verified", sidecar)
        return
    got = file_sha256(onnx_path)
    if got != want:
        raise ConfigError(
            f"{onnx_path}: does not match its sidecar {Path(sidecar).name} (SHA-256 "
            f"{got[:12]}, sidecar says {want[:12]}); re-export with tools/export.py"
        )


def check_parity(
    report: Mapping[str, Any],
    *,
    max_abs: float = PARITY_MAX_ABS,
    min_f1: float = PARITY_MIN_F1,
    where: str = "export",
) -> None:
    """Raise :class:`ParityError` when a parity report (:func:`student.export.parity`)
    exceeds the tolerance; one line naming every check that failed."""
    bad = []
    if not report.get("random_max_abs", 0.0) <= max_abs:
        bad.append(f"random input: max |torch - onnx| {report.get('random_max_abs'):.3g}")
    for i, r in enumerate(report.get("images", [])):
        if not r["max_abs"] <= max_abs:
            bad.append(f"image {i}: max |torch - onnx| {r['max_abs']:.3g}")
        if (r["n_torch"] or r["n_onnx"]) and not r["f1_50"] >= min_f1:
            bad.append(
                f"image {i}: label F1@0.5 {r['f1_50']:.4f} ({r['n_torch']} vs {r['n_onnx']} cells)"
            )
    if bad:
        raise ParityError(
            f"{where}: ONNX export differs from the torch network beyond the tolerance "
            f"(max abs {max_abs:g}, label F1@0.5 >= {min_f1:g}): " + "; ".join(bad)
        )
