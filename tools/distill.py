"""Distil the student: ``python tools/distill.py CONFIG [--work-dir DIR] [--cfg-options k=v] [--resume]``.

The config's ``student`` dict names the variant and the pseudo-label folder
(``student.pseudo``); ``--cfg-options student.pseudo=None`` trains the labeled-only ablation.
"""

import argparse
import logging
from pathlib import Path

from mmengine.config import DictAction

from student.distill import distill
from teachers.train import load_config


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config")
    ap.add_argument("--work-dir", help="default: work/student/<config stem>")
    ap.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, k=v")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or cfg.get("work_dir") or f"work/student/{Path(args.config).stem}"
    distill(cfg, work_dir, resume=args.resume)


if __name__ == "__main__":
    main()
