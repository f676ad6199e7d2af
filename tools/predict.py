"""Segment images with the student: ``python tools/predict.py (--checkpoint CKPT | --onnx MODEL)
--input DIR_OR_FILE --out DIR [--tile N --overlap N --batch N --threads N --diameter D]``.

Writes ``DIR/<id>_label.tiff`` per input image (any size: read and predicted tile by tile)
and ``DIR/predict.json`` (per-image cells, scale, seconds; s/Mpx overall); ``--outputs``
adds the label pyramid, the per-cell CSV and the QuPath GeoJSON (``cellfuse.census``).
"""

import argparse
import json
import logging
import time
from pathlib import Path

from cellfuse.census import OUTPUT_FORMATS, slide_outputs
from cellfuse.io import atomic_write_text
from cellfuse.layout import list_images


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
    ap.add_argument(
        "--outputs",
        default="tiff",
        help="comma-separated, per image: tiff (<id>_label.tiff), ome-tiff (<id>_label.ome.tif, "
        "tiled pyramid), csv (<id>_cells.csv, per-cell table), geojson (<id>_cells.geojson, "
        "QuPath cell polygons)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    outputs = args.outputs.split(",")
    if not outputs or set(outputs) - set(OUTPUT_FORMATS):
        ap.error(f"--outputs: comma-separated values from {', '.join(OUTPUT_FORMATS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

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

    src_path = Path(args.input)
    if src_path.is_file():
        files = [src_path]
    else:
        files = list_images(src_path / "images" if (src_path / "images").is_dir() else src_path)
    out = Path(args.out)
    rows, total_px, t_all = [], 0, time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        info = pred.predict_file(f, out / f"{f.stem}_label.tiff", progress=not args.no_progress)
        dt = time.perf_counter() - t0
        info.update(slide_outputs(f, out / f"{f.stem}_label.tiff", outputs))
        info["outputs_seconds"] = round(time.perf_counter() - t0 - dt, 3)
        total_px += info["shape"][0] * info["shape"][1]
        rows.append(dict(id=f.stem, **info, seconds=round(dt, 3)))
        logging.info("%s: %d cells in %.2f s", f.name, info["n_cells"], dt)
    seconds = time.perf_counter() - t_all
    summary = dict(
        images=len(rows),
        seconds=round(seconds, 2),
        s_per_mpx=round(seconds / max(total_px / 1e6, 1e-9), 3),
        rows=rows,
    )
    atomic_write_text(out / "predict.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
