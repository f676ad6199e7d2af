"""Inference speed, side by side on the same images: student (torch and ONNX) vs teachers.

``python tools/bench_student.py --student CKPT [--flowunet CKPT] --images DIR --n 20 --threads 2
--out bench.json``

Every model segments the same in-memory images (read once, before timing) through its public
``predict``; s/Mpx = wall seconds / megapixels of the original images, post-processing
included. For the student, the share of time spent in the network is reported too. Each
model runs once on the first image before timing (warm-up). F1@0.5 against the labels is
reported when the images have labels.
"""

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from cellfuse.io import atomic_write_text, read_image, read_labels
from cellfuse.layout import list_samples
from cellfuse.metric import evaluate_image


class _TimedBackend:
    def __init__(self, backend):
        self.backend, self.stride, self.seconds = backend, backend.stride, 0.0

    def __call__(self, x):
        t0 = time.perf_counter()
        y = self.backend(x)
        self.seconds += time.perf_counter() - t0
        return y


def _run(name, predict, images, truths):
    predict(images[0])  # warm-up
    f1s, t0 = [], time.perf_counter()
    preds = [predict(img) for img in images]
    seconds = time.perf_counter() - t0
    for inst, truth in zip(preds, truths, strict=True):
        if truth is not None:
            f1s.append(evaluate_image(truth, inst.labels, (0.5,))["scores"][0.5]["f1"])
    mpx = sum(img.shape[0] * img.shape[1] for img in images) / 1e6
    row = dict(
        model=name,
        seconds=round(seconds, 3),
        mpx=round(mpx, 3),
        s_per_mpx=round(seconds / mpx, 3),
        f1_50=round(float(np.mean(f1s)), 4) if f1s else None,
        cells=int(sum(p.n for p in preds)),
    )
    logging.info("%s", row)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", help="student checkpoint (default: random flow_s)")
    ap.add_argument("--variant", default="flow_s", help="variant when no --student")
    ap.add_argument("--flowunet", help="flow U-Net teacher checkpoint (skipped when absent)")
    ap.add_argument("--images", default="../shared/data/dsb2018/val")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="models to skip")
    ap.add_argument("--out", default="work/bench_student.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    samples = list_samples(args.images, require_labels=False)[: args.n]
    images = [read_image(s.image) for s in samples]
    truths = [
        read_labels(s.label, shape=i.shape[:2]) if s.label else None
        for s, i in zip(samples, images, strict=True)
    ]

    from student.export import export_student
    from student.model import build_student
    from student.predictor import StudentPredictor

    rows = []
    if args.student:
        pred = StudentPredictor.from_checkpoint(args.student, device="cpu", backend="torch")
        ckpt = args.student
    else:
        pred = StudentPredictor(build_student(args.variant), device="cpu")
        ckpt = None
    timed = _TimedBackend(pred.backend)
    pred.backend = timed
    row = _run("student_torch", pred.predict, images, truths)
    row["network_share"] = round(timed.seconds / max(row["seconds"], 1e-9), 3)  # incl. warm-up
    rows.append(row)
    if ckpt and "onnx" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            res = export_student(ckpt, tmp, program=False)
            onnx = StudentPredictor.from_onnx(res["onnx"], threads=args.threads)
            rows.append(_run("student_onnx", onnx.predict, images, truths))
    if args.flowunet and Path(args.flowunet).is_file() and "flowunet" not in args.skip:
        from teachers.flowunet import FlowUNetTeacher

        t = FlowUNetTeacher(num_threads=args.threads, device="cpu")
        t.load(Path(args.flowunet))
        torch.set_num_threads(args.threads)
        rows.append(_run("flowunet_teacher", t.predict, images, truths))
    if "classical" not in args.skip:
        from teachers.classical import ClassicalTeacher

        rows.append(_run("classical_teacher", ClassicalTeacher().predict, images, truths))
    result = dict(
        images=str(args.images),
        n=len(images),
        threads=args.threads,
        student=ckpt or f"random {args.variant}",
        flowunet=args.flowunet,
        rows=rows,
    )
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
