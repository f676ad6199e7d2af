"""Export a trained student: ``python tools/export.py CKPT --out DIR [--exporter auto|dynamo|torchscript]``.

Writes ``DIR/student.onnx`` + ``DIR/student.json`` (preprocessing/post-processing sidecar),
``DIR/student.pt2`` (torch.export program) and ``DIR/student_export.json`` (parity report:
max abs difference of network outputs on a random input and on ``--check`` images, and
F1 agreement of the final labels).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from cellfuse.io import read_image
from cellfuse.layout import list_images
from student.export import export_student


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--out", default="work/export")
    ap.add_argument("--name", default="student")
    ap.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"])
    ap.add_argument("--no-pt2", action="store_true", help="skip the torch.export program")
    ap.add_argument("--check", help="image file or folder for the parity check (first 3 images)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    images = []
    if args.check:
        p = Path(args.check)
        files = [p] if p.is_file() else list_images(p)[:3]
        images = [read_image(f) for f in files]
    result = export_student(
        args.checkpoint,
        args.out,
        name=args.name,
        exporter=args.exporter,
        program=not args.no_pt2,
        check_images=images,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
