"""The ``cellfuse`` command line: one sub-command per stage, each a thin wrapper that parses
its arguments, sets up logging once and calls one library function.

    cellfuse run --input DIR --work DIR [--profile demo|bench|full|scarce]   the whole pipeline
    cellfuse train-teacher CONFIG [--work-dir DIR] [--resume]                teachers.train
    cellfuse pseudo-label CONFIG [--images DIR] [--out DIR] [--address A]    ensemble.pseudolabel
    cellfuse distill CONFIG [--work-dir DIR] [--resume]                      student.distill
    cellfuse export CHECKPOINT [--out DIR]                                   student.export
    cellfuse predict (--onnx MODEL | --checkpoint CKPT) --input P --out DIR  student.predictor
        [--stream] [--local-scale] [--flip-average|--view-vote] [--address auto|HOST:PORT] [--workers N]   (student.ray_slide)
    cellfuse evaluate TRUTH_DIR PRED_DIR [--out DIR]                         cellfuse.metric
    cellfuse submit PRED_DIR TEST_IMAGES_DIR OUT_DIR                         cellfuse.submission
    cellfuse check [INPUT] [--work DIR] [--profile NAME] [--json OUT]        cellfuse.check, .nn.preflight
    cellfuse check --submission OUT_DIR [--test-images DIR]                  cellfuse.submission

The right-hand column names where each command's work is done; the model packages are
reached through their roles (:mod:`cellfuse.plugins`), never imported here.

Every config-driven command takes ``--cfg-options k=v ...`` (dotted keys, values parsed as
Python literals). ``cellfuse COMMAND --help`` describes each. Any error is one line
(``error: <file>: <what>``, exit 2); ``--debug`` (or ``CELLFUSE_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cellfuse.errors import CellfuseError
from cellfuse.log_setup import setup_logging
from cellfuse.plugins import plugin

log = logging.getLogger("cellfuse")


# ----------------------------------------------------------------------------- shared options


def parse_cfg_options(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (MMEngine's ``DictAction``)."""
    if not items:
        return None
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    DictAction(option_strings=[], dest="opts")(None, ns, list(items))
    return ns.opts


def _add_cfg_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cfg-options", nargs="+", default=None, metavar="K=V", help="override config keys"
    )


def print_json(obj: Any, path: str | Path | None = None) -> int:
    """Print ``obj`` as indented JSON (and write it to ``path`` when given); returns 0."""
    text = json.dumps(obj, indent=2, default=str)
    if path:
        from cellfuse.files import atomic_write_text

        atomic_write_text(path, text + "\n")
    print(text)
    return 0


# ----------------------------------------------------------------------------- commands


def _run(args: argparse.Namespace) -> int:
    from cellfuse.app.pipeline import run

    setup_logging(args.work / "logs" / "run.log")
    summary = run(
        args.input,
        args.work,
        profile=args.profile,
        address=args.address,
        cfg_options=parse_cfg_options(args.cfg_options),
    )
    print(f"submission: {summary['submission']}")
    if "report" in summary:
        print(f"report: {summary['report']}")
    return 0


def _training(train: Callable[..., Path], default_root: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from cellfuse.config import load_config

        setup_logging()
        cfg = load_config(args.config, parse_cfg_options(args.cfg_options))
        work = args.work_dir or cfg.get("work_dir") or f"{default_root}/{Path(args.config).stem}"
        print(train(cfg, work, resume=args.resume))
        return 0

    return command


def _train_teacher(args: argparse.Namespace) -> int:
    return _training(plugin("train_teacher"), "work/teachers")(args)


def _distill(args: argparse.Namespace) -> int:
    return _training(plugin("distill"), "work/student")(args)


def _pseudo_label(args: argparse.Namespace) -> int:
    from cellfuse.config import load_config

    run_pseudo_label = plugin("pseudo_label")

    setup_logging()
    cfg = load_config(args.config, parse_cfg_options(args.cfg_options))
    images = args.images
    if images is None:
        data = cfg.get("data") or {}
        if "root" not in data or "unlabeled" not in data:
            raise CellfuseError("--images is required when the config has no data.unlabeled")
        images = str(Path(data["root"]) / data["unlabeled"])
    out = args.out or cfg.get("out_dir") or f"work/pseudo/{Path(args.config).stem}"
    summary = run_pseudo_label(
        cfg,
        images,
        out,
        address=args.address,
        num_workers=args.num_workers,
        progress=False if args.no_progress else None,
    )
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 3


def _export(args: argparse.Namespace) -> int:
    from cellfuse.io import read_image
    from cellfuse.layout import list_images

    export_student = plugin("export_student")

    setup_logging()
    images = []
    if args.check:
        p = Path(args.check)
        images = [read_image(f) for f in ([p] if p.is_file() else list_images(p)[:3])]
    result = export_student(
        args.checkpoint,
        args.out,
        name=args.name,
        exporter=args.exporter,
        program=not args.no_pt2,
        check_images=images,
    )
    print_json(result)
    return 0


def _output_formats(text: str) -> list[str]:
    from cellfuse.census import OUTPUT_FORMATS

    formats = text.split(",")
    if not formats or set(formats) - set(OUTPUT_FORMATS):
        raise argparse.ArgumentTypeError(f"comma-separated values from {', '.join(OUTPUT_FORMATS)}")
    return formats


def _predict(args: argparse.Namespace) -> int:
    from cellfuse.errors import LayoutError
    from cellfuse.layout import list_images

    model_key, predict_files = plugin("model_key"), plugin("predict_files")
    StudentPredictor = plugin("student_predictor")

    setup_logging()
    src = Path(args.input)
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = list_images(src / "images" if (src / "images").is_dir() else src)
        if not files:
            raise LayoutError(f"{src}: no image files to predict")
    else:
        raise LayoutError(f"{src}: no such file or folder")
    overrides = {k: getattr(args, k) for k in ("tile", "overlap", "batch", "diameter")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.local_scale:
        overrides["local_scale"] = True
    if args.flip_average and args.view_vote:
        raise CellfuseError("--flip-average and --view-vote: choose one kind of test-time views")
    if args.flip_average:
        overrides["flip_average"] = True
    if args.view_vote:
        overrides["view_vote"] = True
    ray_pred = None
    if args.address or args.workers:
        if not args.onnx:
            raise CellfuseError("--address/--workers (Ray slide blocks) need --onnx")
        pred = ray_pred = plugin("ray_slide_predictor")(
            args.onnx,
            address=args.address,
            num_workers=args.workers,
            threads=max(args.threads, 1),
            overrides=overrides,
        )
    elif args.checkpoint:
        pred = StudentPredictor.from_checkpoint(
            args.checkpoint,
            device=args.device,
            backend=args.backend,
            threads=args.threads,
            **overrides,
        )
    else:
        pred = StudentPredictor.from_onnx(args.onnx, threads=args.threads, **overrides)
    key = model_key(args.checkpoint or args.onnx, {**overrides, "backend": args.backend})
    try:
        summary = predict_files(
            pred,
            files,
            args.out,
            key=key,
            progress=False,
            tile_progress=not args.no_progress,
            outputs=args.outputs,
            stream=True if args.stream or ray_pred else None,
        )
    finally:
        if ray_pred is not None:
            ray_pred.close()
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "failures")}))
    for error in summary["failures"].values():
        print(f"error: {error}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _evaluate(args: argparse.Namespace) -> int:
    from cellfuse.scoring import evaluate_dirs

    setup_logging()
    out = args.out if args.out is not None else args.pred_dir.resolve().parent / "eval"
    report = evaluate_dirs(args.truth_dir, args.pred_dir, args.thresholds)
    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "per_image.csv")
    report.to_json(out / "summary.json")
    print(report.table())
    print(f"report: {out / 'per_image.csv'}, {out / 'summary.json'}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from cellfuse.submission import write_submission

    setup_logging()
    csv_path = write_submission(
        args.pred_dir, args.test_images_dir, args.out_dir, sample_submission=args.sample_submission
    )
    print(f"wrote {csv_path}")
    return 0


def _suggest(args: argparse.Namespace) -> int:
    try:
        return plugin("suggest")(args.rest)
    except SystemExit as e:  # its own --help (0) or usage error (2)
        return int(e.code or 0)


def _check(args: argparse.Namespace) -> int:
    if args.submission is None:
        return _check_input(args)
    from cellfuse.submission import check_submission

    setup_logging()
    try:
        problems = check_submission(
            args.submission, args.test_images, sample_submission=args.sample_submission
        )
    except CellfuseError as e:
        problems = [str(e)]
    for p in problems:
        print(p)
    verdict = f"INVALID, {len(problems)} problem(s)" if problems else "valid"
    print(f"{args.submission}: {verdict}")
    return 1 if problems else 0


def _check_input(args: argparse.Namespace) -> int:
    from cellfuse.check import check_input, print_report

    if args.input is None and args.profile is None:
        raise CellfuseError(
            "cellfuse check: give an INPUT folder, --profile NAME or --submission OUT_DIR"
        )
    setup_logging()
    status = 0
    if args.profile is not None:
        status = _preflight(
            args.profile, args.input or Path("."), parse_cfg_options(args.cfg_options)
        )
    if args.input is not None:
        report = check_input(args.input, args.work, threads=args.threads)
        status = max(status, print_report(report, args.json))
    return status


def _preflight(profile: str, input_dir: Path, cfg_options: dict | None) -> int:
    """Print the profile's preflight lines (cellfuse.nn.preflight); 2 on errors."""
    from cellfuse.config import load_config, profile_path

    cfg = load_config(profile_path(profile), cfg_options)
    problems = plugin("preflight")(cfg, profile, input_dir)
    for p in problems:
        print(p.line, file=sys.stderr)
    errors = sum(p.level == "error" for p in problems)
    print(f"profile {profile}: {errors} errors, {len(problems) - errors} warnings on this machine")
    return 2 if errors else 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from cellfuse.metric import THRESHOLDS

    ap = argparse.ArgumentParser(
        prog="cellfuse",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="input folder -> submission + report (resumable)")
    p.add_argument("--input", required=True, type=Path, help="Med-MLE-bench layout folder")
    p.add_argument("--work", required=True, type=Path, help="work folder (resumable)")
    p.add_argument("--profile", default="demo", help="configs/pipeline/<profile>.py")
    p.add_argument("--address", help="Ray cluster for pseudo-labelling ('auto' or HOST:PORT)")
    _add_cfg_options(p)
    p.set_defaults(func=_run)

    for name, func, what in (
        ("train-teacher", _train_teacher, "train a teacher (the config's teacher.type)"),
        ("distill", _distill, "train the student on labels + pseudo-labels"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("config", help="config file (path, or relative to the shipped configs)")
        p.add_argument("--work-dir", help="default: work/<teachers|student>/<config stem>")
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        _add_cfg_options(p)
        p.set_defaults(func=func)

    p = sub.add_parser("pseudo-label", help="fuse the teachers' predictions (Ray, resumable)")
    p.add_argument("config")
    p.add_argument("--images", help="image folder (default: <data.root>/<data.unlabeled>)")
    p.add_argument("--out", help="output folder (default: work/pseudo/<config stem>)")
    p.add_argument("--address", help="Ray cluster: 'auto' or HOST:PORT (default: local)")
    p.add_argument("--num-workers", type=int, help="Ray workers (0 = serial, no Ray)")
    p.add_argument("--no-progress", action="store_true")
    _add_cfg_options(p)
    p.set_defaults(func=_pseudo_label)

    p = sub.add_parser("export", help="student checkpoint -> ONNX + sidecar, parity checked")
    p.add_argument("checkpoint")
    p.add_argument("--out", default="work/export")
    p.add_argument("--name", default="student")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"])
    p.add_argument("--no-pt2", action="store_true", help="skip the torch.export program")
    p.add_argument("--check", help="image file or folder for the parity check (3 images)")
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="segment images or slides of any size with the student")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", help="exported student (.onnx with its .json sidecar); no torch")
    src.add_argument("--checkpoint", help="student training checkpoint (.pth); needs torch")
    p.add_argument("--input", required=True, help="image file or folder (or folder/images)")
    p.add_argument("--out", required=True)
    p.add_argument("--tile", type=int, help="tile side at the network scale (px)")
    p.add_argument("--overlap", type=int, help="tile overlap at the network scale (px)")
    p.add_argument("--batch", type=int, help="tiles per network call")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    p.add_argument("--diameter", type=float, help="cell diameter in px (default: measured)")
    p.add_argument("--device", default="auto", help="torch device for --checkpoint")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    p.add_argument(
        "--address",
        help="Ray cluster ('auto' or HOST:PORT): slides are split into tile blocks run by "
        "its workers (streamed labels, identical to one process; needs --onnx)",
    )
    p.add_argument("--workers", type=int, help="Ray workers (without --address: a local Ray)")
    p.add_argument(
        "--local-scale",
        action="store_true",
        help="measure the cell size per region and predict each region at its own scale",
    )
    p.add_argument(
        "--flip-average",
        action="store_true",
        help="test-time views: average the network's outputs over the image and its 3 flips "
        "(4x the network time)",
    )
    p.add_argument(
        "--view-vote",
        action="store_true",
        help="test-time views: segment the image and its 3 flips and fuse the 4 sets of cells "
        "by mask voting (~4x the time; images held in memory)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="write labels band by band into a label pyramid, never holding the image or its "
        "labels (default: only for images above 100 Mpx)",
    )
    p.add_argument(
        "--outputs",
        default=["tiff"],
        type=_output_formats,
        help="comma-separated, per image: tiff (<id>_label.tiff), ome-tiff (<id>_label.ome.tif, "
        "tiled pyramid), csv (<id>_cells.csv, per-cell table), geojson (<id>_cells.geojson, "
        "QuPath cell polygons)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="challenge F1 of predicted labels against truth")
    p.add_argument("truth_dir", metavar="TRUTH_DIR", type=Path)
    p.add_argument("pred_dir", metavar="PRED_DIR", type=Path, help="predicted <id>_label.tiff")
    p.add_argument("--out", type=Path, help="report folder (default PRED_DIR/../eval)")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS), metavar="T")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("submit", help="write a challenge submission folder")
    p.add_argument("pred_dir", metavar="PRED_DIR", type=Path)
    p.add_argument("test_images_dir", metavar="TEST_IMAGES_DIR", type=Path)
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    p.add_argument("--sample-submission", type=Path, metavar="CSV")
    p.set_defaults(func=_submit)

    p = sub.add_parser(
        "suggest", help="which unlabeled images to label next", add_help=False, prefix_chars="\0"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_suggest)

    p = sub.add_parser(
        "check",
        help="check an input folder before a run (exit 2 on any problem), or a submission "
        "folder with --submission (exit 1 when invalid)",
    )
    p.add_argument(
        "input", metavar="INPUT", type=Path, nargs="?", help="Med-MLE-bench layout folder"
    )
    p.add_argument("--work", type=Path, help="work folder of the run (free-space check)")
    p.add_argument("--threads", type=int, help="reader threads")
    p.add_argument("--json", type=Path, help="also write the input report here")
    p.add_argument(
        "--profile",
        help="also check this machine for the profile (GPU, mmcv ops, checkpoints, memory)",
    )
    _add_cfg_options(p)
    p.add_argument(
        "--submission", type=Path, metavar="OUT_DIR", help="check this submission folder"
    )
    p.add_argument("--test-images", type=Path, metavar="DIR", help="with --submission")
    p.add_argument("--sample-submission", type=Path, metavar="CSV")
    p.set_defaults(func=_check)
    return ap


def _log_to_files(exc: BaseException) -> None:
    """Record ``exc`` in the log files (``run``'s ``logs/run.log``) only: stderr gets the one
    line of :func:`cellfuse.entry.report`."""
    rec = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "%s: %s", (type(exc).__name__, exc), None
    )
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(rec)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellfuse`` script; returns the exit status."""
    from cellfuse.entry import pop_debug
    from cellfuse.entry import report as report_error

    ap = build_parser()
    argv, debug = pop_debug(argv)  # --debug anywhere: tracebacks (else one line per error)
    if not argv:
        ap.print_help()
        return 2
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    if args.command is None:
        ap.print_help()
        return 2
    t0 = time.time()
    try:
        return args.func(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - one line on stderr, exit 2 (130 for Ctrl-C)
        _log_to_files(e)
        return report_error(e, debug)
    finally:
        log.debug("%s took %.1f s", args.command, time.time() - t0)


if __name__ == "__main__":
    sys.exit(main())
