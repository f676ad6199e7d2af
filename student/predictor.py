"""Student inference: numpy in, :class:`~cellfuse.instances.Instances` out; batched tiles;
whole slides with bounded memory.

::

    pred = StudentPredictor.from_checkpoint("work/student/distill_cpu/best.pth")
    inst = pred.predict(image)                            # HxWxC any dtype -> Instances
    pred.predict_file("slide.tif", "slide_label.tiff")    # any size, tile by tile

    pred = StudentPredictor.from_onnx("work/export/student.onnx")   # no training code needed

Needs numpy/scipy (+ onnxruntime for an exported model), not torch: a torch student is run
by :class:`student.torch_backend.TorchBackend`, which imports torch when it is built.

Pipeline: normalise (:class:`cellfuse.preprocess.Normalizer`: the teachers' per-channel
1-99.8 percentiles and bright-background inversion, with percentiles that are global to
the image: for a slide they are estimated from a sparse grid of windows, never per tile);
scale (cells are resized to the nominal diameter: the median diameter is measured by a
first pass at the image's own scale on a few windows, unless ``diameter`` is given); tiles
of ``tile`` px at the network scale overlapping by ``overlap`` px are run through the network
``batch`` at a time; each tile is post-processed (:mod:`cellfuse.flow_instances`) and stitched by
:func:`cellfuse.tiling.predict_tiled` (StarDist rule: cells must be smaller than the
overlap, i.e. ``overlap > nominal_diameter`` with margin).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError, InvalidImageError
from cellfuse.flow_instances import PostProcess, output_to_instances
from cellfuse.fusion import FusionParams, fuse
from cellfuse.instances import Instances
from cellfuse.preprocess import (
    Normalizer,
    cell_areas,
    median_diameter,
    median_diameter_of_areas,
    pad_to_multiple,
    resize_image,
    resize_labels,
    scale_for_diameter,
    scaled_shape,
)
from cellfuse.tiling import Tile, predict_tiled, tile_grid
from student.torch_backend import TorchBackend

log = logging.getLogger(__name__)

Window = tuple[slice, slice]
Reader = Callable[[Window], np.ndarray]

#: the views of ``view_vote`` and their fusion: the ensemble's as a predictor
#: (configs/ensemble/_base_ensemble.py ``fusion`` + ``fusion_predict``: a cell is every
#: cluster with 0.3 of the vote, nothing ignored)
VOTE_VIEWS = ("identity", "hflip", "vflip", "rot180")
VIEW_VOTE = FusionParams(tau=0.3, lo=0.3, hi=0.3)


# ----------------------------------------------------------------------------- backends


# ----------------------------------------------------------------------------- predictor


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _TileBatcher:
    """``predict_tiled``'s per-tile callback, with the network run on ``batch`` tiles at once.

    ``predict_tiled`` visits the tiles of :func:`tile_grid` in order; when it asks for a tile
    whose network output is not cached, the next ``batch`` tiles are read, resized, stacked
    and run together, and their outputs cached until asked for.
    """

    def __init__(self, pred: StudentPredictor, tiles: list[Tile], read: Reader, scale: float):
        self.pred, self.read, self.scale = pred, read, scale
        self.tiles = tiles
        self.index = {self._key(t.read): i for i, t in enumerate(tiles)}
        self.cache: dict[int, np.ndarray] = {}
        # The next batch is read and run through the network in a second thread while this
        # one post-processes and stitches the current batch: the network backends and most
        # numpy work release the GIL, so on 2 cores the two halves overlap (same outputs).
        self.pool = (
            ThreadPoolExecutor(1, thread_name_prefix="cellfuse-tiles")
            if pred.prefetch and len(tiles) > pred.batch
            else None
        )
        self.pending: tuple[list[int], Future[list[np.ndarray]]] | None = None

    @staticmethod
    def _key(win: Window) -> tuple[int, int, int, int]:
        return (win[0].start, win[0].stop, win[1].start, win[1].stop)

    def _batch(self, start: int) -> list[int]:
        return list(range(start, min(start + self.pred.batch, len(self.tiles))))

    def _run(self, todo: list[int]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        tiles = [self.read(self.tiles[j].read) for j in todo]
        self.pred.timing["read"] += time.perf_counter() - t0
        return self.pred.network(tiles, self.scale)

    def _prefetched(self, todo: list[int]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        try:
            return self._run(todo)
        finally:
            self.pred.timing["prefetched"] += time.perf_counter() - t0

    def close(self) -> None:
        """Stop the prefetching thread (an unused prefetched batch is dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool, self.pending = None, None

    def __call__(self, win: Window) -> Instances:
        i = self.index[self._key(win)]
        if i not in self.cache and self.pending is not None:
            todo, fut = self.pending
            self.pending = None
            t0 = time.perf_counter()
            self.cache.update(zip(todo, fut.result(), strict=True))
            self.pred.timing["wait"] += time.perf_counter() - t0
        if i not in self.cache:
            todo = self._batch(i)
            self.cache.update(zip(todo, self._run(todo), strict=True))
        if self.pool is not None and self.pending is None:
            nxt = max(self.cache) + 1
            if nxt < len(self.tiles):
                nb = self._batch(nxt)
                self.pending = (nb, self.pool.submit(self._prefetched, nb))
        out = self.cache.pop(i)
        t0 = time.perf_counter()
        inst = output_to_instances(out, self.pred.pp)
        size = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        if inst.labels.shape != size:
            inst = Instances.from_labels(resize_labels(inst.labels, size), inst.scores)
        self.pred.timing["postprocess"] += time.perf_counter() - t0
        return inst


class StudentPredictor:
    """Segments images with a student network (torch module or ONNX backend).

    Args:
        model: a :class:`student.model.StudentNet` (wrapped in :class:`TorchBackend`), or any
            backend: a callable ``Bx3xHxW float32 -> Bx3xHxW float32`` numpy function with a
            ``stride`` attribute (e.g. :class:`student.export.OnnxBackend`).
        nominal_diameter: cell diameter (px) at the network scale (the training one).
        diameter: cell diameter (px) of the input images; None = measure per image.
        postprocess: :class:`PostProcess` or its dict.
        tile, overlap: tiling at the network scale (px); overlap > the largest cell.
        batch: tiles per network call.
        min_scale, max_scale: bounds of the rescale factor.
        rescale_tolerance: reuse the first (scale 1) pass when the scale is this close to 1.
        estimate_window: side (px) of the windows of the diameter-measuring pass.
        local_scale: after the pass at the image's scale, re-predict the regions whose
            cells are of another size at their own scale (:mod:`cellfuse.local_scale`).
        region, scale_step, region_cells: local scale's region side (image px), scale
            quantum (log2 units) and fewest cells for a region's own estimate.
        device: for a torch model: "auto", "cpu", "cuda[:i]".
        flip_average: test-time views: run the network on the tile and its horizontal,
            vertical and 180-degree flips and average the four outputs (flows flipped back)
            before post-processing once; 4x the network time.
        view_vote: test-time views as an instance vote: segment the image and its h / v /
            180-degree flips separately and fuse the four sets of cells by weighted mask
            voting (:func:`cellfuse.fusion.fuse` with :data:`VIEW_VOTE`, the ensemble's
            rule when it predicts); ~4x the time. In-memory images only (a memory-mapped
            or streamed image gets one view, with a warning). Not with ``flip_average``.
        prefetch: read and run the next batch of tiles through the network in a second
            thread while the current batch is post-processed (same labels; faster on 2+
            cores); None: on when this process may use more than one CPU. An execution
            detail, not stored in sidecars.
    """

    def __init__(
        self,
        model: Any,
        *,
        nominal_diameter: float = 17.0,
        diameter: float | None = None,
        postprocess: PostProcess | dict[str, Any] | None = None,
        tile: int = 512,
        overlap: int = 64,
        batch: int = 4,
        min_scale: float = 0.25,
        max_scale: float = 4.0,
        rescale_tolerance: float = 0.1,
        estimate_window: int = 512,
        local_scale: bool = False,
        region: int = 256,
        scale_step: float = 0.5,
        region_cells: int = 8,
        device: str = "auto",
        flip_average: bool = False,
        view_vote: bool = False,
        prefetch: bool | None = None,
    ) -> None:
        if callable(getattr(model, "state_dict", None)):  # a torch module
            model = TorchBackend(model, device=device)
        if not callable(model) or not hasattr(model, "stride"):
            raise ConfigError("model must be a StudentNet or a backend with __call__ and stride")
        if overlap >= tile:
            raise ConfigError(f"overlap ({overlap}) must be smaller than tile ({tile})")
        self.backend = model
        self.nominal_diameter = float(nominal_diameter)
        self.diameter = diameter
        self.pp = (
            postprocess
            if isinstance(postprocess, PostProcess)
            else PostProcess.from_dict(postprocess)
        )
        self.tile, self.overlap, self.batch = int(tile), int(overlap), max(1, int(batch))
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.rescale_tolerance = float(rescale_tolerance)
        self.estimate_window = int(estimate_window)
        self.local_scale = bool(local_scale)
        self.region, self.scale_step = int(region), float(scale_step)
        self.region_cells = int(region_cells)
        self.flip_average = bool(flip_average)
        self.view_vote = bool(view_vote)
        self.prefetch = _cpus() > 1 if prefetch is None else bool(prefetch)
        if self.flip_average and self.view_vote:
            raise ConfigError("choose one kind of test-time views: flip_average or view_vote")
        #: the per-region scales of the last local-scale prediction (None: not run)
        self.last_region_scales: np.ndarray | None = None
        #: seconds spent reading + normalising tiles ("read"), in the network ("network",
        #: resizing included) and post-processing ("postprocess"), busy time whichever thread
        #: ran them; with prefetching also the prefetch thread's busy seconds ("prefetched")
        #: and the main thread's waits for it ("wait"); reset by predict_file
        self.timing: Counter[str] = Counter()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        device: str = "auto",
        backend: str = "auto",
        threads: int = 0,
        **overrides: Any,
    ) -> StudentPredictor:
        """From a student training checkpoint (network config and inference params inside).

        Args:
            checkpoint: ``best.pth`` of :mod:`student.distill`.
            device: torch device ("auto": CUDA when available).
            backend: "torch", "onnx", or "auto": onnxruntime on CPU when it is installed
                (its depthwise convolutions run ~4x faster than torch's on CPU; the network
                is exported to a temporary ONNX file first), torch otherwise.
            threads: onnxruntime intra-op threads (0: its default).
            **overrides: constructor arguments replacing the checkpoint's.
        """
        import importlib.util

        import torch

        from student.model import load_student

        net, meta = load_student(checkpoint)
        kw: dict[str, Any] = dict(
            nominal_diameter=meta.get("nominal_diameter") or 17.0,
            postprocess=meta.get("postprocess"),
            **(meta.get("predictor") or {}),
        )
        kw.update(overrides)
        on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        if backend == "auto":
            ort = importlib.util.find_spec("onnxruntime") is not None
            backend = "onnx" if on_cpu and ort else "torch"
        if backend == "onnx":
            from student.export import export_onnx
            from student.onnx_backend import OnnxBackend

            with tempfile.TemporaryDirectory() as tmp:
                export_onnx(net, Path(tmp) / "student.onnx")
                model: Any = OnnxBackend(Path(tmp) / "student.onnx", net.stride, threads=threads)
            return cls(model, **kw)
        if backend != "torch":
            raise ConfigError(f"unknown backend {backend!r} (auto, torch, onnx)")
        return cls(net, device=device, **kw)

    @classmethod
    def from_onnx(
        cls, onnx_path: str | Path, threads: int = 0, **overrides: Any
    ) -> StudentPredictor:
        """From an exported ``.onnx`` file and its ``.json`` sidecar (no training code)."""
        from student.onnx_backend import OnnxBackend, read_sidecar

        side = read_sidecar(onnx_path)
        backend = OnnxBackend(onnx_path, stride=side["stride"], threads=threads)
        kw = dict(
            nominal_diameter=side["nominal_diameter"],
            postprocess=side["postprocess"],
            **side.get("predictor", {}),
        )
        kw.update(overrides)
        return cls(backend, **kw)

    def config(self) -> dict[str, Any]:
        """Inference parameters other than the network and post-processing (for sidecars)."""
        return dict(
            diameter=self.diameter,
            tile=self.tile,
            overlap=self.overlap,
            batch=self.batch,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            rescale_tolerance=self.rescale_tolerance,
            estimate_window=self.estimate_window,
            local_scale=self.local_scale,
            flip_average=self.flip_average,
            view_vote=self.view_vote,
            region=self.region,
            scale_step=self.scale_step,
            region_cells=self.region_cells,
        )

    # ------------------------------------------------------------------ network

    def network(self, tiles: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
        """Raw outputs of equally-shaped normalised HxWx3 tiles resized by ``scale``.

        Returns:
            one ``3xhxw`` float32 array per tile, ``(h, w) = scaled_shape(tile shape, scale)``.
        """
        t0 = time.perf_counter()
        shape = scaled_shape(tiles[0].shape[:2], scale)
        x = np.stack([resize_image(t, shape).transpose(2, 0, 1) for t in tiles])
        y = self._forward(x)
        self.timing["network"] += time.perf_counter() - t0
        return [y[i, :, : shape[0], : shape[1]] for i in range(len(tiles))]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The backend on ``Bx3xHxW`` (padded to its stride here), in the 4 flip views when
        ``flip_average`` is on: the one place both :meth:`network` and
        :meth:`predict_torch` run the network."""
        x = pad_to_multiple(np.ascontiguousarray(x, np.float32), self.backend.stride)
        return self._flip_averaged(x) if self.flip_average else self.backend(x)

    def _flip_averaged(self, x: np.ndarray) -> np.ndarray:
        """Mean network output over the identity and the h / v / 180-degree flips of ``x``
        (``Bx3xHxW``, channels logit, dy, dx): each flipped output is flipped back and the
        flow component along a flipped axis changes sign."""
        y = np.array(self.backend(x), np.float32)
        for axes in ((3,), (2,), (2, 3)):
            yv = np.flip(self.backend(np.ascontiguousarray(np.flip(x, axes))), axes)
            sign = np.ones((1, 3, 1, 1), np.float32)
            sign[0, 1], sign[0, 2] = (-1.0 if 2 in axes else 1.0), (-1.0 if 3 in axes else 1.0)
            y += yv * sign
        return y / np.float32(4.0)

    def predict_torch(self, x: Any) -> list[Instances]:
        """Batched twin of :meth:`predict` for ``Bx3xHxW`` tensors already normalised to [0, 1]
        and at the network scale (no tiling, no rescaling)."""
        import torch

        h, w = x.shape[-2:]
        arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = self._forward(arr)
        return [output_to_instances(y[i, :, :h, :w], self.pp) for i in range(y.shape[0])]

    # ------------------------------------------------------------------ scale

    def _scale(self, diameter: float) -> float:
        return scale_for_diameter(self.nominal_diameter, diameter, self.min_scale, self.max_scale)

    def predict_scaled(
        self,
        read: Reader,
        shape: tuple[int, int],
        scale: float,
        *,
        out: np.ndarray | None = None,
        progress: bool = False,
    ) -> Instances:
        """Instances of a normalised image read by window, predicted at ``scale``.

        Tiles are cut in the image's own pixels (``tile / scale``) and resized to the
        network scale, so memory is bounded by ``batch`` tiles whatever the scale.
        """
        tile, overlap = self._image_tiling(scale)
        tiles = tile_grid(shape, tile, overlap)
        batcher = _TileBatcher(self, tiles, read, scale)
        try:
            return predict_tiled(
                batcher,
                lambda win: win,
                shape,
                tile=tile,
                overlap=overlap,
                out=out,
                progress=progress,
            )
        finally:
            batcher.close()

    def measure_scale(self, read: Reader, shape: tuple[int, int]) -> tuple[float, Instances | None]:
        """Rescale factor ``nominal / median diameter`` from a pass at scale 1.

        The pass runs on the central ``estimate_window`` square and, on images larger than
        two windows per side, on four more windows around it (diameters pooled).

        Returns:
            (scale, the pass's Instances when it covered the whole image, else None).
        """
        if self.diameter:
            return self._scale(float(self.diameter)), None
        h, w = shape
        win = self.estimate_window
        if h <= win and w <= win:
            first = self.predict_scaled(read, shape, 1.0)
            d = median_diameter(first.labels)
            return (self._scale(d) if d > 0 else 1.0), first
        centres = [(h / 2, w / 2)]
        if h >= 2 * win and w >= 2 * win:
            centres += [(h * fy, w * fx) for fy in (0.25, 0.75) for fx in (0.25, 0.75)]
        areas = []
        for cy, cx in centres:
            y0 = int(np.clip(cy - win / 2, 0, max(h - win, 0)))
            x0 = int(np.clip(cx - win / 2, 0, max(w - win, 0)))
            sub = (slice(y0, min(y0 + win, h)), slice(x0, min(x0 + win, w)))
            part = self.predict_scaled(lambda s, sub=sub: read(_compose(sub, s)), _size(sub), 1.0)
            areas.append(cell_areas(part.labels))
        d = median_diameter_of_areas(np.concatenate(areas))
        if d <= 0:
            return 1.0, None
        return self._scale(d), None

    # ------------------------------------------------------------------ public

    def predict(self, image: np.ndarray) -> Instances:
        """Segment one in-memory image.

        Args:
            image: HxW or HxWxC array, any real dtype (1-px-wide strips included).

        Returns:
            Instances: HxW uint16/uint32 labels 1..N and N float32 scores in [0, 1].
        """
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise InvalidImageError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
        shape = arr.shape[:2]
        if arr.size == 0:
            return Instances.empty(shape)
        norm = Normalizer.from_image(arr)
        if norm is None:
            return Instances.empty(shape)
        x = norm(arr)
        return self._predict_normalised(lambda win: x[win], shape)[0]

    def _predict_normalised(
        self,
        read: Reader,
        shape: tuple[int, int],
        *,
        out: np.ndarray | None = None,
        progress: bool = False,
        vote: bool = True,
    ) -> tuple[Instances, float]:
        """Measure the scale, then predict (reusing the scale-1 pass when it suffices); with
        ``view_vote`` (and ``vote``), once per view and the views fused (:meth:`_view_vote`)."""
        if self.view_vote and vote:
            if out is None:
                return self._view_vote(read, shape, progress)
            log.warning("view vote: a %dx%d image held in a memory map gets one view", *shape)
        scale, first = self.measure_scale(read, shape)
        if first is not None and abs(scale - 1.0) <= self.rescale_tolerance:
            inst, used = first, 1.0
        else:
            log.debug("scale %.3f for a %dx%d image", scale, *shape)
            inst = self.predict_scaled(read, shape, scale, out=out, progress=progress)
            used = scale
        if self.local_scale:
            inst = self._local_scale(read, shape, inst, used, progress)
        return inst, scale

    def _view_vote(
        self, read: Reader, shape: tuple[int, int], progress: bool
    ) -> tuple[Instances, float]:
        """The cells of :data:`VOTE_VIEWS` of the image, each mapped back, fused with equal
        weights; the scale returned is the identity view's."""
        from cellfuse.flip_views import from_view, to_view

        whole = read((slice(0, shape[0]), slice(0, shape[1])))
        views, scale = [], 1.0
        for name in VOTE_VIEWS:
            x = to_view(whole, name)
            inst, s = self._predict_normalised(
                lambda win, x=x: x[win], x.shape[:2], progress=progress, vote=False
            )
            views.append(Instances(from_view(inst.labels, name), inst.scores))
            scale = s if name == "identity" else scale
        t0 = time.perf_counter()
        fused = fuse(views, [1.0] * len(views), VIEW_VOTE).instances
        self.timing["postprocess"] += time.perf_counter() - t0
        return fused, scale

    def _local_scale(
        self, read: Reader, shape: tuple[int, int], base: Instances, s0: float, progress: bool
    ) -> Instances:
        """Re-predict the regions whose cells call for another scale than ``s0`` (the scale
        of ``base``) at their own scale (:func:`cellfuse.local_scale.repredict`)."""
        from cellfuse.local_scale import repredict

        def predict_window(win: Window, s: float) -> Instances:
            return self.predict_scaled(lambda w: read(_compose(win, w)), _size(win), s)

        inst, self.last_region_scales = repredict(
            base,
            s0,
            shape,
            predict_window,
            nominal=self.nominal_diameter,
            overlap=self.overlap,
            region=self.region,
            region_cells=self.region_cells,
            step=self.scale_step,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            timing=self.timing,
            progress=progress,
        )
        return inst

    def predict_file(
        self,
        path: str | os.PathLike[str],
        out_path: str | os.PathLike[str],
        *,
        tile: int | None = None,
        overlap: int | None = None,
        batch: int | None = None,
        progress: bool = True,
        stream: bool | None = None,
    ) -> dict[str, Any]:
        """Segment an image file of any size and write its labels as a compressed TIFF.

        TIFFs are read window by window (zarr). In memory (the default up to
        :data:`student.files.STREAM_PX` pixels) the label image is held whole, above :data:`student.files.MEMMAP_PX`
        pixels in a temporary memory-mapped file next to ``out_path``, and written tiled
        (BigTIFF when needed). As a stream (``stream``, or above :data:`student.files.STREAM_PX` pixels)
        it is never held: :class:`cellfuse.stream.BandStitcher` hands out bands of final
        labels (globally unique ids, the same partition as in memory) that
        :func:`cellfuse.pyramid.write_label_pyramid` encodes as they come, so ``out_path``
        is a tiled pyramidal OME-TIFF whose level 0 is the label image (what any TIFF
        reader reads) and memory is about ``(STREAM_BAND + tile) x width`` uint32 labels.

        Returns:
            ``{"shape", "n_cells", "scale", "stream", "seconds", "s_per_mpx"}``: ``seconds``
            splits the time into ``read`` (reading + normalising tiles), ``network``
            (resizing + the network), ``postprocess`` (flows -> cells), ``other``
            (intensity percentiles, stitching, writing labels) and ``total``; the first
            three are busy seconds of whichever thread ran them, and ``parallel`` is the
            part of read + network that the prefetching thread ran beside the others
            (``read + network + postprocess + other - parallel = total``); the
            scale-measuring pass is counted in the first three. In a stream ``n_cells`` counts the ids handed out (a cell entirely
            overpainted by its neighbours, rare, leaves its id unused).
        """
        old = (self.tile, self.overlap, self.batch)
        self.tile = tile or self.tile
        self.overlap = overlap or self.overlap
        self.batch = batch or self.batch
        try:
            from student.files import predict_file

            return predict_file(self, Path(path), Path(out_path), progress, stream)
        finally:
            self.tile, self.overlap, self.batch = old

    def _image_tiling(self, scale: float) -> tuple[int, int]:
        """(tile, overlap) in the image's own pixels for the network-scale ones at ``scale``."""
        tile = max(int(self.tile / scale), 2)
        return tile, min(int(math.ceil(self.overlap / scale)), tile - 1)


def _compose(outer: Window, inner: Window) -> Window:
    """The window ``inner`` (relative to ``outer``) in the coordinates of ``outer``'s image."""
    return (
        slice(outer[0].start + inner[0].start, outer[0].start + inner[0].stop),
        slice(outer[1].start + inner[1].start, outer[1].start + inner[1].stop),
    )


def _size(win: Window) -> tuple[int, int]:
    return win[0].stop - win[0].start, win[1].stop - win[1].start


__all__ = ["StudentPredictor", "TorchBackend", "Normalizer"]
