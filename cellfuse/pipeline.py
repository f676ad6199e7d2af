"""The main job: input folder (Med-MLE-bench layout) -> submission + report.

Stages so far: predict the test images with the best available model -> write the
submission -> evaluate when test labels are present. Until the teachers, pseudo-labels and
the student land, the model is the classical Otsu + watershed baseline, and the run says so.
Every stage skips work already done, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cellfuse.errors import LayoutError

log = logging.getLogger(__name__)


def find_test_labels(input_dir: Path) -> Path | None:
    """Truth for the test images, if the input ships it (never read before evaluation)."""
    for name in ("test_labels", "test/labels"):
        if (input_dir / name).is_dir():
            return input_dir / name
    return None


def predict_folder(teacher, images: list[Path], out_dir: Path, *, progress: bool = True) -> Path:
    """Predict each image into ``out_dir/<id>_label.tiff``; existing outputs are kept (resume)."""
    from tqdm.auto import tqdm

    from cellfuse.io import read_image, write_labels
    from cellfuse.layout import image_id

    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in images if not (out_dir / f"{image_id(p)}_label.tiff").exists()]
    if len(todo) < len(images):
        log.info(
            "%d of %d predictions already there, skipped", len(images) - len(todo), len(images)
        )
    for p in tqdm(todo, desc="predict", unit="img", disable=not progress):
        inst = teacher.predict(read_image(p, allow_constant=True))
        write_labels(out_dir / f"{image_id(p)}_label.tiff", inst.labels)
    return out_dir


def run(input_dir: str | Path, work_dir: str | Path, *, profile: str = "demo") -> dict:
    """Run the pipeline on ``input_dir`` into ``work_dir``; returns the summary dict."""
    from cellfuse.layout import list_images
    from cellfuse.submission import write_submission
    from teachers import build_teacher

    input_dir, work_dir = Path(input_dir), Path(work_dir)
    if not (input_dir / "test" / "images").is_dir():
        raise LayoutError(f"{input_dir}: no test/images folder (expected the Med-MLE-bench layout)")
    t0 = time.time()
    images = list_images(input_dir / "test" / "images")
    log.warning(
        "the learned stages are not built yet: predicting with the classical Otsu + watershed baseline"
    )
    teacher = build_teacher({"type": "classical"})
    pred_dir = predict_folder(teacher, images, work_dir / "predictions")
    sample = input_dir / "sample_submission.csv"
    csv_path = write_submission(
        pred_dir,
        input_dir / "test" / "images",
        work_dir / "submission",
        sample_submission=sample if sample.exists() else None,
    )
    summary: dict = {"profile": profile, "model": "classical", "submission": str(csv_path)}
    truth = find_test_labels(input_dir)
    if truth is not None:
        from cellfuse.metric import evaluate_dirs

        report = evaluate_dirs(truth, work_dir / "submission" / "predictions")
        report_dir = work_dir / "report"
        report_dir.mkdir(parents=True, exist_ok=True)
        report.to_csv(report_dir / "per_image.csv")
        report.to_json(report_dir / "summary.json")
        (report_dir / "summary.txt").write_text(report.table() + "\n")
        summary["report"] = str(report_dir)
        summary["test"] = report.to_dict()["summary"] if "summary" in report.to_dict() else None
        log.info("test scores:\n%s", report.table())
    summary["seconds"] = round(time.time() - t0, 1)
    from cellfuse.io import atomic_write

    with atomic_write(work_dir / "run.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return summary
