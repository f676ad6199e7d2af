"""cellfuse.child_process: a function in a child process that dies with its parent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellfuse.child_process import ChildError, last_line, run_in_child

HERE = Path(__file__).resolve().parent


def write_pid_and_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def fail(message: str) -> None:
    raise RuntimeError(message)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def test_runs_the_target_and_reports_its_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    run_in_child("os:makedirs", str(tmp_path / "made"), log_file=tmp_path / "ok.log")
    assert (tmp_path / "made").is_dir()
    with pytest.raises(ChildError, match="boom") as err:
        run_in_child("test_child:fail", "boom", log_file=tmp_path / "fail.log")
    assert "RuntimeError" in str(err.value) and "boom" in (tmp_path / "fail.log").read_text()


def test_the_child_dies_with_its_killed_parent(tmp_path):
    """A killed run leaves no orphan behind to keep writing checkpoints."""
    marker = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from cellfuse.child_process import run_in_child; "
            "run_in_child('test_child:write_pid_and_sleep', sys.argv[1], log_file=sys.argv[2])",
            str(marker),
            str(tmp_path / "child.log"),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])},
    )
    deadline = time.time() + 60
    while not marker.exists() or not marker.read_text():
        assert time.time() < deadline and parent.poll() is None, "the child never started"
        time.sleep(0.2)
    child = int(marker.read_text())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child)


def test_the_parent_logs_the_childs_last_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    log = tmp_path / "w" / "train.log"
    with caplog.at_level("INFO", logger="cellfuse.child_process"):
        run_in_child("test_child:progress", log_file=log, heartbeat_s=0.3)
    assert "w: step 2/2" in caplog.text
    assert last_line(log) == "step 2/2"


def progress() -> None:
    import sys

    for i in (1, 2):
        sys.stderr.write(f"\rstep {i}/2")
        sys.stderr.flush()
        time.sleep(1.0)


def test_a_stop_event_kills_the_child(tmp_path, monkeypatch):
    """Ctrl-C reaches the main thread only; threads waiting on children are told by an event."""
    import threading

    monkeypatch.setenv("PYTHONPATH", str(HERE))
    marker, stop = tmp_path / "child.pid", threading.Event()

    def stop_once_started() -> None:
        while not marker.exists() or not marker.read_text():
            time.sleep(0.1)
        stop.set()

    threading.Thread(target=stop_once_started, daemon=True).start()
    t0 = time.time()
    with pytest.raises(ChildError, match="failed"):
        run_in_child(
            "test_child:write_pid_and_sleep", str(marker), log_file=tmp_path / "c.log", stop=stop
        )
    assert time.time() - t0 < 30 and not _alive(int(marker.read_text()))
