"""The main job: an input folder (Med-MLE-bench layout) -> submission + report.

    preflight -> check -> teachers -> pseudo-labels (Ray) -> student -> export -> predict -> submission -> evaluate -> report

Each stage records what it was computed from (configs, input files, upstream results) in
``work/stages/<stage>.json``; a re-run skips a stage whose record matches and re-runs it
otherwise. Inside a stage the tools resume on their own (teachers from ``last.pth``,
pseudo-labels from their manifest, predictions per image), so a run killed anywhere picks up
where it stopped. Test labels are never read before the evaluate stage.

The stages call the model packages through their roles (:mod:`cellfuse.plugins`:
``train_teacher``, ``pseudo_label``, ``distill``, ``export_student``, ``student_predictor``,
...); this module imports none of them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cellfuse.app.evaluation import evaluate, make_report
from cellfuse.config import (
    CHECKPOINT_OPTIONS,
    checkpoint_fallback,
    config_text,
    load_config,
    profile_path,
)
from cellfuse.durable import dump_config
from cellfuse.errors import CellfuseError, LayoutError
from cellfuse.plugins import plugin
from cellfuse.stages import Run, find_test_labels, folder_signature

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- stages


def _stage_config(path: str | Path, run: Run, extra: dict | None = None):
    """Load a stage config with the run's input as its data root."""
    return stage_config(path, run.input_dir, run.cfg.get("seed", 0), extra)


def stage_config(
    path: str | Path,
    input_dir: str | Path,
    seed: int = 0,
    extra: dict | None = None,
    *,
    imports: bool = True,
):
    """A stage config (teacher or student) as a run loads it: ``data.root`` = the input
    (``imports``: :func:`cellfuse.config.load_config`)."""
    opts = {"data.root": str(input_dir), "data.val": None, "seed": seed}
    opts.update(extra or {})
    return load_config(path, opts, imports=imports)


def teacher_options(profile_cfg, entry) -> dict:
    """A profile's teacher entry's ``options``, plus its official checkpoint from the
    profile's ``checkpoints`` (``checkpoints.sam=PATH`` sets the SAM config's
    ``teacher.checkpoint``, :data:`cellfuse.config.CHECKPOINT_OPTIONS`)."""
    opts = dict(entry.get("options") or {})
    path = (profile_cfg.get("checkpoints") or {}).get(entry["name"])
    if path:
        key = CHECKPOINT_OPTIONS.get(entry["name"])
        if key is None:
            raise LayoutError(
                f"checkpoints.{entry['name']}: only {sorted(CHECKPOINT_OPTIONS)} take a checkpoint"
            )
        opts[key] = str(path)
    return opts


def teacher_stage_config(profile_cfg, entry, input_dir: str | Path, *, imports: bool = True):
    """The stage config of one of a profile's teachers, as :func:`train_teachers` trains it.

    Returns:
        ``(cfg, options, note)``: ``note`` is the line saying a fallback replaced a missing
        official checkpoint (:func:`cellfuse.config.checkpoint_fallback`), or None.
    """
    opts = teacher_options(profile_cfg, entry)
    cfg = stage_config(
        entry["config"], input_dir, profile_cfg.get("seed", 0), opts, imports=imports
    )
    return cfg, opts, checkpoint_fallback(cfg, entry["name"])


def train_teachers(run: Run) -> dict:
    """Train every teacher of the profile (each resumes from its own last checkpoint)."""
    train_teacher = plugin("train_teacher")

    out = {}
    for entry in run.cfg.teachers:
        name = entry["name"]
        work = run.work_dir / "teachers" / name
        cfg, opts, note = teacher_stage_config(run.cfg, entry, run.input_dir)
        if note:
            log.warning("%s", note)
        key = [
            config_text(entry["config"]),
            opts or None,
            folder_signature(run.input_dir / "train" / "images"),
            folder_signature(run.input_dir / "train" / "labels"),
        ]
        if run.cfg.get("seed", 0):  # Teacher.offset_seed moves the training seed (0: as shipped)
            key.append(run.cfg.get("seed"))

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
    cfg = load_config(run.cfg.ensemble)
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
    run_pseudo_label = plugin("pseudo_label")

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
    distill = plugin("distill")

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
            from cellfuse.child_process import run_in_child

            cfg_file = work / "stage_config.py"
            work.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, cfg_file)
            log.info("%s: training in a child process, log %s", work.name, work / "train.log")
            run_in_child(
                "distill_file",
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
    export = plugin("export_student")

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

    model_key, predict_files = plugin("model_key"), plugin("predict_files")
    StudentPredictor = plugin("student_predictor")

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
    from cellfuse.durable import clean_stale

    require_preflight = plugin("require_preflight")

    input_dir, work_dir = Path(input_dir).resolve(), Path(work_dir).resolve()
    cfg = load_config(profile_path(profile), cfg_options)
    require_preflight(cfg, profile, input_dir)  # GPU profiles: device, mmcv ops, weights, memory
    r = Run(input_dir, work_dir, profile, cfg, address)
    t0 = time.time()
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
        evaluate(r, truth, ensemble_config(r, teachers), teachers, students)
    report = make_report(r, truth, unlabeled_images(r)[0])
    summary = {
        "profile": profile,
        "input": str(input_dir),
        "work": str(work_dir),
        "submission": sub["csv"],
        "report": str(report),
        "seconds": round(time.time() - t0, 1),
        "stages": r.records,
    }
    from cellfuse.files import atomic_write

    with atomic_write(work_dir / "run.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return summary
