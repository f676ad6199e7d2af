"""A pseudo-labelling driver for the fault tests (run as a subprocess by test_faults.py).

    python tests/fault_driver.py IMAGES OUT [--kill driver|raylet|agent] [--after N]

Runs the classical ensemble (a teacher slowed to ``DELAY`` s per image, so kills land
mid-run) with 2 Ray workers on IMAGES into OUT. With ``--kill``, once N images are in the
manifest a thread SIGKILLs this process (``driver``), the local raylet (``raylet``) or the
dashboard agent (``agent``, which takes the raylet down with it). (A killed worker:
``test_pseudolabel.py``, where the teacher kills its own worker.)
Prints the run summary as JSON on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from teachers.classical import ClassicalTeacher

DELAY = 0.4
KILLED_AT: list[float] = []


class SlowTeacher(ClassicalTeacher):
    """The classical teacher, ``delay`` seconds slower per image."""

    def __init__(self, delay: float = DELAY, **kwargs):
        super().__init__(**kwargs)
        self.delay = float(delay)

    def predict(self, image):
        time.sleep(self.delay)
        return super().predict(image)


def config(delay: float = DELAY) -> dict:
    from helpers import two_teacher_config

    teacher = dict(type="slow", delay=delay, sigma=1.0, min_distance=7)
    return two_teacher_config(
        teacher, {"slow": "fault_driver:SlowTeacher"}, max_restarts=1, max_task_retries=1
    )


def _ray_pids(kind: str) -> list[int]:
    import ray

    node = ray._private.worker._global_node
    if kind in ("raylet", "agent"):
        ptype = {"raylet": "raylet", "agent": "dashboard_agent"}[kind]
        procs = node.all_processes.get(ptype, [])
        if not procs and kind == "agent":  # the agent is the raylet's child here
            return _children_named(node.all_processes["raylet"][0].process.pid, "DashboardAgent")
        return [p.process.pid for p in procs]
    raise ValueError(kind)


def _children_named(pid: int, word: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and word in cmd:
            out.append(int(d.name))
    return out


def _killer(kind: str, out: Path, after: int) -> None:
    manifest = out / "manifest.jsonl"
    while not manifest.exists() or len(manifest.read_text().splitlines()) < after:
        time.sleep(0.02)
    if kind == "driver":
        os.kill(os.getpid(), signal.SIGKILL)
    pids = _ray_pids(kind)
    for pid in pids:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80]
        print(f"killing {kind}: {pid} {cmd!r}", file=sys.stderr, flush=True)
    KILLED_AT.append(time.monotonic())
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kill", choices=["driver", "raylet", "agent"])
    ap.add_argument("--after", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from cellfuse.entry import report
    from ensemble.pseudolabel import run_pseudo_label

    if args.kill:
        threading.Thread(
            target=_killer, args=(args.kill, args.out, args.after), daemon=True
        ).start()
    try:
        summary = run_pseudo_label(config(), args.images, args.out, progress=False)
    except Exception as exc:  # noqa: BLE001 - the CLI's one line
        if KILLED_AT:
            print(
                f"stopped {time.monotonic() - KILLED_AT[0]:.1f} s after the kill", file=sys.stderr
            )
        return report(exc, debug=False)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
