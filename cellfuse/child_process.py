"""Run a function in a child Python process that dies with its parent.

The pipeline trains its two students side by side, one process each. A run killed half way
must resume cleanly, so no orphan may keep training and writing checkpoints after its
parent is gone: the child asks the kernel for SIGKILL when the parent dies (Linux
``PR_SET_PDEATHSIG``) and, everywhere, a watchdog thread exits when its parent changes.

    run_in_child("distill_file", cfg_file, work_dir, log_file=work_dir / "train.log")

The target is a role of :mod:`cellfuse.plugins` (``"distill_file"``) or ``"module:function"``.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cellfuse.config import package_parent
from cellfuse.errors import CellfuseError
from cellfuse.log_setup import setup_logging

log = logging.getLogger(__name__)


class ChildError(CellfuseError):
    """A child process exited with an error."""


def run_in_child(
    target: str,
    *args: str,
    log_file: str | Path,
    heartbeat_s: float = 60.0,
    stop: threading.Event | None = None,
) -> None:
    """Call ``module:function(*args)`` in a fresh interpreter and wait for it.

    Args:
        target: a :mod:`cellfuse.plugins` role or ``"package.module:function"``; the
            function takes string arguments.
        *args: its arguments.
        log_file: the child's stdout and stderr are appended here.
        heartbeat_s: every this many seconds, log the last line of the child's log (its
            progress bar), so the parent's log shows the child is alive.
        stop: when set (by the thread that got Ctrl-C, say), the child is killed; for
            callers that wait in worker threads, where KeyboardInterrupt never arrives.

    Raises:
        ChildError: the child exited non-zero, or was stopped; the message holds the end
            of its log.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # the child imports from where this process imports cellfuse (a checkout or site-packages)
    here = str(package_parent())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-m",
        "cellfuse.child_process",
        str(os.getpid()),
        target,
        *map(str, args),
    ]
    with open(log_file, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            beat = time.monotonic() + heartbeat_s
            while True:
                try:
                    rc = proc.wait(timeout=min(1.0, heartbeat_s))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stop is not None and stop.is_set():
                    proc.kill()
                    rc = proc.wait()
                    break
                if time.monotonic() >= beat:
                    beat += heartbeat_s
                    log.info("%s: %s", log_file.parent.name, last_line(log_file))
        except BaseException:  # Ctrl-C or an error in this process: take the child down too
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        tail = _tail(log_file, 2000)
        raise ChildError(f"{target} failed (exit {rc}); log {log_file}:\n{tail}")


def _tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of a file as text (a long training log is not read whole)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(fh.tell() - size, 0))
        return fh.read().decode(errors="replace")


def last_line(path: Path, size: int = 4096) -> str:
    """The last non-empty line of a log file, progress-bar updates (``\\r``) split too."""
    text = _tail(path, size)
    lines = [x.strip() for x in text.replace("\r", "\n").split("\n") if x.strip()]
    return lines[-1] if lines else ""


def _die_with(parent: int) -> None:
    """Exit when ``parent`` is gone (kernel signal on Linux, a watchdog thread everywhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before we asked
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def main(argv: list[str]) -> None:
    parent, target, *args = argv
    _die_with(int(parent))
    setup_logging()
    if ":" in target:
        module, _, func = target.partition(":")
        fn = getattr(importlib.import_module(module), func)
    else:
        from cellfuse.plugins import plugin

        fn = plugin(target)
    fn(*args)


if __name__ == "__main__":
    main(sys.argv[1:])
