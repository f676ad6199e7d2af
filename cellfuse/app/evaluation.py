"""The evaluate and report stages: every model scored on the test images (whose labels are
read here only), and ``work/report/index.html``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cellfuse.errors import LayoutError
from cellfuse.stages import Run


def evaluate(run: Run, truth: Path, cfg: Any, teachers: dict, students: dict) -> dict:
    """Challenge F1 and s/Mpx on the test images of every teacher (the refiner prompted by
    the others, as in the ensemble), of the fused ensemble and of both students; the test
    labels are read here only. Image by image, so memory holds one image's predictions."""
    import tempfile

    from cellfuse.io import read_image, read_labels
    from cellfuse.layout import find_label, image_id, list_images
    from cellfuse.metric import evaluate_image
    from cellfuse.modality import modality
    from cellfuse.plugins import plugin

    PseudoLabeler, StudentPredictor = plugin("pseudo_labeler"), plugin("student_predictor")

    def fn() -> dict:
        students_m = {
            n: StudentPredictor.from_checkpoint(r["checkpoint"]) for n, r in students.items()
        }
        with tempfile.TemporaryDirectory() as tmp:
            labeler = PseudoLabeler.from_config(cfg, tmp, threads=2)
            specs = labeler.specs
            names = [s.name for s in specs] + ["ensemble"] + list(students_m)
            f1 = {n: {0.5: [], 0.75: []} for n in names}
            secs = dict.fromkeys(names, 0.0)
            mpx = 0.0
            per_image: list[dict] = []
            for p in list_images(run.input_dir / "test" / "images"):
                image = read_image(p, allow_constant=True)
                mod = modality(image)
                truth_file = find_label(truth, image_id(p))
                if truth_file is None:
                    raise LayoutError(f"{p}: no label file in {truth} for the evaluation")
                t = read_labels(truth_file, shape=image.shape[:2])
                mpx += image.shape[0] * image.shape[1] / 1e6
                took: dict[str, float] = {}
                preds = dict(
                    zip(
                        [s.name for s in specs],
                        labeler.predict_teachers(image, image_id(p), "-", took),
                        strict=True,
                    )
                )
                t0 = time.perf_counter()
                preds["ensemble"] = labeler.fuse(list(preds.values()), predict=True).instances
                took["ensemble"] = sum(took.values()) + time.perf_counter() - t0
                for name, model in students_m.items():
                    t0 = time.perf_counter()
                    preds[name] = model.predict(image)
                    took[name] = time.perf_counter() - t0
                for name, inst in preds.items():
                    secs[name] += took[name]
                    scores = evaluate_image(t, inst.labels, (0.5, 0.75))["scores"]
                    for thr in (0.5, 0.75):
                        f1[name][thr].append(scores[thr]["f1"])
                    per_image.append(
                        dict(
                            id=image_id(p),
                            modality=mod,
                            model=name,
                            f1_50=scores[0.5]["f1"],
                            f1_75=scores[0.75]["f1"],
                        )
                    )
        rows = {
            n: {
                "f1_50": float(sum(f1[n][0.5]) / max(len(f1[n][0.5]), 1)),
                "f1_75": float(sum(f1[n][0.75]) / max(len(f1[n][0.75]), 1)),
                "s_per_mpx": round(secs[n] / max(mpx, 1e-9), 3),
                "by_modality": by_modality([r for r in per_image if r["model"] == n]),
            }
            for n in names
        }
        from cellfuse.scoring import evaluate_dirs

        report = evaluate_dirs(truth, run.work_dir / "submission" / "predictions")
        rep = run.work_dir / "report"
        rep.mkdir(parents=True, exist_ok=True)
        report.to_csv(rep / "per_image.csv")
        from cellfuse.io import atomic_write_text

        atomic_write_text(
            rep / "models_per_image.csv",
            "id,modality,model,f1_50,f1_75\n"
            + "".join(
                f"{r['id']},{r['modality']},{r['model']},{r['f1_50']:.6f},{r['f1_75']:.6f}\n"
                for r in per_image
            ),
        )
        report.to_json(rep / "submission_scores.json")
        return {"models": rows, "submission": report.summary()}

    key = [cfg.pretty_text, [r["key"] for r in (*teachers.values(), *students.values())]]
    return run.stage("evaluate", key, fn)


def by_modality(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean F1@0.5/0.75 and image count per modality of per-image score rows."""
    out: dict[str, dict[str, float]] = {}
    for mod in sorted({r["modality"] for r in rows}):
        sel = [r for r in rows if r["modality"] == mod]
        out[mod] = {
            "n": len(sel),
            "f1_50": float(sum(r["f1_50"] for r in sel) / len(sel)),
            "f1_75": float(sum(r["f1_75"] for r in sel) / len(sel)),
        }
    return out


def make_report(run: Run, truth: Path | None, unlabeled: list[Path]) -> Path:
    """``work/report/index.html``: F1 table, speeds, outlines vs truth, a disagreement map."""
    from cellfuse.io import read_image, read_labels
    from cellfuse.layout import find_label, image_id, list_images
    from cellfuse.report import disagreement_png, examples_png, write_report

    rep = run.work_dir / "report"
    rep.mkdir(parents=True, exist_ok=True)
    tables, figures = {}, []
    ev = run.records.get("evaluate")
    if ev:
        tables["F1 on the test images (mean per image) and speed on this machine"] = (
            ["model", "F1@0.5", "F1@0.75", "s/Mpx"],
            [[n, r["f1_50"], r["f1_75"], r["s_per_mpx"]] for n, r in ev["models"].items()],
        )
        mods = sorted({m for r in ev["models"].values() for m in r.get("by_modality", {})})
        if mods:
            tables["F1@0.5 per modality (images)"] = (
                [
                    "model",
                    *[
                        f"{m} ({ev['models'][next(iter(ev['models']))]['by_modality'].get(m, {}).get('n', 0)})"
                        for m in mods
                    ],
                ],
                [
                    [n, *[r["by_modality"].get(m, {}).get("f1_50", "") for m in mods]]
                    for n, r in ev["models"].items()
                ],
            )
    ps = run.records.get("pseudo", {})
    notes = [
        f"profile {run.profile}; input {run.input_dir}",
        f"pseudo-labels on {ps.get('images')} unlabeled images"
        + (
            " (transductive: the test images are in the unlabeled pool; their labels are never read)"
            if ps.get("transductive")
            else ""
        ),
    ]
    test_images = list_images(run.input_dir / "test" / "images")[:4]
    samples = []
    for p in test_images:
        pred = read_labels(run.work_dir / "predictions" / f"{image_id(p)}_label.tiff")
        t = (
            read_labels(find_label(truth, image_id(p)))
            if truth is not None and find_label(truth, image_id(p))
            else None
        )
        samples.append((image_id(p), read_image(p, allow_constant=True), pred, t, None))
    if samples:
        figures.append(
            (
                "Student predictions (yellow) next to the truth (green)",
                examples_png(samples, rep / "examples.png"),
            )
        )
    cache = run.work_dir / "pseudo" / "cache"
    if cache.is_dir():
        first = sorted((run.work_dir / "pseudo").glob("*_label.tiff"))
        if first:
            iid = first[0].name[: -len("_label.tiff")]
            teachers = {
                d.name: read_labels(d / f"{iid}_label.tiff")
                for d in sorted(cache.iterdir())
                if (d / f"{iid}_label.tiff").exists()
            }
            src = next((p for p in unlabeled if image_id(p) == iid), None)
            ign = run.work_dir / "pseudo" / f"{iid}_ignore.tiff"
            if src is not None and teachers:
                figures.append(
                    (
                        "Teacher disagreement on an unlabeled image",
                        disagreement_png(
                            read_image(src, allow_constant=True),
                            teachers,
                            read_labels(first[0]),
                            read_labels(ign) > 0 if ign.exists() else None,
                            rep / "disagreement.png",
                            iid,
                        ),
                    )
                )
    from cellfuse.plugins import plugin

    report_section = plugin("suggest_report_section")
    suggested = report_section(run.work_dir / "pseudo", rep, run.cfg.get("suggest_n", 8))
    if suggested is not None:
        tables["Images to label next (cellfuse suggest)"] = suggested[0]
        figures.append(("Images to label next: each teacher's outlines", suggested[1]))
    return write_report(rep, "cellfuse run report", tables, figures, notes)
