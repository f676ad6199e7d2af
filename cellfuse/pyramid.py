"""Tiled, compressed, pyramidal OME-TIFF written band by band; read back by window.

A whole-slide label image (or RGB image) is never held in memory: the writer takes an
iterator of horizontal *bands* (``tile`` rows each, the last one shorter; full width) and
encodes each band's tiles as it arrives. Level 0 is written straight to the file; the
reduced levels (2x per level, down to one tile) are built on the fly from the bands by a
cascade of 2x downsamplers (labels: the mode of each 2x2 block, foreground winning ties,
so ids are never mixed; images: the mean), their encoded tiles parked in a temporary file
next to the output and copied into the TIFF's SubIFDs after level 0. Memory is about one
band per level plus the tiles being encoded: ~``3 * tile * width * itemsize`` bytes.

The file is an OME-TIFF (``.ome.tif`` holds OME-XML; any name works) that tifffile,
zarr (``tifffile.imread(path, aszarr=True)``), napari (the levels as a multiscale labels
layer), QuPath and Bio-Formats open as a pyramid::

    write_label_pyramid("slide_label.ome.tif", bands, (40000, 40000))
    with PyramidReader("slide_label.ome.tif") as r:
        r.levels                     # [(40000, 40000), (20000, 20000), ..., (313, 313)]
        r.read((slice(0, 512), slice(0, 512)), level=0)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellfuse.io import atomic_write

Region = tuple[slice, slice]
Downsample = Callable[[np.ndarray], np.ndarray]

#: default tile side (px), also the band height the writer expects
TILE = 512
_BIGTIFF_BYTES = 2**31


# ----------------------------------------------------------------------------- downsampling


def _pad_even(a: np.ndarray) -> np.ndarray:
    ph, pw = a.shape[0] % 2, a.shape[1] % 2
    if not (ph or pw):
        return a
    return np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), mode="edge")


def downsample_mode(labels: np.ndarray) -> np.ndarray:
    """2x label downsampling: each 2x2 block becomes its most frequent id.

    Ties go to a non-zero id (a cell half in the block is kept, not erased by background),
    then to the first of the block in raster order. Odd sides are edge-padded, so the
    result is ``ceil(H/2) x ceil(W/2)``. Ids are copied, never averaged.
    """
    a = _pad_even(labels)
    v = (a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2])
    e01, e02, e03 = v[0] == v[1], v[0] == v[2], v[0] == v[3]
    e12, e13, e23 = v[1] == v[2], v[1] == v[3], v[2] == v[3]
    counts = (
        e01.astype(np.int8) + e02 + e03,
        e01.astype(np.int8) + e12 + e13,
        e02.astype(np.int8) + e12 + e23,
        e03.astype(np.int8) + e13 + e23,
    )
    # score 2 * matches + (id > 0): more matches first, foreground on ties
    best = np.argmax(np.stack([2 * c + (x > 0) for c, x in zip(counts, v, strict=True)]), axis=0)
    return np.choose(best, v)


def downsample_mean(image: np.ndarray) -> np.ndarray:
    """2x image downsampling: the mean of each 2x2 block (rounded for integer dtypes)."""
    a = _pad_even(image)
    s = a[0::2, 0::2].astype(np.float32) + a[0::2, 1::2] + a[1::2, 0::2] + a[1::2, 1::2]
    s *= 0.25
    if image.dtype.kind in "iu":
        np.rint(s, out=s)
    return s.astype(image.dtype)


def pyramid_shapes(shape: tuple[int, int], tile: int = TILE) -> list[tuple[int, int]]:
    """(H, W) of every level: level 0 is ``shape``, each next one halved (rounded up),
    until both sides fit in one tile."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def array_bands(array: Any, band: int = TILE) -> Iterator[np.ndarray]:
    """Bands of ``band`` rows of an array-like (numpy, memmap, zarr): a writer's input."""
    for y in range(0, array.shape[0], band):
        yield np.asarray(array[y : y + band])


# ----------------------------------------------------------------------------- writer


class _Level:
    """One pyramid level being built: rows arrive in order, complete bands of ``tile`` rows
    are encoded tile by tile; level 0 hands its bytes to tifffile, the others park them in
    a temporary file. Each finished band is also downsampled into the next level."""

    def __init__(self, shape, tile, encode, downsample, spool, pool):
        self.shape, self.tile, self.encode = shape, tile, encode
        self.downsample, self.spool, self.pool = downsample, spool, pool
        self.pending: list[np.ndarray] = []  # rows not yet making a full band
        self.pending_rows = 0
        self.rows_done = 0
        self.index: list[tuple[int, int]] = []  # (offset, nbytes) of parked tiles
        self.next: _Level | None = None

    def add(self, rows: np.ndarray) -> list[bytes]:
        """Append rows; return the encoded tiles of the bands they complete."""
        self.pending.append(rows)
        self.pending_rows += rows.shape[0]
        out: list[bytes] = []
        while self.pending_rows >= self.tile or (
            self.pending_rows and self.rows_done + self.pending_rows == self.shape[0]
        ):
            block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            band, rest = block[: self.tile], block[self.tile :]
            self.pending = [rest] if rest.shape[0] else []
            self.pending_rows = rest.shape[0]
            out.extend(self._band(band))
        return out

    def _band(self, band: np.ndarray) -> list[bytes]:
        self.rows_done += band.shape[0]
        t = self.tile
        tiles = [band[:, x : x + t] for x in range(0, self.shape[1], t)]
        encoded = list(self.pool.map(self.encode, tiles))
        if self.next is not None:
            for tile_bytes in self.next.add(self.downsample(band)):
                self.next.park(tile_bytes)
        return encoded

    def park(self, data: bytes) -> None:
        self.index.append((self.spool.tell(), len(data)))
        self.spool.write(data)

    def parked(self) -> Iterator[bytes]:
        for offset, n in self.index:
            self.spool.seek(offset)
            yield self.spool.read(n)


def write_pyramid(
    path: str | os.PathLike[str],
    bands: Iterable[np.ndarray],
    shape: tuple[int, int],
    dtype: Any,
    *,
    samples: int = 1,
    downsample: Downsample = downsample_mean,
    tile: int = TILE,
    compression: str = "zlib",
    level: int = 1,
    workers: int = 2,
    name: str | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Write a tiled, compressed, pyramidal OME-TIFF from an iterator of row bands.

    Args:
        path: output file (``.ome.tif`` recommended), written atomically.
        bands: arrays of ``tile`` rows (the last may be shorter) and ``W`` columns
            (``x samples`` when ``samples > 1``), in order, covering ``shape`` exactly.
        shape: ``(H, W)`` of level 0.
        dtype: pixel dtype (bands are cast to it).
        samples: 1 (gray / labels) or 3 (RGB, written interleaved).
        downsample: 2x reducer for the next level (:func:`downsample_mean` or
            :func:`downsample_mode`).
        tile: tile side (px), a multiple of 16.
        compression: ``"zlib"`` (deflate; what every TIFF reader reads) or ``"zstd"``.
        level: compression level.
        workers: threads encoding the tiles of a band.
        name: OME image name.
        pixel_size_um: physical pixel size written to the OME-XML.

    Returns:
        ``{"path", "shape", "levels", "tile", "bytes"}``.
    """
    import imagecodecs

    path = Path(path)
    dtype = np.dtype(dtype).newbyteorder("<")
    shapes = pyramid_shapes(shape, tile)
    tile_shape = (tile, tile) if samples == 1 else (tile, tile, samples)
    codec = {"zlib": imagecodecs.zlib_encode, "zstd": imagecodecs.zstd_encode}[compression]

    def encode(t: np.ndarray) -> bytes:
        t = np.ascontiguousarray(t, dtype)
        if t.shape != tile_shape:  # edge tiles are zero-padded, as tifffile does
            t = np.pad(t, [(0, a - b) for a, b in zip(tile_shape, t.shape, strict=True)])
        return codec(t.tobytes(), level=level)

    axes = "YX" if samples == 1 else "YXS"
    photometric = "minisblack" if samples == 1 else "rgb"
    meta: dict[str, Any] = {"axes": axes}
    if name:
        meta["Name"] = name
    if pixel_size_um:
        meta.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    raw_bytes = shape[0] * shape[1] * samples * dtype.itemsize
    opts = dict(dtype=dtype, tile=(tile, tile), compression=compression, photometric=photometric)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryFile(dir=path.parent, prefix=f".{path.name}.levels.") as spool,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        levels = [_Level(s, tile, encode, downsample, spool, pool) for s in shapes]
        for a, b in zip(levels, levels[1:], strict=False):
            a.next = b

        def level0() -> Iterator[bytes]:
            rows = 0
            for band in bands:
                band = np.asarray(band)
                want = (min(tile, shape[0] - rows), shape[1]) + ((samples,) if samples > 1 else ())
                if band.shape != want:
                    raise ValueError(f"band at row {rows} has shape {band.shape}, expected {want}")
                rows += band.shape[0]
                yield from levels[0].add(band.astype(dtype, copy=False))
            if rows != shape[0]:
                raise ValueError(f"bands cover {rows} rows, expected {shape[0]}")

        with (
            atomic_write(path, "wb") as fh,
            tifffile.TiffWriter(fh, bigtiff=raw_bytes > _BIGTIFF_BYTES, ome=True) as tif,
        ):
            tif.write(
                level0(),
                shape=shape if samples == 1 else (*shape, samples),
                subifds=len(shapes) - 1,
                metadata=meta,
                **opts,
            )
            for lev in levels[1:]:
                s = lev.shape if samples == 1 else (*lev.shape, samples)
                tif.write(lev.parked(), shape=s, subfiletype=1, **opts)
    return dict(
        path=str(path),
        shape=list(shape),
        levels=[list(s) for s in shapes],
        tile=tile,
        bytes=path.stat().st_size,
    )


def write_label_pyramid(
    path: str | os.PathLike[str],
    bands: Iterable[np.ndarray],
    shape: tuple[int, int],
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`write_pyramid` for uint32 instance labels (mode downsampling, ids kept).

    The ids are written as given: a streaming producer (e.g.
    :class:`cellfuse.stream.BandStitcher`) makes them globally unique.
    """
    return write_pyramid(path, bands, shape, np.uint32, downsample=downsample_mode, **kwargs)


def label_tiff_to_pyramid(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: Any
) -> dict[str, Any]:
    """Rewrite a label TIFF (level 0 of any TIFF) as a label pyramid, band by band through
    a :class:`PyramidReader`: a tiled source is never read whole."""
    tile = int(kwargs.get("tile", TILE))
    with PyramidReader(src) as r:
        h, w = r.shape
        bands = (r.read((slice(y, min(y + tile, h)), slice(0, w))) for y in range(0, h, tile))
        return write_label_pyramid(dst, bands, (h, w), **kwargs)


# ----------------------------------------------------------------------------- reader


class PyramidReader:
    """Windows of any level of a (pyramidal) TIFF, read through zarr: only the tiles under
    a window are decoded, so slides larger than memory are read piecewise.

    Attributes:
        levels: ``(H, W)`` per level (one entry for a plain TIFF).
        shape: ``levels[0]``.
        dtype: pixel dtype.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import zarr

        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        try:
            series = self._tif.series[0]
            self._store = series.aszarr()
            node = zarr.open(self._store, mode="r")
            n = len(series.levels) if series.levels else 1
            self._arrays = (
                [node[str(i)] for i in range(n)] if not hasattr(node, "shape") else [node]
            )
        except BaseException:
            self._tif.close()
            raise
        self.levels = [tuple(int(s) for s in a.shape[:2]) for a in self._arrays]
        self.shape = self.levels[0]
        self.dtype = self._arrays[0].dtype

    def read(self, region: Region | None = None, level: int = 0) -> np.ndarray:
        """The window ``(slice(y0, y1), slice(x0, x1))`` of ``level`` (all of it if None)."""
        arr = self._arrays[level]
        return np.asarray(arr[region if region is not None else (slice(None), slice(None))])

    def close(self) -> None:
        self._store.close()
        self._tif.close()

    def __enter__(self) -> PyramidReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "TILE",
    "PyramidReader",
    "array_bands",
    "downsample_mean",
    "downsample_mode",
    "label_tiff_to_pyramid",
    "pyramid_shapes",
    "write_label_pyramid",
    "write_pyramid",
]
