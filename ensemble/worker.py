"""The pseudo-label worker: loads every teacher once, then labels images one at a time.

Used in-process for serial runs and wrapped with ``ray.remote`` as the Ray actor. Each image's
outputs are written by the worker itself, atomically (see :mod:`ensemble.pseudolabel`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import CellfuseError
from cellfuse.fusion import FusionParams, FusionResult, fuse, merge_for_prompts
from cellfuse.instances import Instances
from ensemble.teacher_specs import TeacherSpec, sha1_text

logger = logging.getLogger(__name__)


def cache_files(out_dir: Path, teacher: str, image_id: str) -> tuple[Path, Path]:
    """A teacher's cached output of one image: ``(label TIFF, scores JSON)``."""
    folder = out_dir / "cache" / teacher
    return folder / f"{image_id}_label.tiff", folder / f"{image_id}_scores.json"


class PseudoLabeler:
    """Loads every teacher once and pseudo-labels images one at a time.

    Used as is for serial runs and wrapped with ``ray.remote`` as the worker actor.

    Args:
        specs: the ensemble (see :func:`resolve_teachers`).
        fusion: fusion parameters.
        out_dir: output folder.
        refiner: name of a teacher that gets the other teachers' merged cells as prompts.
        cache_teachers: keep each teacher's raw output under ``out_dir/cache``.
        save_votes: also write ``<id>_votes.tiff``.
        custom_teachers: extra ``type -> "module:Class"`` registry entries (plugins).
        threads: torch threads per worker (1, so N workers use N cores).
        fusion_predict: the fusion as a predictor (:meth:`fuse` with ``predict=True``);
            default: ``fusion``.
    """

    def __init__(
        self,
        specs: Sequence[TeacherSpec],
        fusion: FusionParams,
        out_dir: str,
        refiner: str | None = None,
        cache_teachers: bool = True,
        save_votes: bool = False,
        custom_teachers: Mapping[str, str] | None = None,
        threads: int = 1,
        fusion_predict: FusionParams | None = None,
    ) -> None:
        import teachers

        teachers.TEACHER_REGISTRY.update(dict(custom_teachers or {}))
        self.specs = list(specs)
        self.fusion = fusion
        self.fusion_predict = fusion_predict or fusion
        self.out_dir = Path(out_dir)
        self.refiner = refiner
        self.cache_teachers = cache_teachers
        self.save_votes = save_votes
        self.models: dict[str, Any] = {}
        for s in self.specs:
            if s.source is not None:  # a view of another spec's model
                continue
            if s.checkpoint is None:
                self.models[s.name] = teachers.build_teacher(s.cfg)
            else:
                self.models[s.name] = teachers.load_teacher(s.cfg, s.checkpoint)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.node = _node_id()
        logger.info("worker on %s loaded teachers %s", self.node, list(self.models))

    @classmethod
    def from_config(cls, cfg: Mapping, out_dir: str, *, threads: int = 1) -> PseudoLabeler:
        """The ensemble of a pseudo-label config loaded in this process, without the teacher
        cache: for scoring and timing it next to other models (:meth:`predict_teachers`,
        :meth:`fuse`), not for writing pseudo-labels."""
        from ensemble.teacher_specs import config_teachers

        return cls(
            config_teachers(cfg),
            FusionParams.from_config(cfg),
            out_dir,
            refiner=cfg.get("refiner"),
            cache_teachers=False,
            threads=threads,
            fusion_predict=FusionParams.from_config(cfg, predict=True),
        )

    def fuse(self, preds: Sequence[Instances], predict: bool = False) -> FusionResult:
        """Fuse the teachers' predictions (spec order) with the ensemble's weights: as
        pseudo-labels (confident cells), or with ``predict`` as the ensemble's prediction."""
        params = self.fusion_predict if predict else self.fusion
        return fuse(preds, [s.weight for s in self.specs], params)

    def process(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Pseudo-label one image and write its outputs.

        Args:
            job: ``id``, ``path``, ``sha1`` (of the input file), ``config_hash``.

        Returns:
            ``id``, ``status`` (ok | failed), ``error``, ``error_kind`` (input | None),
            ``n_cells``, ``stats``, ``seconds``, ``node``.

        Raises:
            Exception: anything but a :class:`CellfuseError` (bad input) propagates, so the
            driver can retry it.
        """
        from cellfuse.io import read_image

        t0 = time.perf_counter()
        out = {
            "id": job["id"],
            "node": self.node,
            "status": "ok",
            "error": None,
            "error_kind": None,
        }
        try:
            image = read_image(job["path"])
        except CellfuseError as exc:
            logger.warning("%s: %s", job["id"], exc)
            return {
                **out,
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "error_kind": "input",
                "n_cells": 0,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        res = self.fuse(self.predict_teachers(image, job["id"], job["sha1"]))
        self._write(job["id"], job["config_hash"], res)
        from ensemble.outputs import output_hashes

        return {
            **out,
            "outputs": output_hashes(self.out_dir, job["id"]),  # ties the files to the record
            "n_cells": res.instances.n,
            "stats": res.stats,
            "ignore_fraction": round(float(res.ignore.mean()), 4),
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def predict_teachers(
        self, image: np.ndarray, image_id: str, sha1: str, timings: dict | None = None
    ) -> list[Instances]:
        """Each teacher's Instances (from the cache when valid), in spec order; the refiner
        runs last with the others' merged cells as prompts. ``timings``, when given, gets
        each teacher's seconds added under its name."""
        preds: dict[str, Instances] = {}
        others = [s for s in self.specs if s.name != self.refiner]
        for s in others:
            t0 = time.perf_counter()
            preds[s.name] = self._cached(
                s, s.key, image_id, sha1, lambda s=s: self._predict(s, image)
            )
            if timings is not None:
                timings[s.name] = timings.get(s.name, 0.0) + time.perf_counter() - t0
        if self.refiner is not None:
            s = next(x for x in self.specs if x.name == self.refiner)
            # Its prompts depend on the prompting teachers and on their weights (weight 0: none).
            key = sha1_text(s.key + "".join(f"{o.key}:{o.weight!r}" for o in others))

            def refine() -> Instances:
                prompts = merge_for_prompts(
                    [preds[o.name] for o in others], [o.weight for o in others]
                )
                return self.models[s.name].predict_with_prompts(image, prompts)

            t0 = time.perf_counter()
            preds[s.name] = self._cached(s, key, image_id, sha1, refine)
            if timings is not None:
                timings[s.name] = timings.get(s.name, 0.0) + time.perf_counter() - t0
        shape = image.shape[:2]
        for name, p in preds.items():
            if p.shape != shape:
                raise CellfuseError(
                    f"{image_id}: teacher {name!r} returned {p.shape}, image is {shape}"
                )
        return [preds[s.name] for s in self.specs]

    def _predict(self, spec: TeacherSpec, image: np.ndarray) -> Instances:
        """One teacher's cells, predicted in the spec's view and mapped back."""
        model = self.models[spec.model]
        if spec.view is None:
            return model.predict(image)
        from cellfuse.flip_views import from_view, to_view

        inst = model.predict(to_view(image, spec.view))
        return Instances(from_view(inst.labels, spec.view), inst.scores)

    def _cached(self, spec: TeacherSpec, key: str, image_id: str, sha1: str, compute) -> Instances:
        from cellfuse.io import atomic_write_text, read_labels, write_labels

        lab_path, meta_path = cache_files(self.out_dir, spec.name, image_id)
        if self.cache_teachers and lab_path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("sha1") == sha1 and meta.get("teacher") == key:
                    return Instances(read_labels(lab_path), np.asarray(meta["scores"], np.float32))
            except (OSError, ValueError, CellfuseError) as exc:
                logger.warning("%s: ignoring unreadable cache of %s (%s)", image_id, spec.name, exc)
        inst = compute()
        if self.cache_teachers:
            write_labels(lab_path, inst.labels)
            meta = {
                "sha1": sha1,
                "teacher": key,
                "scores": [float(x) for x in inst.scores],  # exact: a cached run == a fresh one
            }
            atomic_write_text(meta_path, json.dumps(meta))
        return inst

    def _write(self, image_id: str, chash: str, res: FusionResult) -> None:
        write_pseudo_outputs(self.out_dir, image_id, chash, res, save_votes=self.save_votes)

    def ping(self) -> str:
        """The worker's node id (also a readiness check: returns once the teachers are loaded)."""
        return self.node


def write_pseudo_outputs(
    out_dir: Path, image_id: str, chash: str, res: FusionResult, *, save_votes: bool = False
) -> None:
    """One image's pseudo-label files (:data:`ensemble.outputs.OUTPUT_SUFFIXES`, plus
    ``<id>_votes.tiff`` with ``save_votes``), each written atomically, the labels last."""
    import tifffile

    from cellfuse.io import atomic_write, atomic_write_text, write_labels

    conf = {
        "id": image_id,
        "config_hash": chash,
        "scores": [round(float(x), 5) for x in res.instances.scores],
        "stats": res.stats,
    }
    atomic_write_text(out_dir / f"{image_id}_conf.json", json.dumps(conf))
    with atomic_write(out_dir / f"{image_id}_ignore.tiff", "wb") as fh:
        tifffile.imwrite(fh, res.ignore.astype(np.uint8), compression="zlib", metadata=None)
    if save_votes:
        with atomic_write(out_dir / f"{image_id}_votes.tiff", "wb") as fh:
            tifffile.imwrite(fh, res.votes, compression="zlib", metadata=None)
    write_labels(out_dir / f"{image_id}_label.tiff", res.instances.labels)


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()[:12]
    except Exception:  # noqa: BLE001 - ray missing or not in a worker
        pass
    return "local"
