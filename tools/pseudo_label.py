"""Pseudo-label unlabeled images with a teacher ensemble (Ray-parallel, resumable).

    python tools/pseudo_label.py configs/ensemble/pseudo_cpu.py \
        [--images DIR] [--out DIR] [--address auto|HOST:PORT] [--num-workers N] \
        [--cfg-options fusion.hi=0.7 ...]

Without ``--address`` (and no ``$RAY_ADDRESS``) a local Ray is started with N CPUs;
``--num-workers 0`` runs serially without Ray. A re-run skips finished images. Prints the
run summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import DictAction  # noqa: E402

from ensemble.pseudolabel import run_pseudo_label  # noqa: E402
from teachers.train import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("config")
    ap.add_argument("--images", help="image folder (default: <data.root>/<data.unlabeled>)")
    ap.add_argument("--out", help="output folder (default: work/pseudo/<config stem>)")
    ap.add_argument(
        "--address",
        help="Ray cluster to join: 'auto' or HOST:PORT (default: $RAY_ADDRESS or local)",
    )
    ap.add_argument("--num-workers", type=int, help="Ray workers (0 = serial, no Ray)")
    ap.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, k=v")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.cfg_options)
    images = args.images
    if images is None:
        data = cfg.get("data") or {}
        if "root" not in data or "unlabeled" not in data:
            ap.error("--images is required when the config has no data.root/data.unlabeled")
        images = str(Path(data["root"]) / data["unlabeled"])
    out = args.out or cfg.get("out_dir") or f"work/pseudo/{Path(args.config).stem}"
    summary = run_pseudo_label(
        cfg,
        images,
        out,
        address=args.address,
        num_workers=args.num_workers,
        progress=False if args.no_progress else None,
    )
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 3


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
