"""Tiled prediction of instance labels on images of any size, with bounded memory.

The rule is StarDist's ``predict_instances_big``: the image is cut into overlapping tiles,
each tile is predicted on its own, and an instance is kept only by the tile whose *core*
holds its centroid, and only if it does not touch the tile's cut edges. Cores partition
the image, so no cell is doubled; a cell whose centroid lies in a core lies at least
``overlap / 2`` px from that tile's cut edges, so **if cells are smaller than the overlap
in diameter**, no cell is cut. Tile labels are never OR-ed pixel-wise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from cellfuse.instances import Instances, centroids, label_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One tile: ``read`` is the window to predict, ``core`` the part it owns (both in image coords)."""

    read: tuple[slice, slice]
    core: tuple[slice, slice]


def _axis_tiles(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(read_start, read_stop, core_start, core_stop) along one axis."""
    if tile >= size:
        return [(0, size, 0, size)]
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    step = tile - overlap
    n = int(np.ceil((size - tile) / step)) + 1
    starts = [min(i * step, size - tile) for i in range(n)]
    out = []
    for i, s in enumerate(starts):
        # the core boundary is the middle of the overlap with each neighbour
        c0 = 0 if i == 0 else (s + starts[i - 1] + tile) // 2
        c1 = size if i == n - 1 else (starts[i + 1] + s + tile) // 2
        out.append((s, s + tile, c0, c1))
    return out


def tile_grid(shape: tuple[int, int], tile: int | tuple[int, int], overlap: int) -> list[Tile]:
    """Overlapping tiles whose cores partition an image of ``shape`` (H, W)."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    ys = _axis_tiles(shape[0], th, overlap)
    xs = _axis_tiles(shape[1], tw, overlap)
    return [
        Tile((slice(y0, y1), slice(x0, x1)), (slice(cy0, cy1), slice(cx0, cx1)))
        for (y0, y1, cy0, cy1) in ys
        for (x0, x1, cx0, cx1) in xs
    ]


def owned_instances(inst: Instances, tile: Tile, shape: tuple[int, int]) -> np.ndarray:
    """N-bool: which instances of a tile's prediction this tile keeps.

    Kept: centroid inside the tile's core, and not touching an edge of the tile that is a
    cut (an edge that is also the image border is not a cut).
    """
    if inst.n == 0:
        return np.zeros(0, bool)
    (ry, rx), (cy, cx) = tile.read, tile.core
    c = inst.centroids() + np.array([ry.start, rx.start])
    keep = (c[:, 0] >= cy.start) & (c[:, 0] < cy.stop) & (c[:, 1] >= cx.start) & (c[:, 1] < cx.stop)
    keep[cut_edge_ids(inst.labels, tile.read, shape) - 1] = False
    return keep


def cut_edge_ids(
    labels: np.ndarray, read: tuple[slice, slice], shape: tuple[int, int]
) -> np.ndarray:
    """Sorted int64 ids (> 0) of a window's labels on its cut edges: the sides of the window
    ``read`` that are not the border of the image of ``shape``."""
    ry, rx = read
    cut_edges = []
    if ry.start > 0:
        cut_edges.append(labels[0, :])
    if ry.stop < shape[0]:
        cut_edges.append(labels[-1, :])
    if rx.start > 0:
        cut_edges.append(labels[:, 0])
    if rx.stop < shape[1]:
        cut_edges.append(labels[:, -1])
    if not cut_edges:
        return np.zeros(0, np.int64)
    touching = np.unique(np.concatenate(cut_edges))
    return touching[touching > 0].astype(np.int64)


def paint_owned(
    inst: Instances, tile: Tile, shape: tuple[int, int], window: np.ndarray, next_id: int
) -> np.ndarray:
    """Paint the cells ``tile`` owns (:func:`owned_instances`) into ``window`` (the output
    labels under ``tile.read``) as ids ``next_id, next_id + 1, ...``, on free pixels only: a
    kept cell may reach into a neighbour's core, where pixels already owned stay.

    Returns:
        the kept cells' scores (their count is the number of ids used).
    """
    keep = owned_instances(inst, tile, shape)
    k = int(keep.sum())
    if k == 0:
        return np.zeros(0, np.float32)
    lut = np.zeros(inst.n + 1, np.uint32)
    lut[1:][keep] = np.arange(next_id, next_id + k, dtype=np.uint32)
    new = lut[inst.labels]
    free = (new > 0) & (window == 0)
    window[free] = new[free]
    return inst.scores[keep]


def predict_tiled(
    predict: Callable[[np.ndarray], Instances],
    read: Callable[[tuple[slice, slice]], np.ndarray],
    shape: tuple[int, int],
    *,
    tile: int = 1024,
    overlap: int = 128,
    out: np.ndarray | None = None,
    progress: bool = False,
) -> Instances:
    """Predict instances tile by tile and stitch them without cut or doubled cells.

    Assumes cells are smaller than ``overlap`` in diameter (see the module docstring).
    Memory is bounded by one tile plus the output label image, which may be a
    ``np.memmap`` or a zarr array passed as ``out``.

    Args:
        predict: image tile (h x w x C) -> Instances of that tile.
        read: window (slice_y, slice_x) -> image tile; e.g. ``lambda w: image[w]`` or a
            region reader of a TIFF.
        shape: (H, W) of the whole image.
        tile: tile side in px.
        overlap: overlap between neighbouring tiles in px (> the largest cell diameter).
        out: optional HxW uint32 array to paint into (else one is allocated).
        progress: show a tqdm bar over tiles.

    Returns:
        Instances over the whole image (labels 1..N in tile order, scores from the tiles).
    """
    tiles = tile_grid(shape, tile, overlap)
    labels = np.zeros(shape, np.uint32) if out is None else out
    scores: list[np.ndarray] = []
    next_id = 1
    it: Iterator[Tile] = iter(tiles)
    if progress and len(tiles) > 1:
        from tqdm.auto import tqdm

        it = tqdm(tiles, desc="tiles", unit="tile", leave=False)
    for t in it:
        window = labels[t.read]
        kept = paint_owned(predict(read(t.read)), t, shape, window, next_id)
        labels[t.read] = window  # a no-op for numpy; writes back to a zarr ``out``
        scores.append(kept)
        next_id += kept.size
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    if out is None:
        labels = labels.astype(label_dtype(next_id - 1), copy=False)
    # a cell fully overpainted by its neighbours vanishes; counted in bands of ~4 Mpx
    # (np.unique would sort the whole label image, and hold it whole when it is a zarr)
    present = np.zeros(next_id, bool)
    band = max(1, (1 << 22) // max(1, shape[1]))
    for y in range(0, shape[0], band):
        present |= np.bincount(np.asarray(labels[y : y + band]).ravel(), minlength=next_id) > 0
    if not present[1:].all():
        return Instances.from_labels(labels, all_scores)
    return Instances(labels, all_scores)


def tile_centroid_owner(points: np.ndarray, tiles: list[Tile]) -> np.ndarray:
    """Index of the tile whose core holds each (y, x) point (Nx2 -> N int)."""
    owner = np.full(len(points), -1, np.int64)
    for i, t in enumerate(tiles):
        cy, cx = t.core
        inside = (
            (points[:, 0] >= cy.start)
            & (points[:, 0] < cy.stop)
            & (points[:, 1] >= cx.start)
            & (points[:, 1] < cx.stop)
        )
        owner[inside & (owner < 0)] = i
    return owner


__all__ = [
    "Tile",
    "tile_grid",
    "owned_instances",
    "cut_edge_ids",
    "paint_owned",
    "predict_tiled",
    "tile_centroid_owner",
    "centroids",
]
