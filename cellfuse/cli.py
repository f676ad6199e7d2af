"""``cellfuse`` command line: run the pipeline, evaluate, write or check a submission.

cellfuse run --input DIR --work DIR [--profile demo|bench|full] [--address RAY] [--cfg-options k=v ...]
cellfuse check INPUT [--work DIR] [--threads N] [--json OUT]
cellfuse evaluate TRUTH_DIR PRED_DIR [--out DIR]
cellfuse submit PRED_DIR TEST_IMAGES_DIR OUT_DIR [--sample-submission CSV]
cellfuse submit --check OUT_DIR [--test-images DIR]
cellfuse train-teacher CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume]

Any command: --debug shows the traceback of an error (else: one line, exit 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cellfuse.errors import CellfuseError

log = logging.getLogger("cellfuse")


def _setup_logging(log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _run(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="cellfuse run", description="input/ -> submission + report")
    ap.add_argument("--input", required=True, type=Path, help="Med-MLE-bench layout folder")
    ap.add_argument("--work", required=True, type=Path, help="work folder (resumable)")
    ap.add_argument(
        "--profile", default="demo", help="configs/pipeline/<profile>.py: demo, bench, full"
    )
    ap.add_argument(
        "--address", help="Ray cluster to join for pseudo-labelling ('auto' or HOST:PORT)"
    )
    ap.add_argument("--cfg-options", nargs="+", default=None, help="override profile keys, k=v")
    args = ap.parse_args(argv)
    _setup_logging(args.work / "logs" / "run.log")
    from cellfuse.pipeline import run

    opts = None
    if args.cfg_options:
        from mmengine.config import DictAction

        ns = argparse.Namespace()
        DictAction(option_strings=[], dest="o")(ap, ns, args.cfg_options)
        opts = ns.o
    summary = run(
        args.input, args.work, profile=args.profile, address=args.address, cfg_options=opts
    )
    print(f"submission: {summary['submission']}")
    if "report" in summary:
        print(f"report: {summary['report']}")
    return 0


def _train_teacher(argv: Sequence[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from train_teacher import main as train_main

    train_main(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from cellfuse.entry import pop_debug, report

    argv, debug = pop_debug(argv)  # --debug anywhere: tracebacks (else one line per error)
    commands = {"run", "check", "evaluate", "submit", "train-teacher"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "run":
            return _run(rest)
        if cmd == "train-teacher":
            return _train_teacher(rest)
        _setup_logging()
        if cmd == "check":
            from cellfuse.check import main as check_main

            return check_main(rest)
        if cmd == "evaluate":
            from cellfuse.metric import evaluate_main

            return evaluate_main(rest)
        from cellfuse.submission import submit_main

        return submit_main(rest)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - one line and exit 2 (130 for Ctrl-C)
        if isinstance(e, CellfuseError):
            log.error("%s", e)
        return report(e, debug)


if __name__ == "__main__":
    sys.exit(main())
