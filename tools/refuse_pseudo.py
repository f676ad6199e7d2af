"""Fuse a pseudo-label run's cached teacher outputs again with a subset of its teachers and
score the result against truth (analysis: which teachers should vote)::

    python tools/refuse_pseudo.py PSEUDO_DIR TRUTH_DIR [--teachers flowunet ...] \
        [--config configs/ensemble/scarce.py] [--json OUT]

``--teachers`` keeps the cached outputs of the given teachers, each with its test-time
views (``flowunet`` keeps ``flowunet@hflip`` ...; see ensemble/quality.py
``refuse_from_cache``); the weights are the
ones the run recorded in its manifest, the fusion parameters the config's ``fusion``. Prints
F1 of the re-fused confident cells against the truth, against the true cells outside the new
ignore mask (``seen``), and the kept share of clusters. Only images with a truth file count.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cellfuse.app.cli import print_json
from cellfuse.config import load_config
from cellfuse.errors import ConfigError, LayoutError
from cellfuse.fusion import FusionParams
from cellfuse.io import read_labels
from cellfuse.metric import evaluate_image
from ensemble.manifest import Manifest
from ensemble.quality import (
    THRESHOLDS,
    keeps_teacher,
    refuse_from_cache,
    seen_truth,
    summarise,
)


def refuse_quality(pseudo_dir: Path, truth_dir: Path, params: FusionParams, teachers=None) -> dict:
    entries = Manifest(pseudo_dir / "manifest.jsonl").latest()
    full, seen, kept, clusters, used = [], [], 0, 0, set()
    truths = sorted(truth_dir.glob("*_label.tiff"))
    if not truths:  # a wrong folder would otherwise score 0 images as F1 0.0
        raise LayoutError(f"{truth_dir}: no *_label.tiff truth files")
    for tpath in truths:
        iid = tpath.name[: -len("_label.tiff")]
        if iid not in entries:
            raise LayoutError(f"{iid}: not in {pseudo_dir / 'manifest.jsonl'}")
        res = refuse_from_cache(pseudo_dir, entries[iid], params, teachers)
        if res is None:
            raise ConfigError(f"{iid}: no cached output of {teachers} in {pseudo_dir / 'cache'}")
        used.update(n for n in entries[iid]["teachers"] if keeps_teacher(n, teachers))
        truth = read_labels(tpath)
        full.append(evaluate_image(truth, res.instances.labels, THRESHOLDS)["scores"])
        seen.append(
            evaluate_image(seen_truth(truth, res.ignore), res.instances.labels, THRESHOLDS)[
                "scores"
            ]
        )
        kept += res.stats.get("confident", 0)
        clusters += res.stats.get("clusters", 0)
    return {
        "n_images": len(full),
        "teachers": sorted(used),
        "fused": {
            **summarise(full),
            "kept_fraction": round(kept / clusters, 4) if clusters else 0.0,
        },
        "fused_seen": summarise(seen),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("pseudo_dir", type=Path)
    ap.add_argument("truth_dir", type=Path)
    ap.add_argument("--teachers", nargs="+", help="teacher names to keep (default: all)")
    ap.add_argument("--config", default="configs/ensemble/scarce.py", help="fusion parameters")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    params = FusionParams.from_config(load_config(args.config))
    return print_json(
        refuse_quality(args.pseudo_dir, args.truth_dir, params, args.teachers), args.json
    )


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    raise SystemExit(run_tool(main))
