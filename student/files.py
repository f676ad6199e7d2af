"""Segmenting an image file of any size with a :class:`~student.predictor.StudentPredictor`
(what :meth:`StudentPredictor.predict_file` runs): in memory, in a memory-mapped label
array, or as a stream whose labels go band by band into a label pyramid.

TIFFs are read by window from one open file (:class:`cellfuse.io.TiffWindows`); other
formats are decoded once. Intensity percentiles are global to the image
(:meth:`cellfuse.preprocess.Normalizer.from_reader`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cellfuse.io import TIFF_SUFFIXES, TiffWindows, image_shape, read_image, write_labels
from cellfuse.preprocess import Normalizer
from cellfuse.tiling import tile_grid

if TYPE_CHECKING:
    from student.predictor import Reader, StudentPredictor

log = logging.getLogger(__name__)

#: images above this many pixels are stitched into a disk-backed array by predict_file
MEMMAP_PX = 16_000_000
#: images above this many pixels are predicted as a stream by predict_file: read by window,
#: labels written band by band into a label pyramid (neither is ever held whole)
STREAM_PX = 100_000_000
#: rows per band of the streamed labels, also the label pyramid's tile side
STREAM_BAND = 512


def predict_file(
    pred: StudentPredictor, path: Path, out_path: Path, progress: bool, stream: bool | None
) -> dict[str, Any]:
    t_start = time.perf_counter()
    pred.timing.clear()
    shape = image_shape(path)
    if stream is None:
        stream = shape[0] * shape[1] > STREAM_PX
    with contextlib.ExitStack() as stack:
        if path.suffix.lower() in TIFF_SUFFIXES:  # by window, from one open file
            read_raw: Reader = stack.enter_context(TiffWindows(path))
        else:  # PNG/JPEG/BMP cannot be read by window: decode once
            whole = read_image(path, allow_constant=True)
            read_raw = lambda win: whole[win]  # noqa: E731
        return _predict_read(pred, read_raw, path, shape, out_path, progress, stream, t_start)


def _predict_read(
    pred: StudentPredictor,
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
        n, scale = _predict_stream(pred, read, shape, out_path, progress)
    else:
        n, scale = _predict_in_memory(pred, read, shape, out_path, progress)
    log.info("%s: %dx%d px, scale %.3f, %d cells", path.name, *shape, scale, n)
    total = time.perf_counter() - t_start
    t = pred.timing
    seconds = {k: round(t[k], 3) for k in ("read", "network", "postprocess")}
    # read + network seconds of the prefetch thread that ran beside the main thread's work
    parallel = max(0.0, t["prefetched"] - t["wait"])
    busy = t["read"] + t["network"] + t["postprocess"]
    seconds["other"] = round(total - busy + parallel, 3)
    seconds["parallel"] = round(parallel, 3)
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
    pred: StudentPredictor, read: Reader, shape: tuple[int, int], out_path: Path, progress: bool
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
        inst, scale = pred._predict_normalised(read, shape, out=out, progress=progress)
        write_labels(out_path, inst.labels)
        n = inst.n
        del inst, out
    return n, scale


def _predict_stream(
    pred: StudentPredictor, read: Reader, shape: tuple[int, int], out_path: Path, progress: bool
) -> tuple[int, float]:
    """Labels of a normalised image written band by band as a label pyramid."""
    from cellfuse.pyramid import write_label_pyramid
    from cellfuse.stream import BandStitcher

    scale, _ = pred.measure_scale(read, shape)
    if pred.local_scale:
        log.warning("local scale is not applied to streamed slides yet: one scale, %.3f", scale)
    tile, overlap = pred._image_tiling(scale)
    tiles = tile_grid(shape, tile, overlap)
    from student.predictor import _TileBatcher

    batcher = _TileBatcher(pred, tiles, read, scale)
    stitcher = BandStitcher(batcher, lambda win: win, shape, band=STREAM_BAND, tiles=tiles)
    bands: Any = stitcher
    if progress:
        from tqdm.auto import tqdm

        bands = tqdm(stitcher, desc="bands", unit="band", total=-(-shape[0] // STREAM_BAND))
    write_label_pyramid(out_path, bands, shape, tile=STREAM_BAND)
    return stitcher.n_ids, scale


__all__ = ["predict_file", "MEMMAP_PX", "STREAM_PX", "STREAM_BAND"]
