"""Write a labeled split (images/ + labels/) as COCO JSON with RLE masks.

Only for tools that need COCO files: cellfuse's Mask R-CNN reads the layout directly.

    python tools/convert_to_coco.py ../shared/data/dsb2018/train work/coco/train.json
"""

import argparse
import json
import logging
import sys

from cellfuse.io import atomic_write
from cellfuse.layout import list_samples
from teachers.mmdet_plugins import samples_to_coco


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("split", help="split folder with images/ and labels/")
    ap.add_argument("out", help="output JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    coco = samples_to_coco(list_samples(args.split, require_labels=True))
    with atomic_write(args.out, "w") as fh:
        json.dump(coco, fh)
    logging.info("%s: %d images, %d cells", args.out, len(coco["images"]), len(coco["annotations"]))


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
