"""Notice a lost Ray node instead of waiting on it forever.

When the raylet of the driver's node dies (killed, OOM, or its dashboard agent dying takes
it down), the actors on it die, their restarts are spent, and a replacement actor or a
``ray.get`` on a retried task waits for a node that will never come: the run hangs. The
driver therefore never waits unbounded: every ``ray.wait`` has a timeout, and
:class:`NodeWatch` checks

- after every wait, the processes this driver started (when it started Ray itself): the
  raylet and the GCS must be running (the actors of a node whose raylet died may still
  answer for a while, but nothing new can start there);
- at least every ``poll`` seconds, the GCS's node table (bounded by a timeout): the driver's node must be alive and some
  alive node must have CPUs (the surviving nodes of a cluster take over the images of a
  dead one; actors on them are restarted or replaced by Ray).

A failed check raises :class:`NodeLostError`: the run stops with one clear line, the
images already recorded in the manifest are kept, and re-running the same command resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cellfuse.errors import CellfuseError

logger = logging.getLogger(__name__)

RESUME_HINT = "re-run the same command to resume (finished images are kept)"


class NodeLostError(CellfuseError):
    """The Ray node this run depends on is gone; the message says how to resume."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"pseudo-labelling stopped: Ray node lost ({detail}); {RESUME_HINT}")


def _bounded(fn, timeout: float) -> tuple[bool, Any]:
    """``(True, fn())`` if it returns within ``timeout`` s, else ``(False, None)`` (the call
    is left running in a daemon thread: an unanswering GCS must not hang the driver)."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - reported as no answer
            box["error"] = exc

    t = threading.Thread(target=call, daemon=True, name="ray-liveness")
    t.start()
    t.join(timeout)
    if t.is_alive() or "error" in box:
        if "error" in box:
            logger.warning("Ray node query failed: %s", box["error"])
        return False, None
    return True, box.get("value")


class NodeWatch:
    """Liveness of the Ray node(s) a driver depends on (see the module docstring).

    Args:
        ray: the ``ray`` module (initialised).
        owns: this process started the local Ray (its processes can be watched directly).
        poll: seconds between checks in :meth:`wait`.
        query_timeout: seconds the GCS may take to answer the node query.
    """

    def __init__(self, ray, *, owns: bool, poll: float = 5.0, query_timeout: float = 15.0):
        self.ray = ray
        self.poll = poll
        self.query_timeout = query_timeout
        self.node = None
        if owns:
            try:
                self.node = ray._private.worker._global_node
            except AttributeError:  # private API moved: the GCS check still applies
                self.node = None
        self.node_id = ray.get_runtime_context().get_node_id()
        self.last_check = time.monotonic()

    def check_local(self) -> None:
        """Raise :class:`NodeLostError` when a vital process this driver started has exited
        (a local poll, cheap enough for every wait)."""
        if self.node is not None and hasattr(self.node, "dead_processes"):
            dead = sorted({ptype for ptype, _ in self.node.dead_processes()})
            vital = [p for p in dead if p in ("raylet", "gcs_server")]
            if vital:
                raise NodeLostError(f"the local {' and '.join(vital)} exited")

    def check(self) -> None:
        """Raise :class:`NodeLostError` when the run's node is gone (see the docstring)."""
        self.last_check = time.monotonic()
        self.check_local()
        answered, nodes = _bounded(self.ray.nodes, self.query_timeout)
        if not answered:
            raise NodeLostError(
                f"the Ray cluster did not answer a node query within {self.query_timeout:g} s"
            )
        alive = [n for n in nodes if n.get("Alive")]
        if self.node_id not in {n.get("NodeID") for n in alive}:
            raise NodeLostError(f"this machine's node {self.node_id[:12]} is dead")
        if not any(n.get("Resources", {}).get("CPU", 0) > 0 for n in alive):
            raise NodeLostError("no alive node with CPUs is left")

    def due(self) -> bool:
        return time.monotonic() - self.last_check >= self.poll

    def wait(self, refs: list, num_returns: int = 1) -> list:
        """``ray.wait`` for ``num_returns`` of ``refs`` that checks the node every ``poll``
        seconds while waiting (and when a check is due); returns the ready refs."""
        while True:
            ready, _ = self.ray.wait(refs, num_returns=num_returns, timeout=self.poll)
            if self.due():
                self.check()
            else:
                self.check_local()
            if len(ready) >= num_returns:
                return ready

    def get_all(self, refs: list) -> list:
        """``ray.get(refs)`` after waiting for all of them with :meth:`wait`."""
        if refs:
            self.wait(list(refs), num_returns=len(refs))
        return self.ray.get(refs)


def shutdown_bounded(ray, timeout: float = 20.0) -> None:
    """``ray.shutdown()`` that gives up after ``timeout`` s (a dead raylet can stall it)."""
    done, _ = _bounded(ray.shutdown, timeout)
    if not done:
        logger.warning("ray.shutdown() did not finish in %g s; leaving it", timeout)
