"""Build the embedded demo data set (data/demo) from a DSB2018 copy in the NeurIPS layout.

Kept in the repo so anyone can see exactly how the subset was drawn:
    python tools/make_demo_data.py --src ../shared/data/dsb2018 --out data/demo
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cellfuse.modality import MODALITIES, modality

# per split: how many images of each modality (fluorescence, stained, brightfield)
PLAN = {
    "train": ("train", (20, 7, 3)),
    "unlabeled": ("unlabeled", (30, 8, 2)),
    "test": ("val", (10, 4, 1)),
}
MAX_PIXELS = 400 * 400  # small images keep the demo run within minutes on 2 cores


def pick(src: Path, counts: tuple[int, ...], rng: np.random.Generator) -> list[Path]:
    by_mod: dict[str, list[tuple[int, Path]]] = {m: [] for m in MODALITIES}
    for f in sorted((src / "images").glob("*.png")):
        im = np.asarray(Image.open(f))
        by_mod[modality(im)].append((im.shape[0] * im.shape[1], f))
    chosen = []
    for m, k in zip(MODALITIES, counts, strict=False):
        small = [f for a, f in by_mod[m] if a <= MAX_PIXELS]
        pool = small if len(small) >= k else [f for _, f in sorted(by_mod[m])]
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    return chosen


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=Path("../shared/data/dsb2018"))
    ap.add_argument("--out", type=Path, default=Path("data/demo"))
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for split, (src_split, counts) in PLAN.items():
        files = pick(args.src / src_split, counts, rng)
        img_dir = args.out / split / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, img_dir / f.name)
            label = args.src / src_split / "labels" / f"{f.stem}_label.tiff"
            if split == "train":
                (args.out / "train" / "labels").mkdir(exist_ok=True)
                shutil.copy2(label, args.out / "train" / "labels" / label.name)
            elif split == "test":  # kept apart from the input, for evaluation only
                (args.out / "test_labels").mkdir(exist_ok=True)
                shutil.copy2(label, args.out / "test_labels" / label.name)
        if split == "test":
            with open(args.out / "sample_submission.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["image_id", "predicted_mask_path"])
                for f in files:
                    w.writerow([f.stem, f"predictions/{f.stem}_label.tiff"])


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
