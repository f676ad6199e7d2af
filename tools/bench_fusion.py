"""Time :func:`cellfuse.fusion.fuse` on a synthetic image: ``python tools/bench_fusion.py``.

The image (default 2000x2000, 5,000 discs) is segmented by three jittered synthetic
teachers: each moves every disc by up to 1.5 px, changes its radius by up to 1 px, misses
5 % of the cells and adds 3 % false ones. Prints one JSON line: seconds per fusion (best of
``--repeat``), cells in and out, and the F1@0.5 of each teacher and of the fused labels
against the clean discs (the fused labels keep only the confident cells, so their
precision is the number to watch).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cellfuse.fusion import fuse  # noqa: E402
from cellfuse.instances import Instances  # noqa: E402


def paint_discs(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """HxW uint16 labels: disc ``k`` (centre ``centres[k]`` (y, x), radius ``radii[k]``) -> k+1.

    Later discs win overlaps. Each disc is painted on its own bounding box.
    """
    labels = np.zeros(shape, np.uint16 if len(radii) < 65535 else np.uint32)
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True)):
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, shape[0])
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, shape[1])
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        labels[y0:y1, x0:x1][disc] = k + 1
    return labels


def synthetic_teachers(
    shape: tuple[int, int] = (2000, 2000),
    n_cells: int = 5000,
    n_teachers: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, list[Instances]]:
    """Clean disc labels and ``n_teachers`` noisy Instances of them (see module docstring)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_cells)))
    step = np.array(shape) / side
    gy, gx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    centres = (np.stack([gy.ravel(), gx.ravel()], 1)[:n_cells] + 0.5) * step
    centres += rng.uniform(-0.15, 0.15, centres.shape) * step
    radii = rng.uniform(0.2, 0.34, n_cells) * step.min()
    truth = paint_discs(shape, centres, radii)
    preds = []
    for _ in range(n_teachers):
        keep = rng.random(n_cells) > 0.05
        n_false = int(0.03 * n_cells)
        c = np.concatenate(
            [
                centres[keep] + rng.uniform(-1.5, 1.5, (int(keep.sum()), 2)),
                rng.uniform(0, 1, (n_false, 2)) * np.array(shape),
            ]
        )
        r = np.concatenate(
            [radii[keep] + rng.uniform(-1, 1, int(keep.sum())), rng.uniform(3, 6, n_false)]
        )
        scores = np.concatenate(
            [rng.uniform(0.7, 1.0, int(keep.sum())), rng.uniform(0.3, 0.7, n_false)]
        )
        preds.append(Instances.from_labels(paint_discs(shape, c, r), scores))
    return truth, preds


def bench(
    shape: tuple[int, int] = (2000, 2000), n_cells: int = 5000, repeat: int = 3, seed: int = 0
) -> dict:
    """Fuse three synthetic teachers ``repeat`` times; return timings and quality as a dict."""
    from cellfuse.metric import evaluate_image

    truth, preds = synthetic_teachers(shape, n_cells, 3, seed)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fuse(preds, [0.8, 0.75, 0.7])
        times.append(time.perf_counter() - t0)

    def score(labels: np.ndarray, key: str) -> float:
        return round(evaluate_image(truth, labels, (0.5,))["scores"][0.5][key], 4)

    return {
        "shape": list(shape),
        "n_cells_true": int(truth.max()),
        "n_cells_teachers": [q.n for q in preds],
        "n_cells_fused": res.instances.n,
        "ignore_fraction": round(float(res.ignore.mean()), 4),
        "seconds": round(min(times), 3),
        "f1@0.5_teachers": [score(q.labels, "f1") for q in preds],
        "f1@0.5_fused": score(res.instances.labels, "f1"),
        "precision@0.5_teachers": [score(q.labels, "precision") for q in preds],
        "precision@0.5_fused": score(res.instances.labels, "precision"),
        "stats": res.stats,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=2000, help="image side (px)")
    ap.add_argument("--cells", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(bench((args.size, args.size), args.cells, args.repeat)))
    return 0


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    raise SystemExit(run_tool(main))
