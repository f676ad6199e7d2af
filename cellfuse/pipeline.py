"""The main job: an input folder (Med-MLE-bench layout) -> submission + report.

    teachers -> pseudo-labels (Ray) -> student -> export -> predict -> submission -> evaluate -> report

Each stage records what it was computed from (configs, input files, upstream results) in
``work/stages/<stage>.json``; a re-run skips a stage whose record matches and re-runs it
otherwise. Inside a stage the tools resume on their own (teachers from ``last.pth``,
pseudo-labels from their manifest, predictions per image), so a run killed anywhere picks up
where it stopped. Test labels are never read before the evaluate stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellfuse.errors import CellfuseError, ConfigError, LayoutError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "check",
    "teachers",
    "pseudo",
    "student",
    "export",
    "predict",
    "submit",
    "evaluate",
    "report",
)


def find_test_labels(input_dir: Path) -> Path | None:
    """Truth for the test images, if the input ships it apart (read only by evaluate)."""
    for name in ("test_labels", "test/labels"):
        if (input_dir / name).is_dir():
            return input_dir / name
    return None


def _sha1(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def folder_signature(folder: Path) -> list[tuple[str, int]]:
    """(name, size) of every file in ``folder``: cheap and stable across clones."""
    if not folder.is_dir():
        return []
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())


def config_text(path: str | Path) -> str:
    """A config file's text with its ``_base_`` files', for stage keys."""
    from mmengine.config import Config

    return Config.fromfile(str(_repo_path(path))).pretty_text


def _repo_path(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO / p


@dataclass
class Run:
    """One pipeline run: where things are and what each stage recorded."""

    input_dir: Path
    work_dir: Path
    profile: str
    cfg: Any
    address: str | None = None
    records: dict[str, dict] = field(default_factory=dict)

    @property
    def stage_dir(self) -> Path:
        return self.work_dir / "stages"

    def record(self, stage: str) -> dict | None:
        p = self.stage_dir / f"{stage}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def is_current(self, name: str, key_parts: Any) -> bool:
        """Whether stage ``name`` is recorded under this key (:meth:`stage` would skip it)."""
        rec = self.record(name)
        return rec is not None and rec.get("key") == _sha1([name, key_parts])

    def stage(
        self, name: str, key_parts: Any, fn: Callable[[], dict], work: Path | None = None
    ) -> dict:
        """Run ``fn`` unless the stage's record holds the same key; record its result.

        ``work``: the stage's own folder, where ``fn`` resumes from a checkpoint it left. It
        is only resumed by the same stage key: a folder left by a run under other inputs or
        config is moved aside to ``<work>.stale`` first, so a changed config trains afresh.
        """
        from cellfuse.io import atomic_write, atomic_write_text

        key = _sha1([name, key_parts])
        rec = self.record(name)
        if rec is not None and rec.get("key") == key:
            log.info("stage %s: up to date, skipped", name)
            self.records[name] = rec
            return rec
        started = self.stage_dir / f"{name}.started"
        if work is not None and work.exists():
            before = started.read_text().strip() if started.exists() else None
            if before is None and rec is not None:
                before = rec.get("key")
            if before is not None and before != key:
                stale = work.with_name(work.name + ".stale")
                shutil.rmtree(stale, ignore_errors=True)
                work.rename(stale)
                log.warning("stage %s: inputs or config changed; old work moved to %s", name, stale)
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(started, key + "\n")
        log.info("stage %s: running", name)
        t0 = time.time()
        result = fn()
        rec = {"key": key, "seconds": round(time.time() - t0, 1), **result}
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.stage_dir / f"{name}.json", "w") as fh:
            json.dump(rec, fh, indent=2, default=str)
        self.records[name] = rec
        return rec


# ----------------------------------------------------------------------------- stages


def _stage_config(path: str | Path, run: Run, extra: dict | None = None):
    """Load a stage config with the run's input as its data root."""
    from teachers.train import load_config

    opts = {"data.root": str(run.input_dir), "data.val": None, "seed": run.cfg.get("seed", 0)}
    opts.update(extra or {})
    return load_config(_repo_path(path), opts)


def train_teachers(run: Run) -> dict:
    """Train every teacher of the profile (each resumes from its own last checkpoint)."""
    from teachers.train import train_teacher

    out = {}
    for entry in run.cfg.teachers:
        name = entry["name"]
        work = run.work_dir / "teachers" / name
        cfg = _stage_config(entry["config"], run, entry.get("options"))
        key = [
            config_text(entry["config"]),
            entry.get("options"),
            folder_signature(run.input_dir / "train" / "images"),
            folder_signature(run.input_dir / "train" / "labels"),
        ]

        def fit(cfg=cfg, work=work) -> dict:
            resume = (work / "last.pth").exists() or (work / "last_checkpoint").exists()
            ckpt = train_teacher(cfg, work, resume=resume)
            return json.loads((work / "result.json").read_text()) | {"checkpoint": str(ckpt)}

        out[name] = run.stage(f"teacher_{name}", key, fit, work=work)
    return out


def unlabeled_images(run: Run) -> tuple[list[Path], bool]:
    """The unlabeled pool and whether it includes the test images (transductive)."""
    from cellfuse.layout import list_images

    spec = run.cfg.get("unlabeled", {})
    images: list[Path] = []
    for folder in spec.get("folders", ["unlabeled/images"]):
        if (run.input_dir / folder).is_dir():
            images += list_images(run.input_dir / folder)
    mode = spec.get("transductive", "auto")
    transductive = mode is True or (mode == "auto" and not images)
    if transductive:
        images += list_images(run.input_dir / "test" / "images")
    if not images:
        raise LayoutError(f"{run.input_dir}: no unlabeled images and transductive=False")
    return images, transductive


def ensemble_config(run: Run, teachers: dict):
    """The pseudo-label config of the run: the profile's ensemble file with the run's trained
    teachers (weights = their val F1), the classical teacher and the refiner."""
    from teachers.train import load_config

    cfg = load_config(_repo_path(run.cfg.ensemble))
    entries = [
        dict(
            name=name,
            cfg=str(run.work_dir / "teachers" / name / "config.py"),
            checkpoint=rec["checkpoint"],
            weight="val_f1",
        )
        for name, rec in teachers.items()
    ]
    if run.cfg.get("classical_teacher"):
        entries.append(dict(run.cfg.classical_teacher, checkpoint=None))
    cfg.teachers = entries
    refiner = run.cfg.get("refiner")
    cfg.refiner = refiner if refiner in teachers else None
    return cfg


def pseudo_label(run: Run, teachers: dict) -> dict:
    """Fuse the teachers' predictions on the unlabeled pool into pseudo-labels (Ray)."""
    from ensemble.pseudolabel import run_pseudo_label

    images, transductive = unlabeled_images(run)
    cfg = ensemble_config(run, teachers)
    key = [
        cfg.pretty_text,
        [(p.name, p.stat().st_size) for p in images],
        {n: r["key"] for n, r in teachers.items()},
    ]

    def fn() -> dict:
        summary = run_pseudo_label(
            cfg,
            images,
            run.work_dir / "pseudo",
            address=run.address,
            num_workers=run.cfg.get("num_workers", 2),
        )
        if summary["failed"]:
            log.warning(
                "pseudo-labels: %d images failed: %s", summary["failed"], summary["failed_ids"][:5]
            )
        return {"summary": summary, "transductive": transductive, "images": len(images)}

    return run.stage("pseudo", key, fn)


def distill_students(run: Run, pseudo: dict) -> dict:
    """The distilled student (labels + pseudo-labels) and, for the ablation, the labeled-only one.

    When both have to train (and ``parallel_students`` is on, the default), they train side
    by side, each in a child process that dies with this one (its log: ``<work>/train.log``),
    so single-threaded students use both cores of a 2-core machine.
    """
    from student.distill import distill

    variants = {"student": str(run.work_dir / "pseudo")}
    if run.cfg.get("ablation", True):
        variants["student_labeled_only"] = None
    stages = []
    for name, pseudo_dir in variants.items():
        opts = {**(run.cfg.get("student_options") or {}), "student.pseudo": pseudo_dir}
        cfg = _stage_config(run.cfg.student, run, opts)
        key = [
            cfg.pretty_text,
            folder_signature(run.input_dir / "train" / "labels"),
            pseudo.get("key") if pseudo_dir else None,  # the ablation does not read them
        ]
        stages.append((name, key, cfg, run.work_dir / name))
    todo = [s for s in stages if not run.is_current(s[0], s[1])]
    parallel = len(todo) > 1 and run.cfg.get("parallel_students", True)

    def train(cfg, work: Path, stop=None) -> dict:
        resume = (work / "last.pth").exists()
        if parallel:
            from cellfuse.child import run_in_child

            cfg_file = work / "stage_config.py"
            work.mkdir(parents=True, exist_ok=True)
            from cellfuse.durable import dump_config

            dump_config(cfg, cfg_file)
            log.info("%s: training in a child process, log %s", work.name, work / "train.log")
            run_in_child(
                "student.distill:distill_file",
                str(cfg_file),
                str(work),
                "1" if resume else "0",
                log_file=work / "train.log",
                stop=stop,
            )
        else:
            distill(cfg, work, resume=resume)
        return json.loads((work / "result.json").read_text())

    if not parallel:
        return {
            name: run.stage(name, key, lambda cfg=cfg, work=work: train(cfg, work), work=work)
            for name, key, cfg, work in stages
        }
    import threading
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()  # Ctrl-C reaches this thread only: it stops the children
    with ThreadPoolExecutor(len(stages)) as pool:
        futures = {
            name: pool.submit(
                run.stage, name, key, lambda cfg=cfg, work=work: train(cfg, work, stop), work
            )
            for name, key, cfg, work in stages
        }
        try:
            return {name: f.result() for name, f in futures.items()}
        except BaseException:
            stop.set()
            raise


def choose_student(students: dict) -> str:
    """The student to ship: the higher val F1@0.5 (checkpoint selection, never the test
    labels); the distilled one on a tie or when scores are missing."""

    def score(name: str) -> tuple[float, bool]:
        return (students[name].get("val_metrics", {}).get("f1_50", -1.0), name == "student")

    return max(students, key=score)


def export_student(run: Run, students: dict) -> dict:
    """ONNX (+ torch.export) of the chosen student (:func:`choose_student`), parity checked."""
    from student.export import export_student as export

    name = choose_student(students)
    if name != "student":
        log.info(
            "exporting %s: val F1@0.5 %.4f beats the distilled student's %.4f",
            name,
            students[name]["val_metrics"]["f1_50"],
            students["student"].get("val_metrics", {}).get("f1_50", float("nan")),
        )
    rec = students[name]

    def fn() -> dict:
        from cellfuse.io import read_image
        from cellfuse.layout import list_images

        # parity on real images (the first 3 test images; their labels are never read)
        checks = [
            read_image(p, allow_constant=True)
            for p in list_images(run.input_dir / "test" / "images")[:3]
        ]
        out = export(
            rec["checkpoint"], run.work_dir / "export", name="student", check_images=checks
        )
        return out | {"student": name}

    return run.stage("export", [rec["key"]], fn)


def predict_test(run: Run, exported: dict) -> dict:
    """Predict every test image with the exported ONNX model (no training code involved)."""
    from cellfuse.layout import list_images
    from student.batch import model_key, predict_files
    from student.predictor import StudentPredictor

    images = list_images(run.input_dir / "test" / "images")
    out_dir = run.work_dir / "predictions"
    key = [exported["key"], [(p.name, p.stat().st_size) for p in images]]

    def fn() -> dict:
        # per image: a failure is recorded and the others go on; a killed run resumes per image
        pred = StudentPredictor.from_onnx(exported["onnx"])
        res = predict_files(pred, images, out_dir, key=model_key(exported["onnx"]), progress=True)
        if res["failed"]:  # a submission needs every test image (check refuses bad ones first)
            raise CellfuseError("\n".join(f"error: {e}" for e in res["failures"].values())[7:])
        return {"images": len(images), "s_per_mpx": res["s_per_mpx"]}

    return run.stage("predict", key, fn)


def submit(run: Run, predicted: dict) -> dict:
    from cellfuse.submission import write_submission

    sample = run.input_dir / "sample_submission.csv"
    return run.stage(
        "submit",
        [predicted["key"]],
        lambda: {
            "csv": str(
                write_submission(
                    run.work_dir / "predictions",
                    run.input_dir / "test" / "images",
                    run.work_dir / "submission",
                    sample_submission=sample if sample.exists() else None,
                )
            )
        },
    )


def evaluate(run: Run, truth: Path, teachers: dict, students: dict) -> dict:
    """Challenge F1 and s/Mpx on the test images of every teacher (the refiner prompted by
    the others, as in the ensemble), of the fused ensemble and of both students; the test
    labels are read here only. Image by image, so memory holds one image's predictions."""
    import tempfile

    from cellfuse.io import read_image, read_labels
    from cellfuse.layout import find_label, image_id, list_images
    from cellfuse.metric import evaluate_image
    from cellfuse.modality import modality
    from ensemble.worker import PseudoLabeler
    from student.predictor import StudentPredictor

    cfg = ensemble_config(run, teachers)

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
        from cellfuse.metric import evaluate_dirs

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


def make_report(run: Run, truth: Path | None) -> Path:
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
            src = next((p for p in unlabeled_images(run)[0] if image_id(p) == iid), None)
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
    return write_report(rep, "cellfuse run report", tables, figures, notes)


def run(
    input_dir: str | Path,
    work_dir: str | Path,
    *,
    profile: str = "demo",
    address: str | None = None,
    cfg_options: dict | None = None,
) -> dict:
    """Run the pipeline on ``input_dir`` into ``work_dir``; returns the summary dict."""
    from cellfuse.check import check_stage
    from teachers.train import load_config

    input_dir, work_dir = Path(input_dir).resolve(), Path(work_dir).resolve()
    profile_file = REPO / "configs" / "pipeline" / f"{profile}.py"
    if not profile_file.exists():
        raise ConfigError(f"unknown profile {profile!r} (no {profile_file})")
    cfg = load_config(profile_file, cfg_options)
    r = Run(input_dir, work_dir, profile, cfg, address)
    t0 = time.time()
    from cellfuse.durable import clean_stale

    clean_stale(work_dir)  # what a killed run left: temp files, a half-done submission swap
    check_stage(r)  # every image and label read before any training
    teachers = train_teachers(r)
    pseudo = pseudo_label(r, teachers)
    students = distill_students(r, pseudo)
    exported = export_student(r, students)
    predicted = predict_test(r, exported)
    sub = submit(r, predicted)
    truth = find_test_labels(input_dir)
    if truth is not None:
        evaluate(r, truth, teachers, students)
    report = make_report(r, truth)
    summary = {
        "profile": profile,
        "input": str(input_dir),
        "work": str(work_dir),
        "submission": sub["csv"],
        "report": str(report),
        "seconds": round(time.time() - t0, 1),
        "stages": r.records,
    }
    from cellfuse.io import atomic_write

    with atomic_write(work_dir / "run.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return summary
