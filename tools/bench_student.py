"""Inference speed, side by side on the same images: student (torch and ONNX) vs teachers.

``python tools/bench_student.py --student CKPT [--flowunet CKPT] [--ensemble CONFIG] --images DIR
--n 20 --threads 2 --out bench.json``

``--ensemble`` times the whole teacher ensemble of a pseudo-label config (every teacher, the
refiner prompted by the others, and the fusion) on the same images, so the student's speed-up
over the ensemble is a ratio measured in one run.

Every model segments the same in-memory images (read once, before timing) through its public
``predict``; s/Mpx = wall seconds / megapixels of the original images, post-processing
included. For the student, the share of time spent in the network is reported too. Each
model runs once on the first image before timing (warm-up). F1@0.5 against the labels is
reported when the images have labels.
"""

import argparse
import json
import logging
import sys
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


def ensemble_predictor(config: str, threads: int, out_dir: str):
    """``image -> Instances`` running a pseudo-label config's whole ensemble (no cache)."""
    from cellfuse.config import load_config
    from ensemble.worker import PseudoLabeler

    labeler = PseudoLabeler.from_config(load_config(config), out_dir, threads=threads)

    def predict(image):
        preds = labeler.predict_teachers(image, "bench", "-")
        return labeler.fuse(preds, predict=True).instances  # as the evaluate stage scores it

    return predict


def compare_speed(
    samples,
    *,
    student: str | None = None,
    variant: str = "flow_s",
    flowunet: str | None = None,
    ensemble: str | None = None,
    threads: int = 2,
    skip=(),
) -> dict:
    """Side-by-side s/Mpx (and F1@0.5 when labeled) of the student and the teachers."""
    import torch

    torch.set_num_threads(threads)
    images = [read_image(s.image) for s in samples]
    truths = [
        read_labels(s.label, shape=i.shape[:2]) if s.label else None
        for s, i in zip(samples, images, strict=True)
    ]

    from student.export import export_student
    from student.model import build_student
    from student.predictor import StudentPredictor

    rows = []
    if student:
        pred = StudentPredictor.from_checkpoint(student, device="cpu", backend="torch")
    else:
        pred = StudentPredictor(build_student(variant), device="cpu")
    timed = _TimedBackend(pred.backend)
    pred.backend = timed
    row = _run("student_torch", pred.predict, images, truths)
    row["network_share"] = round(timed.seconds / max(row["seconds"], 1e-9), 3)  # incl. warm-up
    rows.append(row)
    if student and "onnx" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            res = export_student(student, tmp, program=False)
            onnx = StudentPredictor.from_onnx(res["onnx"], threads=threads)
            rows.append(_run("student_onnx", onnx.predict, images, truths))
    if flowunet and Path(flowunet).is_file() and "flowunet" not in skip:
        from teachers.flowunet import FlowUNetTeacher

        t = FlowUNetTeacher(num_threads=threads, device="cpu")
        t.load(Path(flowunet))
        torch.set_num_threads(threads)
        rows.append(_run("flowunet_teacher", t.predict, images, truths))
    if "classical" not in skip:
        from teachers.classical import ClassicalTeacher

        rows.append(_run("classical_teacher", ClassicalTeacher().predict, images, truths))
    if ensemble and "ensemble" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            predict = ensemble_predictor(ensemble, threads, tmp)
            torch.set_num_threads(threads)
            rows.append(_run("teacher_ensemble", predict, images, truths))
    out = dict(n=len(images), threads=threads, student=student or f"random {variant}", rows=rows)
    by = {r["model"]: r for r in rows}
    fast = by.get("student_onnx", by["student_torch"])
    if "teacher_ensemble" in by:
        out["student_speedup_vs_ensemble"] = round(
            by["teacher_ensemble"]["s_per_mpx"] / fast["s_per_mpx"], 2
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", help="student checkpoint (default: random flow_s)")
    ap.add_argument("--variant", default="flow_s", help="variant when no --student")
    ap.add_argument("--flowunet", help="flow U-Net teacher checkpoint (skipped when absent)")
    ap.add_argument("--ensemble", help="pseudo-label config whose whole ensemble is timed too")
    ap.add_argument("--images", default="../shared/data/dsb2018/val")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="models to skip")
    ap.add_argument("--out", default="work/bench_student.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    samples = list_samples(args.images, require_labels=False)[: args.n]
    result = compare_speed(
        samples,
        student=args.student,
        variant=args.variant,
        flowunet=args.flowunet,
        ensemble=args.ensemble,
        threads=args.threads,
        skip=args.skip,
    )
    result = dict(images=str(args.images), flowunet=args.flowunet, ensemble=args.ensemble, **result)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
