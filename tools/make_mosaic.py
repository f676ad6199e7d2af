"""Build a large RGB mosaic of labeled images (a synthetic whole slide) and its labels.

``python tools/make_mosaic.py --split ../shared/data/dsb2018/val --size 10000 --out work/mosaic``

Images of one modality (default fluorescence) whose median cell diameter lies in
``--diameter-range`` are packed in shelves (rows), repeated in random order with random 90-degree
rotations and flips until the canvas is full; nothing is cut, gaps stay black. Writes
``<out>/mosaic.tif`` (tiled 512x512, zlib, BigTIFF when needed) and
``<out>/mosaic_label.tiff`` (uint32 ids, tiled), plus ``mosaic.json`` (sources, cells).

``--paste DIR`` also writes ``<out>/pasted/mosaic_label.tiff``: the per-image predictions
``DIR/<id>_label.tiff`` of the same sources pasted at the same places (same turns and
flips), the reference a slide prediction of the mosaic is compared with.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import tifffile

from cellfuse.io import read_image, read_labels, to_rgb, write_labels
from cellfuse.layout import list_samples
from cellfuse.modality import modality
from cellfuse.preprocess import median_diameter


def _normalise_u8(img: np.ndarray) -> np.ndarray:
    rgb = to_rgb(img)
    if rgb.dtype == np.uint8:
        return rgb
    lo, hi = np.percentile(rgb, [0.5, 99.9])
    return (np.clip((rgb - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", default="../shared/data/dsb2018/val")
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--out", default="work/mosaic")
    ap.add_argument("--modality", default="fluorescence")
    ap.add_argument("--diameter-range", type=float, nargs=2, default=(10.0, 30.0))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paste", help="folder of per-image predictions <id>_label.tiff to paste")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rng = np.random.default_rng(args.seed)
    pool = []
    for s in list_samples(args.split, require_labels=True):
        img = read_image(s.image)
        lab = read_labels(s.label, shape=img.shape[:2])
        d = median_diameter(lab)
        if modality(img) == args.modality and args.diameter_range[0] <= d <= args.diameter_range[1]:
            pool.append((s.id, _normalise_u8(img), lab.astype(np.uint32)))
    if not pool:
        raise SystemExit("no image matches the modality and diameter range")
    logging.info("%d source images", len(pool))
    n = args.size
    canvas = np.zeros((n, n, 3), np.uint8)
    labels = np.zeros((n, n), np.uint32)
    pasted = np.zeros((n, n), np.uint32) if args.paste else None
    pasted_next = 1
    y = x = shelf = 0
    next_id, placed = 1, []
    while True:
        sid, img, lab = pool[rng.integers(len(pool))]
        k = int(rng.integers(4))
        img, lab = np.rot90(img, k), np.rot90(lab, k)
        flipped = rng.random() < 0.5
        if flipped:
            img, lab = img[:, ::-1], lab[:, ::-1]
        h, w = lab.shape
        if x + w > n:
            y, x, shelf = y + shelf, 0, 0
        if y + h > n:
            break
        canvas[y : y + h, x : x + w] = img
        ids = np.unique(lab)
        ids = ids[ids > 0]
        lut = np.zeros(int(lab.max()) + 1, np.uint32)
        lut[ids] = np.arange(next_id, next_id + ids.size, dtype=np.uint32)
        labels[y : y + h, x : x + w] = lut[lab]
        next_id += ids.size
        if pasted is not None:
            source_shape = (h, w) if k % 2 == 0 else (w, h)  # before the turns
            pred = read_labels(Path(args.paste) / f"{sid}_label.tiff", shape=source_shape)
            pred = np.rot90(pred, k)
            if flipped:
                pred = pred[:, ::-1]
            pred = pred.astype(np.uint32)
            pasted[y : y + h, x : x + w] = np.where(pred > 0, pred + pasted_next - 1, 0)
            pasted_next += int(pred.max())
        placed.append(sid)
        x, shelf = x + w, max(shelf, h)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        out / "mosaic.tif",
        canvas,
        tile=(512, 512),
        compression="zlib",
        photometric="rgb",
        bigtiff=canvas.nbytes > 2**31,
        metadata=None,
    )
    write_labels(out / "mosaic_label.tiff", labels)
    if pasted is not None:
        (out / "pasted").mkdir(exist_ok=True)
        write_labels(out / "pasted" / "mosaic_label.tiff", pasted)
    info = dict(size=n, images=len(placed), sources=sorted(set(placed)), cells=next_id - 1)
    (out / "mosaic.json").write_text(json.dumps(info, indent=2) + "\n")
    logging.info("mosaic: %d images, %d cells", len(placed), next_id - 1)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
