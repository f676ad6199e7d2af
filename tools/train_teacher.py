"""Train a teacher from its config: ``python tools/train_teacher.py CONFIG [--work-dir DIR]``.

The config's ``teacher.type`` picks the teacher (flowunet, sam, maskrcnn, ...).
"""

import argparse
import logging
from pathlib import Path

from mmengine.config import DictAction

from teachers.train import load_config, train_teacher


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config")
    ap.add_argument("--work-dir", help="default: work/teachers/<config stem>")
    ap.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys, k=v")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or cfg.get("work_dir") or f"work/teachers/{Path(args.config).stem}"
    train_teacher(cfg, work_dir, resume=args.resume)


if __name__ == "__main__":
    main()
