"""Calibrate a trained SAM checkpoint's mask threshold and inference zoom on the training images.

``python tools/calibrate_sam.py CONFIG --checkpoint work/teachers/sam_tiny_cpu/best.pth``

Training does this itself at its end (``teacher.train.calibrate_images``); this tool does it
for a checkpoint trained before, or again with more images. The threshold is chosen with
ground-truth cells as prompts on the config's *training* images (never val), then the zoom
(cell diameter at inference) likewise; both are written into the checkpoint, which every later
``load`` picks up (a value set in the config wins).
"""

import argparse
import logging
import sys

from cellfuse.config import load_config
from cellfuse.splits import resolve_splits
from teachers import load_teacher
from teachers.sam_train import calibrate_and_store, prompt_noise


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("config")
    ap.add_argument("--checkpoint", required=True, help="cellfuse SAM checkpoint (best.pth)")
    ap.add_argument("--images", type=int, default=40, help="training images to use (evenly spaced)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    tcfg = cfg.teacher.to_dict()
    teacher = load_teacher(dict(tcfg, mask_threshold=0.0, infer_diameter=None), args.checkpoint)
    teacher.mask_threshold = tcfg.get("mask_threshold")  # calibrated, unless the config pins it
    teacher.infer_diameter = teacher.nominal_diameter  # the zoom is calibrated at the threshold
    noise = prompt_noise(tcfg.get("train"))
    train, _ = resolve_splits(cfg.data)
    found = calibrate_and_store(teacher, train, args.checkpoint, args.images, **noise)
    print(f"{args.checkpoint}: {found}")


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
