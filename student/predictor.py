"""Student inference: numpy in, :class:`~cellfuse.instances.Instances` out; batched tiles;
whole slides with bounded memory.

::

    pred = StudentPredictor.from_checkpoint("work/student/distill_cpu/best.pth")
    inst = pred.predict(image)                            # HxWxC any dtype -> Instances
    pred.predict_file("slide.tif", "slide_label.tiff")    # any size, tile by tile

    pred = StudentPredictor.from_onnx("work/export/student.onnx")   # no training code needed

Needs numpy/scipy (+ onnxruntime for an exported model), not torch: a torch student is run
by :class:`TorchBackend`, which imports torch when it is built.

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

import contextlib
import copy
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError, InvalidImageError
from cellfuse.flow_instances import PostProcess, output_to_instances
from cellfuse.instances import Instances
from cellfuse.io import TIFF_SUFFIXES, TiffWindows, image_shape, read_image, write_labels
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

log = logging.getLogger(__name__)

Window = tuple[slice, slice]
Reader = Callable[[Window], np.ndarray]

#: images above this many pixels are stitched into a disk-backed array by predict_file
MEMMAP_PX = 16_000_000
#: images above this many pixels are predicted as a stream by predict_file: read by window,
#: labels written band by band into a label pyramid (neither is ever held whole)
STREAM_PX = 100_000_000
#: rows per band of the streamed labels, also the label pyramid's tile side
STREAM_BAND = 512


# ----------------------------------------------------------------------------- backends


class TorchBackend:
    """Runs a torch student on ``Bx3xHxW`` float32 numpy batches.

    A private copy of the network is used with its batch norms folded into the convs; on CPU
    it runs channels-last, on CUDA under bf16 (fp16 when bf16 is unsupported) autocast; the
    outputs are float32.
    """

    def __init__(self, net: Any, device: str = "auto", amp: bool = True) -> None:
        import torch

        from student.model import fuse_batchnorm

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.stride = int(net.stride)
        self.net = fuse_batchnorm(copy.deepcopy(net).float().eval()).to(self.device)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.amp_dtype = None
        if amp and self.device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_torch(x).cpu().numpy()

    def run_torch(self, x: Any) -> Any:
        """``Bx3xHxW`` tensor or array (H, W multiples of :attr:`stride`) -> float32 tensor."""
        import torch

        t = torch.as_tensor(x, dtype=torch.float32).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        amp = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), amp:
            y = self.net(t)
        return y.float().contiguous()


# ----------------------------------------------------------------------------- predictor


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

    @staticmethod
    def _key(win: Window) -> tuple[int, int, int, int]:
        return (win[0].start, win[0].stop, win[1].start, win[1].stop)

    def __call__(self, win: Window) -> Instances:
        i = self.index[self._key(win)]
        if i not in self.cache:
            todo = list(range(i, min(i + self.pred.batch, len(self.tiles))))
            t0 = time.perf_counter()
            tiles = [self.read(self.tiles[j].read) for j in todo]
            self.pred.timing["read"] += time.perf_counter() - t0
            outs = self.pred.network(tiles, self.scale)
            self.cache.update(zip(todo, outs, strict=True))
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
        #: the per-region scales of the last local-scale prediction (None: not run)
        self.last_region_scales: np.ndarray | None = None
        #: seconds spent reading + normalising tiles ("read"), in the network ("network",
        #: resizing included) and post-processing ("postprocess"); reset by predict_file
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
        y = self.backend(pad_to_multiple(np.ascontiguousarray(x, np.float32), self.backend.stride))
        self.timing["network"] += time.perf_counter() - t0
        return [y[i, :, : shape[0], : shape[1]] for i in range(len(tiles))]

    def predict_torch(self, x: Any) -> list[Instances]:
        """Batched twin of :meth:`predict` for ``Bx3xHxW`` tensors already normalised to [0, 1]
        and at the network scale (no tiling, no rescaling)."""
        import torch

        h, w = x.shape[-2:]
        arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = self.backend(
            pad_to_multiple(np.ascontiguousarray(arr, np.float32), self.backend.stride)
        )
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
        return predict_tiled(
            batcher, lambda win: win, shape, tile=tile, overlap=overlap, out=out, progress=progress
        )

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
    ) -> tuple[Instances, float]:
        """Measure the scale, then predict (reusing the scale-1 pass when it suffices)."""
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

    def _local_scale(
        self, read: Reader, shape: tuple[int, int], base: Instances, s0: float, progress: bool
    ) -> Instances:
        """Re-predict the regions whose cells call for another scale than ``s0`` (the scale
        of ``base``) and stitch them by :mod:`cellfuse.local_scale`'s ownership rule.
        Returns ``base`` itself when every region keeps ``s0``."""
        from cellfuse.local_scale import (
            cell_stats,
            margin_for,
            owned_in_core,
            region_diameters,
            region_index,
            region_scales,
            scale_windows,
        )

        def windows(scales: np.ndarray, s: float) -> list[tuple[Window, Window]]:
            return list(scale_windows(scales, s, self.region, shape, margin_for(self.overlap, s)))

        def predict_window(win: Window, s: float) -> Instances:
            return self.predict_scaled(lambda w: read(_compose(win, w)), _size(win), s)

        t0 = time.perf_counter()
        area, cent = cell_stats(base.labels)
        diam = region_diameters(area, cent, shape, self.region, self.region_cells)
        self.timing["postprocess"] += time.perf_counter() - t0
        unknown = diam == 0
        if unknown.any() and abs(math.log2(s0)) >= self.scale_step / 2:
            # cells far from s0's size may be missed entirely: probe the regions without
            # cells at the network's own scale (where the first measuring pass looks)
            areas, cents = [], []
            for win, core in windows(np.where(unknown, 1.0, s0), 1.0):
                own, a, c = owned_in_core(predict_window(win, 1.0).labels, win, core, shape)
                areas.append(a[own])
                cents.append(c[own])
            if areas:
                found = region_diameters(
                    np.concatenate(areas),
                    np.concatenate(cents),
                    shape,
                    self.region,
                    self.region_cells,
                )
                diam[unknown] = found[unknown]
        scales = region_scales(
            diam,
            s0,
            self.nominal_diameter,
            step=self.scale_step,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
        )
        self.last_region_scales = scales
        others = [float(s) for s in np.unique(scales) if s != s0]
        if not others:
            return base
        t0 = time.perf_counter()
        rc = region_index(np.nan_to_num(cent), self.region, scales.shape)
        keep = (area > 0) & (scales[rc[:, 0], rc[:, 1]] == s0)
        lut = np.zeros(area.size + 1, np.uint32)
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
        labels = lut[base.labels]
        scores = [base.scores[: area.size][keep]]
        next_id = int(keep.sum()) + 1
        self.timing["postprocess"] += time.perf_counter() - t0
        todo: Any = [(s, win, core) for s in others for win, core in windows(scales, s)]
        if progress:
            from tqdm.auto import tqdm

            todo = tqdm(todo, desc="local scale", unit="window", leave=False)
        for s, win, core in todo:
            sub = predict_window(win, s)
            t1 = time.perf_counter()
            own = owned_in_core(sub.labels, win, core, shape)[0]
            k = int(own.sum())
            sub_lut = np.zeros(own.size + 1, np.uint32)
            sub_lut[1:][own] = np.arange(next_id, next_id + k, dtype=np.uint32)
            new, window = sub_lut[sub.labels], labels[win]
            free = (new > 0) & (window == 0)  # first painter wins, as in the tiling
            window[free] = new[free]
            scores.append(sub.scores[: own.size][own])
            next_id += k
            self.timing["postprocess"] += time.perf_counter() - t1
        log.info(
            "local scale: %d of %d regions re-predicted at %s",
            int((scales != s0).sum()),
            scales.size,
            ", ".join(f"{s:.3f}" for s in others),
        )
        return Instances.from_labels(labels, np.concatenate(scores))

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
        :data:`STREAM_PX` pixels) the label image is held whole, above :data:`MEMMAP_PX`
        pixels in a temporary memory-mapped file next to ``out_path``, and written tiled
        (BigTIFF when needed). As a stream (``stream``, or above :data:`STREAM_PX` pixels)
        it is never held: :class:`cellfuse.stream.BandStitcher` hands out bands of final
        labels (globally unique ids, the same partition as in memory) that
        :func:`cellfuse.pyramid.write_label_pyramid` encodes as they come, so ``out_path``
        is a tiled pyramidal OME-TIFF whose level 0 is the label image (what any TIFF
        reader reads) and memory is about ``(STREAM_BAND + tile) x width`` uint32 labels.

        Returns:
            ``{"shape", "n_cells", "scale", "stream", "seconds", "s_per_mpx"}``: ``seconds``
            splits the time into ``read`` (reading + normalising tiles), ``network``
            (resizing + the network), ``postprocess`` (flows -> cells), ``other``
            (intensity percentiles, stitching, writing labels) and ``total``; the
            scale-measuring pass is counted in the first three. In a stream ``n_cells`` counts the ids handed out (a cell entirely
            overpainted by its neighbours, rare, leaves its id unused).
        """
        old = (self.tile, self.overlap, self.batch)
        self.tile = tile or self.tile
        self.overlap = overlap or self.overlap
        self.batch = batch or self.batch
        try:
            return self._predict_file(Path(path), Path(out_path), progress, stream)
        finally:
            self.tile, self.overlap, self.batch = old

    def _predict_file(
        self, path: Path, out_path: Path, progress: bool, stream: bool | None
    ) -> dict[str, Any]:
        t_start = time.perf_counter()
        self.timing.clear()
        shape = image_shape(path)
        if stream is None:
            stream = shape[0] * shape[1] > STREAM_PX
        with contextlib.ExitStack() as stack:
            if path.suffix.lower() in TIFF_SUFFIXES:  # by window, from one open file
                read_raw: Reader = stack.enter_context(TiffWindows(path))
            else:  # PNG/JPEG/BMP cannot be read by window: decode once
                whole = read_image(path, allow_constant=True)
                read_raw = lambda win: whole[win]  # noqa: E731
            return self._predict_read(read_raw, path, shape, out_path, progress, stream, t_start)

    def _predict_read(
        self,
        read_raw: Reader,
        path: Path,
        shape: tuple[int, int],
        out_path: Path,
        progress: bool,
        stream: bool,
        t_start: float,
    ) -> dict[str, Any]:
        norm = Normalizer.from_reader(read_raw, shape)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if norm is None:
            if stream:
                from cellfuse.pyramid import write_label_pyramid

                empty = (
                    np.zeros((min(STREAM_BAND, shape[0] - y), shape[1]), np.uint32)
                    for y in range(0, shape[0], STREAM_BAND)
                )
                write_label_pyramid(out_path, empty, shape, tile=STREAM_BAND)
            else:
                write_labels(out_path, np.zeros(shape, np.uint16))
            return dict(shape=list(shape), n_cells=0, scale=None, stream=stream)
        read = lambda win: norm(read_raw(win))  # noqa: E731
        if stream:
            n, scale = self._predict_stream(read, shape, out_path, progress)
        else:
            n, scale = self._predict_in_memory(read, shape, out_path, progress)
        log.info("%s: %dx%d px, scale %.3f, %d cells", path.name, *shape, scale, n)
        total = time.perf_counter() - t_start
        seconds = {k: round(self.timing[k], 3) for k in ("read", "network", "postprocess")}
        seconds["other"] = round(total - sum(self.timing.values()), 3)
        seconds["total"] = round(total, 3)
        return dict(
            shape=list(shape),
            n_cells=n,
            scale=round(scale, 4),
            stream=stream,
            seconds=seconds,
            s_per_mpx=round(total / max(shape[0] * shape[1] / 1e6, 1e-9), 4),
        )

    def _predict_in_memory(
        self, read: Reader, shape: tuple[int, int], out_path: Path, progress: bool
    ) -> tuple[int, float]:
        big = shape[0] * shape[1] > MEMMAP_PX
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".labels-") as tmp:
            out = (
                np.lib.format.open_memmap(
                    Path(tmp) / "labels.npy", mode="w+", dtype=np.uint32, shape=shape
                )
                if big
                else None
            )
            inst, scale = self._predict_normalised(read, shape, out=out, progress=progress)
            write_labels(out_path, inst.labels)
            n = inst.n
            del inst, out
        return n, scale

    def _predict_stream(
        self, read: Reader, shape: tuple[int, int], out_path: Path, progress: bool
    ) -> tuple[int, float]:
        """Labels of a normalised image written band by band as a label pyramid."""
        from cellfuse.pyramid import write_label_pyramid
        from cellfuse.stream import BandStitcher

        scale, _ = self.measure_scale(read, shape)
        if self.local_scale:
            log.warning("local scale is not applied to streamed slides yet: one scale, %.3f", scale)
        tile, overlap = self._image_tiling(scale)
        tiles = tile_grid(shape, tile, overlap)
        batcher = _TileBatcher(self, tiles, read, scale)
        stitcher = BandStitcher(batcher, lambda win: win, shape, band=STREAM_BAND, tiles=tiles)
        bands: Any = stitcher
        if progress:
            from tqdm.auto import tqdm

            bands = tqdm(stitcher, desc="bands", unit="band", total=-(-shape[0] // STREAM_BAND))
        write_label_pyramid(out_path, bands, shape, tile=STREAM_BAND)
        return stitcher.n_ids, scale

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


__all__ = ["StudentPredictor", "TorchBackend", "Normalizer", "MEMMAP_PX", "STREAM_PX"]
