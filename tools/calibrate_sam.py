"""Calibrate a trained SAM checkpoint's mask threshold on the training images.

``python tools/calibrate_sam.py CONFIG --checkpoint work/teachers/sam_tiny_cpu/best.pth``

Training does this itself at its end (``teacher.train.calibrate_images``); this tool does it
for a checkpoint trained before, or again with more images. The threshold is chosen with
ground-truth centroids as prompts on the config's *training* images (never val) and written
into the checkpoint, which every later ``load`` picks up.
"""

import argparse
import logging

from teachers import load_teacher
from teachers.sam_train import calibrate_mask_threshold, store_mask_threshold
from teachers.train import load_config, resolve_splits


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
    tcfg = dict(cfg.teacher.to_dict(), mask_threshold=0.0)
    teacher = load_teacher(tcfg, args.checkpoint)
    train, _ = resolve_splits(cfg.data)
    thr, scores = calibrate_mask_threshold(teacher, train, max_images=args.images)
    store_mask_threshold(args.checkpoint, thr, scores)
    print(f"{args.checkpoint}: mask_threshold = {thr} (train F1@0.75 {scores})")


if __name__ == "__main__":
    main()
