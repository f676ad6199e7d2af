"""A slide spread over a Ray cluster: blocks of tiles run as tasks on workers that load the
exported student once each, and are stitched on the driver exactly as one process does.

The driver does what is cheap and global: the intensity percentiles
(:class:`~cellfuse.preprocess.Normalizer`) and the scale-measuring pass, then the tile grid
of the streamed path (:func:`student.files._predict_stream`). The grid's tiles, in
order, are cut into blocks of ``block`` tiles, a multiple of the predictor's ``batch``, so
each worker batches the same tiles together as one process would (the network sees the
same inputs in the same batches: identical outputs). A worker reads its tiles from the
slide file itself (the slide must be reachable at the same path on every node), and
returns each tile's cells; the driver feeds them in grid order to
:class:`~cellfuse.stream.BandStitcher`, whose bands go to the label pyramid as in
:meth:`StudentPredictor.predict_file` with ``stream=True``: the labels are identical.

At most ``ahead`` blocks are in flight or waiting (memory: ``ahead x block`` tiles of
labels on the driver). Workers are Ray actors restarted when they die
(``max_restarts``), and a dead worker's block is resubmitted by Ray
(``max_task_retries``).

::

    pred = RaySlidePredictor("work/export/student.onnx", address="auto")
    pred.predict_file("slide.ome.tif", "out/slide_label.tiff")   # the same file as stream=True
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError
from cellfuse.instances import Instances
from student.files import STREAM_BAND
from student.predictor import StudentPredictor, _TileBatcher

log = logging.getLogger(__name__)

Window = tuple[slice, slice]


def _key(win: Window) -> tuple[int, int, int, int]:
    return (win[0].start, win[0].stop, win[1].start, win[1].stop)


class SlideBlockWorker:
    """A Ray actor's state: one predictor, built once by ``factory``; :meth:`run` predicts
    a block of tiles."""

    def __init__(
        self, factory: Callable[[], StudentPredictor], die_once: str | None = None
    ) -> None:
        self.pred = factory()
        self.pred.prefetch = False  # a worker is given one CPU: no second thread
        # tests: a marker file; the first block that finds it absent kills its worker
        self.die_once = die_once
        self._readers: dict[str, Any] = {}

    def ping(self) -> str:
        """The Ray node this worker runs on (its id: two nodes on one host share a name)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(
        self, path: str, norm: dict[str, Any], scale: float, windows: list[Window]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(labels, scores) of each tile ``windows`` of the slide at ``scale``."""
        from cellfuse.io import TiffWindows, read_image
        from cellfuse.preprocess import Normalizer

        if self.die_once and not os.path.exists(self.die_once):
            Path(self.die_once).touch()
            os._exit(1)
        if path not in self._readers:
            if Path(path).suffix.lower() in (".tif", ".tiff"):
                self._readers[path] = TiffWindows(path)
            else:
                whole = read_image(path, allow_constant=True)
                self._readers[path] = lambda win: whole[win]
        raw = self._readers[path]
        n = Normalizer(np.asarray(norm["lo"]), np.asarray(norm["hi"]), bool(norm["invert"]))
        tiles = [_Win(w) for w in windows]
        batcher = _TileBatcher(self.pred, tiles, lambda w: n(raw(w)), scale)
        out = []
        try:
            for w in windows:
                inst = batcher(w)
                out.append((inst.labels, inst.scores))
        finally:
            batcher.close()
        return out


class _Win:
    """The ``read`` attribute of a tile, all :class:`_TileBatcher` needs."""

    def __init__(self, read: Window) -> None:
        self.read = read


class RaySlidePredictor:
    """``predict_file`` of slides, as :meth:`StudentPredictor.predict_file` with
    ``stream=True``, with the tiles predicted by Ray workers (see the module docstring).

    Args:
        onnx: exported student (``.onnx`` + sidecar), reachable on every node.
        factory: instead of ``onnx``, a picklable zero-argument callable that builds the
            :class:`StudentPredictor` (called once on the driver and once per worker).
        address: Ray cluster ("auto", "HOST:PORT"); None starts a local Ray.
        num_workers: actors (default: the cluster's CPUs).
        threads: onnxruntime threads per worker.
        block: tiles per task (rounded up to a multiple of ``batch``).
        ahead: blocks in flight or waiting at most (default ``2 x workers``).
        max_restarts, max_task_retries: Ray's restarts of a dead worker and retries of
            its blocks.
        overrides: StudentPredictor arguments replacing the sidecar's.
        die_once: (tests) a marker path; see :class:`SlideBlockWorker`.
    """

    def __init__(
        self,
        onnx: str | os.PathLike[str] | None = None,
        *,
        factory: Callable[[], StudentPredictor] | None = None,
        address: str | None = None,
        num_workers: int | None = None,
        threads: int = 1,
        block: int = 16,
        ahead: int | None = None,
        max_restarts: int = 3,
        max_task_retries: int = 3,
        overrides: dict[str, Any] | None = None,
        die_once: str | None = None,
    ) -> None:
        if factory is None:
            if onnx is None:
                raise ValueError("RaySlidePredictor: give onnx or factory")
            factory = partial(
                StudentPredictor.from_onnx,
                str(Path(onnx).resolve()),
                threads=int(threads),
                **dict(overrides or {}),
            )
        self.factory = factory
        self.local = factory()
        if self.local.view_vote:  # blocks are tiles of one view: a vote needs the whole image
            raise ConfigError("view_vote is not available for Ray slide blocks (flip_average is)")
        self.address, self.num_workers, self.threads = address, num_workers, int(threads)
        b = self.local.batch
        self.block = max(b, -(-int(block) // b) * b)
        self.ahead = ahead
        self.max_restarts, self.max_task_retries = int(max_restarts), int(max_task_retries)
        self.die_once = die_once
        self._actors: list[Any] = []
        self._owns_ray = False

    # ------------------------------------------------------------------ Ray

    def _start(self) -> Any:
        import ray

        if not self._actors:
            if not ray.is_initialized():
                init: dict[str, Any] = dict(
                    address=self.address, include_dashboard=False, logging_level=logging.WARNING
                )
                if self.address is None:
                    init["num_cpus"] = self.num_workers or os.cpu_count()
                root = str(Path(__file__).resolve().parents[1])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
                init["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
                ray.init(**init)
                self._owns_ray = True
            cls = ray.remote(
                num_cpus=1,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_task_retries,
            )(SlideBlockWorker)
            n = self.num_workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
            self._actors = [cls.remote(self.factory, self.die_once) for _ in range(n)]
            nodes = ray.get([a.ping.remote() for a in self._actors])
            log.info("%d slide workers on %d node(s)", n, len(set(nodes)))
        return ray

    def close(self) -> None:
        import ray

        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    # ------------------------------------------------------------------ predict

    def predict_file(
        self,
        path: str | os.PathLike[str],
        out_path: str | os.PathLike[str],
        *,
        progress: bool = True,
        stream: bool | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """Predict one slide into a label pyramid at ``out_path`` (see the class docstring).

        Returns:
            as :meth:`StudentPredictor.predict_file`, plus ``workers`` and ``blocks``.
        """
        from cellfuse.io import TiffWindows, image_shape, read_image
        from cellfuse.preprocess import Normalizer
        from cellfuse.pyramid import write_label_pyramid
        from cellfuse.stream import BandStitcher
        from cellfuse.tiling import tile_grid

        t_start = time.perf_counter()
        path, out_path = Path(path), Path(out_path)
        shape = image_shape(path)
        if path.suffix.lower() in (".tif", ".tiff"):
            raw: Any = TiffWindows(path)
        else:
            whole = read_image(path, allow_constant=True)
            raw = lambda win: whole[win]  # noqa: E731
        try:
            norm = Normalizer.from_reader(raw, shape)
            if norm is None:  # nothing to segment: the single-process path writes it
                return self.local.predict_file(path, out_path, progress=False, stream=True)
            scale, _ = self.local.measure_scale(lambda w: norm(raw(w)), shape)
        finally:
            if hasattr(raw, "close"):
                raw.close()
        ray = self._start()
        tile, overlap = self.local._image_tiling(scale)
        tiles = tile_grid(shape, tile, overlap)
        blocks = [tiles[i : i + self.block] for i in range(0, len(tiles), self.block)]
        ahead = self.ahead or 2 * len(self._actors)
        args = (str(path.resolve()), norm.to_dict(), scale)
        todo = deque(enumerate(blocks))
        refs: dict[int, Any] = {}
        results: dict[tuple[int, int, int, int], Instances] = {}
        rr = [0]

        def submit() -> None:
            while todo and len(refs) < ahead:
                i, blk = todo.popleft()
                actor = self._actors[rr[0] % len(self._actors)]
                rr[0] += 1
                refs[i] = actor.run.remote(*args, [t.read for t in blk])

        block_of = {_key(t.read): i // self.block for i, t in enumerate(tiles)}

        def lookup(win: Window) -> Instances:
            k = _key(win)
            if k not in results:
                i = block_of[k]
                submit()
                out = ray.get(refs.pop(i))
                for t, (lab, sc) in zip(blocks[i], out, strict=True):
                    results[_key(t.read)] = Instances(lab, sc)
                submit()
            return results.pop(k)

        stitcher = BandStitcher(lookup, lambda w: w, shape, band=STREAM_BAND, tiles=tiles)
        bands: Any = stitcher
        if progress:
            from tqdm.auto import tqdm

            bands = tqdm(stitcher, desc="bands", unit="band", total=-(-shape[0] // STREAM_BAND))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_label_pyramid(out_path, bands, shape, tile=STREAM_BAND)
        total = time.perf_counter() - t_start
        log.info("%s: %dx%d px, scale %.3f, %d ids (Ray)", path.name, *shape, scale, stitcher.n_ids)
        return dict(
            shape=list(shape),
            n_cells=stitcher.n_ids,
            scale=round(scale, 4),
            stream=True,
            workers=len(self._actors),
            blocks=len(blocks),
            seconds={"total": round(total, 3)},
            s_per_mpx=round(total / max(shape[0] * shape[1] / 1e6, 1e-9), 4),
        )


__all__ = ["RaySlidePredictor", "SlideBlockWorker"]
