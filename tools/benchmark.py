"""The ``bench`` profile end to end, every figure of the teacher, ensemble and student issues in one JSON.

    python tools/benchmark.py [--data ../shared/data/dsb2018] [--work work/bench]
        [--parts pipeline ensemble speed ray] [--out bench/results/<date>.json] [--readme]

``--data`` is a folder in the DSB2018 layout of ``../shared/data`` (``train/``, ``val/``,
``unlabeled/images``). The benchmark builds a Med-MLE-bench view of it under ``WORK/input``
(symlinks: ``train``, ``test/images`` = val images, ``test_labels`` = val labels,
``unlabeled/images``) and runs, each part resumable and skippable:

- ``pipeline``: ``cellfuse run --profile bench`` on that view: teachers at their CPU profiles
  (checkpoints selected on every 5th training image, as for a Med-MLE-bench input), Ray
  pseudo-labels of the unlabeled pool, distilled and labeled-only students, ONNX export,
  prediction of the val images, submission, evaluation: F1@0.5/0.75 and s/Mpx of every
  teacher and both students on val.
- ``ensemble``: the same ensemble on the val images treated as unlabeled, scored against the
  val labels (each teacher, fused cells, precision of the confident subset, fraction kept).
- ``speed``: student (ONNX) vs the whole teacher ensemble, side by side on ``--speed-images``
  val images, 2 threads: s/Mpx of each and the ratio.
- ``scarce`` (not in the default parts; ~1 h per input): ``cellfuse run --profile scarce``
  on the scarce-label and modality-shift inputs of ``tools/make_scarce.py``
  (``--scarce-inputs``), their F1 curves per model and modality, and
  ``bench/results/scarce.png`` (``tools/bench_scarce.py``).
- ``ray``: pseudo-labelling wall time of the unlabeled pool with 1 and 2 workers in one run
  (``configs/ensemble/pseudo_classical.py``: CPU-only teachers, so the ratio measures Ray,
  not model loading).
- ``slide_ray`` (not in the default parts; needs a quiet machine): a synthetic slide of
  ``--slide-size`` px (``tools/make_slide.py`` from the train split) predicted by the
  student ``--onnx`` (default: the pipeline's export) as a stream in one process (1
  thread), then by Ray slide blocks (``student.ray_slide``) with 1 and 2 local workers
  (1 thread each): wall times, the 2-vs-1 speedup and whether all three label pyramids
  are identical.
- ``network`` (not in the default parts): the exported student's network alone on a
  2048 x 2048 synthetic slide, fp32 against int8 (onnxruntime static quantisation) at 512,
  768 and 1024 px tiles (``tools/bench_network.py``).
- ``mosaic`` (not in the default parts; needs a quiet machine): the slide path of one or
  more students (``--mosaic-onnx``) side by side on a 10k fluorescence mosaic of val images:
  F1@0.5 in 2000-px ROIs against the per-image predictions pasted into it, s/Mpx and its
  split into network and post-processing (``tools/bench_mosaic.py``).

The JSON gets one section per part (parts run later are merged into the same file) plus
the machine, the commit and each part's wall time; ``--readme`` regenerates the results
table in README.md between the ``bench-table`` markers from it. Every stage resumes: a
killed benchmark re-run continues where it stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from cellfuse.errors import LayoutError  # noqa: E402
from cellfuse.io import atomic_write_text  # noqa: E402

log = logging.getLogger("benchmark")
PARTS = ("pipeline", "ensemble", "speed", "ray", "scarce", "slide_ray", "network", "mosaic")
DEFAULT_PARTS = ("pipeline", "ensemble", "speed", "ray")
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def make_view(data: Path, view: Path) -> Path:
    """Med-MLE-bench layout over a DSB-layout folder (symlinks; val plays the test set)."""
    links = {
        "train": data / "train",
        "test/images": data / "val" / "images",
        "test_labels": data / "val" / "labels",
        "unlabeled/images": data / "unlabeled" / "images",
    }
    for rel, target in links.items():
        if not target.is_dir():
            if rel == "unlabeled/images":
                continue
            raise LayoutError(f"{data}: no {target.relative_to(data)} folder")
        link = view / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    return view


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def part_pipeline(view: Path, work: Path, profile: str) -> dict[str, Any]:
    from cellfuse.app.pipeline import run

    summary = run(view, work / "run", profile=profile)
    st = summary["stages"]
    ev = st.get("evaluate", {})
    return {
        "profile": profile,
        "seconds": summary["seconds"],
        "stage_seconds": {k: v.get("seconds") for k, v in st.items()},
        "val": ev.get("models", {}),
        "submission": ev.get("submission", {}),
        "pseudo": {k: st.get("pseudo", {}).get("summary", {}).get(k) for k in ("done", "failed")},
        "report": summary["report"],
    }


def _run_object(view: Path, work: Path, profile: str):
    from cellfuse.config import load_config, profile_path
    from cellfuse.stages import Run

    cfg = load_config(profile_path(profile))
    r = Run(view, work / "run", profile, cfg)
    teachers = {}
    for e in cfg.teachers:
        rec = r.record(f"teacher_{e['name']}")
        if rec is None:
            raise LayoutError(f"teacher {e['name']} not trained yet: run the 'pipeline' part first")
        teachers[e["name"]] = rec
    return r, teachers


def part_ensemble(view: Path, work: Path, profile: str, workers: int) -> dict[str, Any]:
    from cellfuse.app.pipeline import ensemble_config
    from cellfuse.fusion import FusionParams
    from ensemble.pseudolabel import run_pseudo_label
    from ensemble.quality import pseudo_quality

    r, teachers = _run_object(view, work, profile)
    cfg = ensemble_config(r, teachers)
    out = work / "pseudo_val"
    summary = run_pseudo_label(cfg, view / "test" / "images", out, num_workers=workers)
    q = pseudo_quality(out, view / "test_labels", FusionParams.from_config(cfg, predict=True))
    q["seconds"] = summary["seconds"]
    return q


def part_speed(view: Path, work: Path, profile: str, n: int, threads: int) -> dict[str, Any]:
    from bench_student import compare_speed

    from cellfuse.app.pipeline import choose_student, ensemble_config
    from cellfuse.layout import list_samples

    r, teachers = _run_object(view, work, profile)
    students = {n: r.record(n) for n in ("student", "student_labeled_only") if r.record(n)}
    if not students:
        raise LayoutError("no student yet: run the 'pipeline' part first")
    student = students[choose_student(students)]  # the one the pipeline ships
    cfg = ensemble_config(r, teachers)
    cfg_path = work / "ensemble_config.py"
    from cellfuse.durable import dump_config

    dump_config(cfg, cfg_path)
    samples = list_samples(view / "test", require_labels=False)
    step = max(1, len(samples) // n)
    return compare_speed(
        samples[::step][:n], student=student["checkpoint"], ensemble=str(cfg_path), threads=threads
    )


def part_ray(view: Path, work: Path) -> dict[str, Any]:
    from bench_pseudo import run_once

    from cellfuse.config import load_config

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cfg = load_config(ROOT / "configs" / "ensemble" / "pseudo_classical.py")
    images = view / "unlabeled" / "images"
    if not images.is_dir():
        raise LayoutError(f"{view}: no unlabeled/images for the Ray benchmark")
    runs = {
        f"workers_{n}": run_once(cfg, str(images), work / "ray" / str(n), num_workers=n)
        for n in (1, 2)
    }
    return {
        "images": runs["workers_1"]["done"],
        "runs": runs,
        "speedup_wall": round(runs["workers_1"]["seconds"] / runs["workers_2"]["seconds"], 3),
    }


def _exported_student(work: Path, onnx: str | None) -> str:
    """``--onnx``, else the pipeline part's export; an error when there is none."""
    onnx = onnx or str(work / "run" / "export" / "student.onnx")
    if not Path(onnx).is_file():
        raise LayoutError(f"{onnx}: no exported student (give --onnx)")
    return onnx


def part_slide_ray(data: Path, work: Path, onnx: str | None, size: int) -> dict[str, Any]:
    import make_slide
    import numpy as np
    import tifffile

    from student.predictor import StudentPredictor
    from student.ray_slide import RaySlidePredictor

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    onnx = _exported_student(work, onnx)
    slide_dir = work / "slide_ray" / f"slide{size}"
    if not (slide_dir / "slide.ome.tif").is_file():
        make_slide.main(
            ["--split", str(data / "train"), "--size", str(size), "--out", str(slide_dir)]
        )
    slide = slide_dir / "slide.ome.tif"
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    one = StudentPredictor.from_onnx(onnx, threads=1)
    runs["single"] = one.predict_file(
        slide, work / "slide_ray" / "single" / "s_label.tiff", stream=True
    )
    runs["single"]["wall"] = round(time.perf_counter() - t0, 2)
    for n in (1, 2):
        pred = RaySlidePredictor(onnx, num_workers=n, threads=1)
        try:
            pred._start()  # workers up before the clock starts (model loading excluded)
            t0 = time.perf_counter()
            runs[f"workers_{n}"] = pred.predict_file(
                slide, work / "slide_ray" / f"ray{n}" / "s_label.tiff"
            )
            runs[f"workers_{n}"]["wall"] = round(time.perf_counter() - t0, 2)
        finally:
            pred.close()
    labels = [
        tifffile.imread(work / "slide_ray" / d / "s_label.tiff") for d in ("single", "ray1", "ray2")
    ]
    return {
        "size": size,
        "onnx": onnx,
        "runs": runs,
        "speedup_wall": round(runs["workers_1"]["wall"] / runs["workers_2"]["wall"], 3),
        "identical": all(np.array_equal(labels[0], x) for x in labels[1:]),
    }


def part_network_cli(data: Path, work: Path, onnx: str | None, threads: int) -> dict[str, Any]:
    import make_slide
    import tifffile
    from bench_network import part_network

    from cellfuse.layout import list_images

    onnx = _exported_student(work, onnx)
    slide_dir = work / "network" / "slide2048"
    if not (slide_dir / "slide.ome.tif").is_file():
        make_slide.main(["--split", str(data / "train"), "--size", "2048", "--out", str(slide_dir)])
    image = tifffile.imread(slide_dir / "slide.ome.tif")
    calib = list_images(data / "unlabeled" / "images")[:16]
    return part_network(Path(onnx), image, calib, work, threads)


def part_mosaic_cli(args, data: Path, work: Path) -> dict[str, Any]:
    from bench_mosaic import part_mosaic

    onnx = args.mosaic_onnx or [_exported_student(work, args.onnx)]
    return part_mosaic(data, work, onnx, args.threads, args.mosaic_size, args.mosaic_rounds)


def part_scarce_cli(args, data: Path, work: Path) -> dict[str, Any]:
    from bench_scarce import INPUTS, part_scarce, plot

    from cellfuse.scarce import make_inputs

    root = Path(args.scarce_root)
    if not args.collect_only:
        make_inputs(data, root)  # a no-op for inputs already written with the same split
    res = part_scarce(root, work, list(args.scarce_inputs or INPUTS), run=not args.collect_only)
    res["png"] = str(plot(res, ROOT / "bench" / "results" / "scarce.png").relative_to(ROOT))
    return res


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("" if x is None else str(x))


def _commits(res: dict[str, Any]) -> str:
    """``abc`` when every part ran at one commit, else ``pipeline abc, ensemble def``."""
    parts = res.get("part_commits") or {}
    if len(set(parts.values())) <= 1:
        return str(res.get("commit"))
    return ", ".join(f"{p} {c}" for p, c in parts.items())


def _quality_row(what: str, scores: dict[str, Any], note: str) -> str:
    cells = [what, _fmt(scores.get("f1@0.5")), _fmt(scores.get("f1@0.75")), "", note]
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def readme_table(res: dict[str, Any]) -> str:
    """Markdown results table of a benchmark JSON."""
    lines = [
        f"Benchmark `{res.get('file', '')}` ({res.get('date')}, commit {_commits(res)}, "
        f"{res.get('cpus')} CPUs; `python tools/benchmark.py`):",
        "",
        "| what | F1@0.5 | F1@0.75 | s/Mpx | note |",
        "|---|---|---|---|---|",
    ]
    pipe = res.get("pipeline", {})
    if res.get("scarce") and not pipe:
        from bench_scarce import table

        return "\n".join(
            lines[:2] + [table(res["scarce"]), "", f"![scarce]({res['scarce']['png']})"]
        )
    for name, r in pipe.get("val", {}).items():
        lines.append(
            f"| {name} (val) | {_fmt(r.get('f1_50'))} | {_fmt(r.get('f1_75'))} | {_fmt(r.get('s_per_mpx'))} | |"
        )
    ens = res.get("ensemble", {})
    for name, r in ens.get("teachers", {}).items():
        lines.append(_quality_row(f"{name}, val as unlabeled", r, ""))
    notes = {
        "fused": (
            "fused pseudo-labels (confident cells)",
            lambda f: (
                f"precision {_fmt(f.get('precision@0.5'))}, kept {_fmt(f.get('kept_fraction'))}"
            ),
        ),
        "fused_seen": (
            "fused pseudo-labels vs the true cells outside the ignore mask",
            lambda f: f"{f.get('true_cells_seen')} of {ens.get('n_true')} true cells",
        ),
        "fused_predict": ("fused ensemble as a predictor (`fusion_predict`)", lambda f: ""),
    }
    for key, (what, note) in notes.items():
        if ens.get(key):
            lines.append(_quality_row(what, ens[key], note(ens[key])))
    sp = res.get("speed", {})
    for r in sp.get("rows", []):
        lines.append(
            f"| speed: {r['model']} ({sp.get('n')} val images) | {_fmt(r.get('f1_50'))} | | {_fmt(r.get('s_per_mpx'))} | |"
        )
    if "student_speedup_vs_ensemble" in sp:
        lines.append(
            f"| student speed-up vs ensemble | | | | {sp['student_speedup_vs_ensemble']}x |"
        )
    ray = res.get("ray", {})
    if ray:
        w1, w2 = ray["runs"]["workers_1"]["seconds"], ray["runs"]["workers_2"]["seconds"]
        lines.append(
            f"| Ray, {ray['images']} unlabeled images | | | | 1 worker {w1} s, 2 workers {w2} s: {ray['speedup_wall']}x |"
        )
    if pipe:
        lines.append(f"| bench pipeline wall time | | | | {pipe.get('seconds')} s |")
    return "\n".join(lines)


def update_readme(res: dict[str, Any], readme: Path) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise LayoutError(f"{readme}: no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(readme, f"{head}{START}\n{readme_table(res)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dsb2018"))
    ap.add_argument("--work", default="work/bench")
    ap.add_argument("--profile", default="bench")
    ap.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=PARTS)
    ap.add_argument("--scarce-root", default="work/scarce", help="tools/make_scarce.py --out")
    ap.add_argument("--scarce-inputs", nargs="+", default=None, help="default: all five")
    ap.add_argument(
        "--collect-only", action="store_true", help="scarce: collect finished runs, run nothing"
    )
    ap.add_argument("--out", help="default: bench/results/<today>.json")
    ap.add_argument("--speed-images", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--onnx", help="student for the slide_ray and network parts (default: the pipeline's)"
    )
    ap.add_argument("--slide-size", type=int, default=8000, help="slide side for slide_ray")
    ap.add_argument(
        "--mosaic-onnx", nargs="+", help="students of the mosaic part (default: --onnx)"
    )
    ap.add_argument("--mosaic-size", type=int, default=10000)
    ap.add_argument("--mosaic-rounds", type=int, default=2)
    ap.add_argument("--readme", action="store_true", help="regenerate README.md's results table")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data, work = Path(args.data), Path(args.work)
    out = Path(args.out or ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}.json")
    res: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    res.update(
        date=dt.date.today().isoformat(),
        commit=_git_commit(),
        cpus=os.cpu_count(),
        machine=platform.platform(),
        data=str(data),
        file=str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
    )
    view = make_view(data, work / "input")
    runners = {
        "pipeline": lambda: part_pipeline(view, work, args.profile),
        "ensemble": lambda: part_ensemble(view, work, args.profile, args.workers),
        "speed": lambda: part_speed(view, work, args.profile, args.speed_images, args.threads),
        "ray": lambda: part_ray(view, work),
        "scarce": lambda: part_scarce_cli(args, data, work),
        "slide_ray": lambda: part_slide_ray(data, work, args.onnx, args.slide_size),
        "network": lambda: part_network_cli(data, work, args.onnx, args.threads),
        "mosaic": lambda: part_mosaic_cli(args, data, work),
    }
    for part in args.parts:
        t0 = time.time()
        log.info("part %s", part)
        res[part] = runners[part]()
        res.setdefault("part_seconds", {})[part] = round(time.time() - t0, 1)
        # parts may run at different commits (a part re-run later)
        res.setdefault("part_commits", {})[part] = res["commit"]
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(res, indent=2, default=str) + "\n")  # after every part
    if args.readme:
        update_readme(res, ROOT / "README.md")
    print(readme_table(res))
    return 0


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
