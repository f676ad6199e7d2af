"""Build a synthetic whole slide of any size from labeled images, band by band, never
holding it in memory: a tiled, zlib-compressed, pyramidal OME-TIFF and (``--labels``) its
uint32 label pyramid with globally unique ids.

``python tools/make_slide.py --split data/demo/train --size 40000 --out /work/slides/demo40k --labels``

The images (any modality and scale; converted to RGB uint8 as ``make_mosaic.py`` does) are
packed in shelves (rows), repeated in random order with random 90-degree rotations and
flips until the canvas is full; nothing is cut, gaps stay black. Writes ``<out>/slide.ome.tif``,
``<out>/slide_label.ome.tif`` and ``<out>/slide.json`` (sizes, cells, seconds). Memory is
one band of ``tile`` rows per pyramid level plus the source images.
"""

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np

from cellfuse.io import normalize_image, read_image, read_labels, to_rgb
from cellfuse.layout import list_samples
from cellfuse.pyramid import write_label_pyramid, write_pyramid


def load_pool(split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB uint8 image, uint32 labels 0..n) of every labeled image of a split."""
    pool = []
    for s in list_samples(split, require_labels=True):
        img = read_image(s.image)
        lab = read_labels(s.label, shape=img.shape[:2])
        ids = np.unique(lab)
        lut = np.zeros(int(lab.max()) + 1, np.uint32)
        lut[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1, dtype=np.uint32)
        rgb = to_rgb(img)
        if rgb.dtype != np.uint8:  # one pair of percentiles for all channels, as make_mosaic
            rgb = (normalize_image(rgb, 0.5, 99.9, per_channel=False) * 255).astype(np.uint8)
        pool.append((rgb, lut[lab]))
    return pool


def plan(pool, size: int, seed: int, tries: int = 50) -> list[list[tuple]]:
    """Shelves of placements ``(y, x, source, quarter turns, flip, first id - 1)``.

    A drawn image that does not fit the shelf's remaining width (or the canvas's remaining
    height) is skipped; after ``tries`` misses in a row the shelf is closed, and the
    canvas is full when a new shelf gets ``tries`` misses.
    """
    rng = np.random.default_rng(seed)
    shelves, shelf, y, x, height, next_id, misses = [], [], 0, 0, 0, 0, 0
    while True:
        src = int(rng.integers(len(pool)))
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        h, w = pool[src][1].shape[::-1] if k % 2 else pool[src][1].shape
        if x + w > size or y + h > size:
            misses += 1
            if misses < tries:
                continue
            if not shelf:
                break
            shelves.append(shelf)
            shelf, y, x, height, misses = [], y + height, 0, 0, 0
            continue
        shelf.append((y, x, src, k, flip, next_id))
        next_id += int(pool[src][1].max())
        x, height, misses = x + w, max(height, h), 0
    return shelves


def _placed(pool, src: int, k: int, flip: bool, which: int) -> np.ndarray:
    a = np.rot90(pool[src][which], k)
    return a[:, ::-1] if flip else a


def bands(pool, shelves, size: int, band: int, labels: bool):
    """Row bands of the slide (``labels``: of its label image, ids offset per placement)."""
    for y0 in range(0, size, band):
        y1 = min(y0 + band, size)
        out = np.zeros(
            (y1 - y0, size) if labels else (y1 - y0, size, 3), np.uint32 if labels else np.uint8
        )
        for shelf in shelves:
            if not shelf or shelf[0][0] >= y1:
                continue
            for y, x, src, k, flip, first in shelf:
                part = _placed(pool, src, k, flip, 1 if labels else 0)
                lo, hi = max(y0, y), min(y1, y + part.shape[0])
                if lo >= hi:
                    continue
                piece = part[lo - y : hi - y]
                if labels:
                    piece = np.where(piece > 0, piece + np.uint32(first), 0)
                out[lo - y0 : hi - y0, x : x + part.shape[1]] = piece
        yield out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", default="data/demo/train", help="labeled split (images/, labels/)")
    ap.add_argument("--size", type=int, default=40000, help="side of the square slide (px)")
    ap.add_argument("--out", default="/work/slides/demo40k")
    ap.add_argument("--labels", action="store_true", help="also write the label pyramid")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pool = load_pool(args.split)
    shelves = plan(pool, args.size, args.seed)
    placements = sum(len(s) for s in shelves)
    cells = max((p[5] + int(pool[p[2]][1].max()) for s in shelves for p in s), default=0)
    logging.info("%d source images, %d placements, %d cells", len(pool), placements, cells)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = (args.size, args.size)
    info = dict(size=args.size, sources=len(pool), placements=placements, cells=cells)
    t = time.perf_counter()
    img = write_pyramid(
        out / "slide.ome.tif",
        bands(pool, shelves, args.size, args.tile, False),
        shape,
        np.uint8,
        samples=3,
        tile=args.tile,
        name="slide",
    )
    info["image"] = dict(
        bytes=img["bytes"], levels=img["levels"], seconds=round(time.perf_counter() - t, 1)
    )
    logging.info("image: %s", info["image"])
    if args.labels:
        t = time.perf_counter()
        lab = write_label_pyramid(
            out / "slide_label.ome.tif",
            bands(pool, shelves, args.size, args.tile, True),
            shape,
            tile=args.tile,
            name="slide labels",
        )
        info["labels"] = dict(bytes=lab["bytes"], seconds=round(time.perf_counter() - t, 1))
        logging.info("labels: %s", info["labels"])
    info["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / "slide.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
