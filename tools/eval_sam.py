"""Score SAM as a refiner: prompted by another teacher's cells (or the truth) vs that teacher.

    python tools/eval_sam.py CONFIG --checkpoint CKPT --split ../shared/data/dsb2018/val \
        --prompts work/pseudo/val/cache/flowunet [--prompts gt] [--json OUT]

``--prompts`` is a folder of label images ``<id>_label.tiff`` (e.g. a teacher's cached outputs
from ``tools/pseudo_label.py``) or ``gt`` for the true cells (the upper bound; for a teacher with
``mask_prompts``, imperfect copies of the true cells as in its validation, since the true masks
would answer themselves). For each
prompt source it prints the mean per-image challenge F1@0.5/0.75 of SAM prompted with those
cells' centroids and of the prompting cells themselves, and SAM's seconds per megapixel.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from cellfuse.app.cli import print_json
from cellfuse.config import load_config
from cellfuse.instances import Instances
from cellfuse.io import read_image, read_labels
from cellfuse.layout import find_label, list_samples
from cellfuse.metric import evaluate_image
from teachers import load_teacher


def evaluate_prompts(teacher, samples, prompts: str) -> dict:
    """For ``prompts == "gt"`` a mask-prompt teacher gets imperfect copies of the true cells,
    with its validation's noise (``truth_prompts``, ``prompt_noise``)."""
    from teachers.sam_train import prompt_noise, truth_prompts

    noise = prompt_noise(teacher.train_cfg)
    f = {"sam": [], "prompts": []}
    secs = mpx = 0.0
    rng = np.random.default_rng(0)
    for s in samples:
        image = read_image(s.image)
        truth = read_labels(s.label, shape=image.shape[:2])
        if prompts == "gt":
            cells = truth_prompts(teacher, truth, rng, **noise)
        else:
            path = find_label(Path(prompts), s.id)
            if path is None:
                raise FileNotFoundError(f"{prompts}: no label image for {s.id}")
            cells = read_labels(path, shape=image.shape[:2])
        t0 = time.perf_counter()
        out = teacher.predict_with_prompts(image, Instances.from_labels(cells))
        secs += time.perf_counter() - t0
        mpx += image.shape[0] * image.shape[1] / 1e6
        for name, lab in (("sam", out.labels), ("prompts", cells)):
            sc = evaluate_image(truth, lab, (0.5, 0.75))["scores"]
            f[name].append((sc[0.5]["f1"], sc[0.75]["f1"]))
    row = {}
    for name, v in f.items():
        m = np.mean(v, axis=0) if v else (0.0, 0.0)
        row[name] = {"f1_50": round(float(m[0]), 4), "f1_75": round(float(m[1]), 4)}
    row["sam_s_per_mpx"] = round(secs / max(mpx, 1e-9), 3)
    row["n_images"] = len(samples)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("config")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--split", required=True, help="labeled folder (images/ + labels/)")
    ap.add_argument("--prompts", action="append", required=True, help="label folder or 'gt'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    tcfg = load_config(args.config).teacher.to_dict()
    teacher = load_teacher(tcfg, args.checkpoint)
    samples = list_samples(args.split, require_labels=True)
    result = {
        "checkpoint": args.checkpoint,
        "mask_threshold": float(teacher.sam.mask_threshold),
        "sources": {p: evaluate_prompts(teacher, samples, p) for p in args.prompts},
    }
    return print_json(result, args.json)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
