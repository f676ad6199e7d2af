"""Pseudo-label a folder of images with a teacher ensemble, in parallel with Ray.

Driver / worker split::

    run_pseudo_label(cfg, images, out)          # driver: plan, dispatch, manifest, progress
      -> PseudoLabeler(**worker_kwargs)         # one per worker (a Ray actor, or in-process)
           loads every teacher ONCE, then per image: read -> teachers -> fuse -> write

Each worker writes its image's outputs itself, atomically, into ``out``:

- ``<id>_label.tiff``  confident cells (uint16/uint32 labels),
- ``<id>_conf.json``   per-instance confidences (``scores[i]`` belongs to label ``i + 1``),
- ``<id>_ignore.tiff`` uint8 ignore mask (1 = do not learn from this pixel),
- ``<id>_votes.tiff``  float32 foreground vote (only with ``save_votes=True``),
- ``cache/<teacher>/<id>_label.tiff`` + ``<id>_scores.json`` each teacher's raw output
  (with ``cache_teachers=True``), so fusion can be re-tuned without re-running teachers,

and returns only a small summary. The driver appends one line per finished image to
``manifest.jsonl`` (it is the only writer). A re-run skips an image whose latest manifest
entry has the same input SHA-1 and config hash and whose outputs exist (or that failed on an
unreadable input); everything else is (re)done.

Failures: an unreadable/invalid image (:class:`~cellfuse.errors.CellfuseError`) is recorded
as failed at once; any other exception is retried up to ``retries`` times, then recorded as
failed, and the run goes on. A worker process that dies is restarted by Ray
(``max_restarts``) and its in-flight image re-run (``max_task_retries``); a worker whose
restarts are spent is replaced by a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellfuse.config import dataclass_from_dict, package_parent
from cellfuse.errors import CellfuseError, ConfigError
from cellfuse.fusion import FusionParams
from ensemble.manifest import MANIFEST, Manifest, outputs_exist, plan_jobs
from ensemble.teacher_specs import (
    TeacherSpec,
    config_hash,
    config_teachers,
    plain,
    read_val_f1,
    resolve_teachers,
)
from ensemble.worker import PseudoLabeler

logger = logging.getLogger(__name__)

#: where the workers import cellfuse, teachers and ensemble from (a checkout or site-packages)
REPO_ROOT = package_parent()

__all__ = [
    "MANIFEST",
    "Manifest",
    "PseudoLabeler",
    "RunOptions",
    "TeacherSpec",
    "outputs_exist",
    "read_val_f1",
    "resolve_teachers",
    "run_pseudo_label",
]


@dataclass
class RunOptions:
    """The config's ``pseudo`` dict.

    Attributes:
        num_workers: Ray actors (0 = serial, in this process); None = all CPUs of the cluster.
        retries: extra attempts for an image whose processing raised.
        max_restarts: Ray restarts of a worker process that died.
        max_task_retries: Ray re-runs of the in-flight image of a worker that died.
        cache_teachers: keep raw teacher outputs under ``out/cache``.
        save_votes: also write ``<id>_votes.tiff``.
        runtime_env: Ray runtime_env (e.g. ``working_dir`` for a remote cluster); this
            repository is added to the workers' PYTHONPATH unless it sets one.
        custom_teachers: extra teacher types, ``type -> "module:Class"``.
        replace_dead_workers: fresh actors created when a worker's restarts are spent.
        poll_seconds: the driver checks that its Ray node is alive at least this often
            (:mod:`ensemble.liveness`); a lost node stops the run with a clear error.
    """

    num_workers: int | None = 2
    retries: int = 2
    max_restarts: int = 2
    max_task_retries: int = 2
    cache_teachers: bool = True
    save_votes: bool = False
    runtime_env: dict | None = None
    custom_teachers: dict | None = None
    replace_dead_workers: int = 2
    poll_seconds: float = 5.0

    @classmethod
    def from_dict(cls, d: Mapping | None) -> RunOptions:
        return dataclass_from_dict(cls, plain(d or {}), "pseudo")


def run_pseudo_label(
    cfg: Mapping,
    images: str | os.PathLike[str] | Sequence[Path],
    out_dir: str | os.PathLike[str],
    *,
    address: str | None = None,
    num_workers: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Pseudo-label ``images`` into ``out_dir`` with the ensemble of ``cfg``.

    Args:
        cfg: config with ``teachers``, ``fusion``, ``refiner`` and ``pseudo`` (see
            ``configs/ensemble/``).
        images: a folder (``images/`` sub-folder or the folder itself) or a list of files.
        out_dir: output folder (created).
        address: Ray cluster to join (``"auto"``, ``"ip:port"``); default: ``$RAY_ADDRESS``
            or a local Ray started with ``num_workers`` CPUs. Ignored when Ray is already
            initialised in this process.
        num_workers: overrides ``cfg.pseudo.num_workers``; 0 runs serially in-process.
        progress: tqdm bar (default: when stderr is a terminal).

    Returns:
        Run summary: ``total``, ``skipped``, ``done``, ``failed``, ``failed_ids``,
        ``seconds`` (wall, all of it), ``startup_seconds`` (Ray start + teachers loaded),
        ``images_per_s`` (after start-up), ``workers``, ``config_hash``; also written to
        ``out_dir/last_run.json``.
    """
    from cellfuse.io import atomic_write_text
    from cellfuse.layout import list_samples

    opts = RunOptions.from_dict(cfg.get("pseudo"))
    if num_workers is not None:
        opts.num_workers = num_workers
    fusion = FusionParams.from_config(cfg)
    specs = config_teachers(cfg, opts.custom_teachers)
    refiner = cfg.get("refiner")
    if refiner is not None and refiner not in {s.name for s in specs}:
        raise ConfigError(
            f"refiner {refiner!r} is not one of the teachers {[s.name for s in specs]}"
        )
    if refiner is not None and len(specs) < 2:
        raise ConfigError("a refiner needs at least one other teacher to prompt it")
    chash = config_hash(specs, fusion, refiner, {"save_votes": opts.save_votes})

    if isinstance(images, str | os.PathLike):
        paths = [s.image for s in list_samples(images, require_labels=False)]
    else:
        paths = [Path(p) for p in images]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST)
    jobs, skipped = plan_jobs(paths, out, chash, manifest)
    logger.info(
        "%d images: %d to do, %d already done (config %s)", len(paths), len(jobs), skipped, chash
    )

    worker_kwargs = dict(
        specs=specs,
        fusion=fusion,
        out_dir=str(out.resolve()),
        refiner=refiner,
        cache_teachers=opts.cache_teachers,
        save_votes=opts.save_votes,
        custom_teachers=opts.custom_teachers,
    )
    common = {
        "config_hash": chash,
        "teachers": {
            s.name: {"checkpoint": s.checkpoint, "sha1": s.checkpoint_sha1, "weight": s.weight}
            for s in specs
        },
    }
    tally = _Tally(manifest, common, len(jobs), progress)
    t0 = time.perf_counter()
    workers = 0
    try:
        if jobs and opts.num_workers == 0:
            workers = 1
            _run_serial(jobs, worker_kwargs, opts, tally)
        elif jobs:
            workers = _run_ray(jobs, worker_kwargs, opts, tally, address)
    finally:
        tally.close()
    seconds = time.perf_counter() - t0
    summary = {
        "total": len(paths),
        "skipped": skipped,
        "done": tally.done,
        "failed": len(tally.failed),
        "failed_ids": tally.failed,
        "seconds": round(seconds, 2),
        "startup_seconds": round(tally.startup_seconds, 2),
        "images_per_s": _rate(len(jobs), seconds - tally.startup_seconds),
        "workers": workers,
        "config_hash": chash,
    }
    atomic_write_text(out / "last_run.json", json.dumps(summary, indent=2) + "\n")
    logger.info("pseudo-labels: %s", {k: v for k, v in summary.items() if k != "failed_ids"})
    return summary


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 3) if n and seconds > 0 else 0.0


class _Tally:
    """Manifest lines + counters + the progress bar."""

    def __init__(
        self, manifest: Manifest, common: Mapping, total: int, progress: bool | None
    ) -> None:
        from tqdm import tqdm

        self.manifest, self.common = manifest, dict(common)
        self.done, self.failed = 0, []
        self.startup_seconds = 0.0
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(total=total, desc="pseudo-label", unit="img", disable=not show)

    def record(self, job: Mapping, result: Mapping, attempts: int) -> None:
        entry = {
            "id": job["id"],
            "image": job["path"],
            "sha1": job["sha1"],
            **self.common,
            "status": result.get("status", "failed"),
            "error": result.get("error"),
            "error_kind": result.get("error_kind"),
            "n_cells": result.get("n_cells", 0),
            "stats": result.get("stats"),
            "outputs": result.get("outputs"),
            "seconds": result.get("seconds"),
            "node": result.get("node"),
            "attempts": attempts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.manifest.append(entry)
        if entry["status"] == "ok":
            self.done += 1
        else:
            self.failed.append(job["id"])
            logger.warning("%s failed: %s", job["id"], entry["error"])
        self.bar.update(1)
        self.bar.set_postfix(done=self.done, failed=len(self.failed))

    def close(self) -> None:
        self.bar.close()


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


def _run_serial(
    jobs: Sequence[dict], worker_kwargs: Mapping, opts: RunOptions, tally: _Tally
) -> None:
    t_start = time.perf_counter()
    worker = PseudoLabeler(**worker_kwargs)
    tally.startup_seconds = time.perf_counter() - t_start
    for job in jobs:
        for attempt in range(1, opts.retries + 2):
            try:
                tally.record(job, worker.process(job), attempt)
                break
            except Exception as exc:  # noqa: BLE001 - any failure of one image is recorded
                logger.warning("%s: attempt %d failed: %s", job["id"], attempt, exc)
                if attempt > opts.retries:
                    tally.record(job, {"status": "failed", "error": _error_text(exc)}, attempt)


def _runtime_env(user: Mapping | None) -> dict:
    """The Ray job's runtime_env: the user's, with the folder cellfuse is imported from added
    to the workers' PYTHONPATH unless the user set one (workers import ``teachers``)."""
    env = dict(plain(user or {}))
    env_vars = {str(k): str(v) for k, v in dict(env.get("env_vars") or {}).items()}
    if "PYTHONPATH" not in env_vars:
        paths = (str(REPO_ROOT), os.environ.get("PYTHONPATH", ""))
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["env_vars"] = env_vars
    return env


def _run_ray(
    jobs: Sequence[dict],
    worker_kwargs: Mapping,
    opts: RunOptions,
    tally: _Tally,
    address: str | None,
) -> int:
    """Dispatch ``jobs`` to Ray actors with a ``ray.wait`` loop; returns the worker count."""
    import ray

    t_start = time.perf_counter()
    owns = not ray.is_initialized()
    if owns:
        address = address or os.environ.get("RAY_ADDRESS") or None
        init: dict[str, Any] = dict(
            address=address,
            runtime_env=_runtime_env(opts.runtime_env),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
        if address is None:
            init["num_cpus"] = opts.num_workers or os.cpu_count()
        ray.init(**init)
    actor_cls = ray.remote(
        num_cpus=1, max_restarts=opts.max_restarts, max_task_retries=opts.max_task_retries
    )(PseudoLabeler)
    from ensemble.liveness import NodeWatch, shutdown_bounded

    watch = NodeWatch(ray, owns=owns, poll=opts.poll_seconds)
    n_workers = opts.num_workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    n_workers = min(n_workers, len(jobs))
    actors = [actor_cls.remote(**worker_kwargs) for _ in range(n_workers)]
    try:
        _dispatch(ray, actor_cls, actors, jobs, worker_kwargs, opts, tally, t_start, watch)
        return n_workers
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception as exc:  # noqa: BLE001 - a lost node's actors are gone anyway
                logger.debug("ray.kill: %s", exc)
        if owns:
            shutdown_bounded(ray)


def _dispatch(
    ray,
    actor_cls,
    actors: list,
    jobs,
    worker_kwargs,
    opts: RunOptions,
    tally: _Tally,
    t_start: float,
    watch,
) -> None:
    """The ``ray.wait`` loop: one image in flight per worker; retries; dead-worker replacement.
    Every wait is bounded and the node's liveness checked (``watch``, a
    :class:`~ensemble.liveness.NodeWatch`): a lost node raises NodeLostError, never hangs."""
    from ray.exceptions import RayActorError

    # Wait for every worker to load its teachers, so the throughput excludes start-up.
    try:
        nodes = watch.get_all([a.ping.remote() for a in actors])
    except RayActorError as exc:  # a teacher failed to load: the same on every worker
        raise CellfuseError(f"pseudo-label workers failed to start: {_error_text(exc)}") from exc
    tally.startup_seconds = time.perf_counter() - t_start
    logger.info(
        "%d workers ready on %d node(s) in %.1f s",
        len(actors),
        len(set(nodes)),
        tally.startup_seconds,
    )
    idle = deque(actors)
    pending = deque(jobs)
    attempts: dict[str, int] = {}
    inflight: dict[Any, tuple[Any, dict]] = {}
    replacements = opts.replace_dead_workers
    while pending or inflight:
        while idle and pending:
            actor, job = idle.popleft(), pending.popleft()
            attempts[job["id"]] = attempts.get(job["id"], 0) + 1
            inflight[actor.process.remote(job)] = (actor, job)
        if not inflight:
            break
        ready = watch.wait(list(inflight))
        for ref in ready:
            actor, job = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError as exc:  # incl. ActorDiedError: its restarts are spent
                error = _error_text(exc)
                logger.warning("worker died on %s (restarts spent): %s", job["id"], error)
                watch.check()  # a lost node: stop now, not after replacements that never start
                actors.remove(actor)
                if replacements > 0:
                    replacements -= 1
                    new = actor_cls.remote(**worker_kwargs)
                    actors.append(new)
                    idle.append(new)
            except Exception as exc:  # noqa: BLE001 - RayTaskError wrapping the worker's error
                error = _error_text(getattr(exc, "cause", None) or exc)
                logger.warning("%s: attempt %d failed: %s", job["id"], attempts[job["id"]], error)
                idle.append(actor)
            else:
                tally.record(job, result, attempts[job["id"]])
                idle.append(actor)
                continue
            if attempts[job["id"]] <= opts.retries and actors:
                pending.appendleft(job)
            else:
                tally.record(job, {"status": "failed", "error": error}, attempts[job["id"]])
        if not actors and pending:
            for job in pending:
                tally.record(
                    job,
                    {"status": "failed", "error": "no workers left"},
                    attempts.get(job["id"], 0),
                )
            pending.clear()
