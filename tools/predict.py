"""Segment images with the student: ``python tools/predict.py (--checkpoint CKPT | --onnx MODEL)
--input DIR_OR_FILE --out DIR [--tile N --overlap N --batch N --threads N --diameter D]``.

Writes ``DIR/<id>_label.tiff`` per input image (any size: read and predicted tile by tile)
and ``DIR/predict.json`` (per-image cells, scale, seconds, or the error; s/Mpx overall). An
image that cannot be read or predicted is recorded with its error and the others go on; a
re-run resumes per image (``DIR/predict.jsonl``). Exit status: 0 all predicted, 1 some images
failed (each listed as ``error: <file>: <what>``), 2 nothing could run (no images, bad model).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from cellfuse.errors import LayoutError
from cellfuse.layout import list_images
from student.batch import model_key, predict_files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="student training checkpoint (.pth)")
    src.add_argument("--onnx", help="exported student (.onnx with its .json sidecar)")
    ap.add_argument("--input", required=True, help="image file or folder (or folder/images)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tile", type=int, help="tile side at the network scale (px)")
    ap.add_argument("--overlap", type=int, help="tile overlap at the network scale (px)")
    ap.add_argument("--batch", type=int, help="tiles per network call")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    ap.add_argument("--diameter", type=float, help="cell diameter in px (default: measured)")
    ap.add_argument("--device", default="auto", help="torch device for --checkpoint")
    ap.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="for --checkpoint: auto = onnxruntime on CPU (faster), torch on GPU",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    src_path = Path(args.input)
    if src_path.is_file():
        files = [src_path]
    elif src_path.is_dir():
        files = list_images(src_path / "images" if (src_path / "images").is_dir() else src_path)
        if not files:
            raise LayoutError(f"{src_path}: no image files to predict")
    else:
        raise LayoutError(f"{src_path}: no such file or folder")
    overrides = {k: getattr(args, k) for k in ("tile", "overlap", "batch", "diameter")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    from student.predictor import StudentPredictor

    if args.checkpoint:
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        pred = StudentPredictor.from_checkpoint(
            args.checkpoint,
            device=args.device,
            backend=args.backend,
            threads=args.threads,
            **overrides,
        )
    else:
        pred = StudentPredictor.from_onnx(args.onnx, threads=args.threads, **overrides)

    model = args.checkpoint or args.onnx
    key = model_key(model, {**overrides, "backend": args.backend})
    summary = predict_files(
        pred, files, args.out, key=key, progress=False, tile_progress=not args.no_progress
    )
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "failures")}))
    for error in summary["failures"].values():
        print(f"error: {error}", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
