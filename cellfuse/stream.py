"""Streaming twin of :func:`cellfuse.tiling.predict_tiled`: the stitched labels come out
as row bands, so a whole slide's label image is never held in memory.

Tiles are predicted in :func:`~cellfuse.tiling.tile_grid` order (row by row) and painted
with the same rule (owned cells only, first painter wins, ids in tile order). Once a row of
tiles is done, every image row above the next tile row's first row is final: no later tile
reads it. Those rows leave as bands of ``band`` rows, ready for
:func:`cellfuse.pyramid.write_label_pyramid`; the buffer holds at most
``band + tile`` rows. The labels equal ``predict_tiled``'s, except that ids are not
re-packed at the end: the id of a cell entirely overpainted by its neighbours (rare) is
missing, so ids are unique and increasing but may have gaps.

::

    stitcher = BandStitcher(predict, read, shape, tile=1024, overlap=128)
    write_label_pyramid(out, stitcher, shape)
    stitcher.n_ids, stitcher.scores     # after the bands are consumed
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import groupby

import numpy as np

from cellfuse.instances import Instances
from cellfuse.tiling import Tile, paint_owned, tile_grid

Region = tuple[slice, slice]


class BandStitcher:
    """Iterate to get the stitched labels of an image as uint32 row bands.

    Args:
        predict: image tile -> :class:`Instances` of that tile (as for ``predict_tiled``).
        read: window -> image tile.
        shape: (H, W) of the image.
        tile, overlap: tiling in image px (``overlap`` > the largest cell diameter).
        band: rows per yielded band (the last one may be shorter); the writer's tile side.
        tiles: the tiles to predict, in row-major order (default ``tile_grid``); a Ray
            driver can pass the grid and a ``predict`` that looks results up.

    Attributes (complete once iteration ends):
        n_ids: ids handed out (1..n_ids; an id may be absent, see the module docstring).
        scores: float32 score of each id, ``scores[i]`` for id ``i + 1``.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], Instances],
        read: Callable[[Region], np.ndarray],
        shape: tuple[int, int],
        *,
        tile: int = 1024,
        overlap: int = 128,
        band: int = 512,
        tiles: list[Tile] | None = None,
    ) -> None:
        self.predict, self.read = predict, read
        self.shape = (int(shape[0]), int(shape[1]))
        self.tiles = tiles if tiles is not None else tile_grid(self.shape, tile, overlap)
        self.band = int(band)
        self.n_ids = 0
        self._scores: list[np.ndarray] = []

    @property
    def scores(self) -> np.ndarray:
        return np.concatenate(self._scores) if self._scores else np.zeros(0, np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        h, w = self.shape
        rows = [list(g) for _, g in groupby(self.tiles, key=lambda t: t.read[0].start)]
        tallest = max(t.read[0].stop - t.read[0].start for t in self.tiles)
        buf = np.zeros((self.band + tallest, w), np.uint32)
        top = 0  # image row of buf[0]
        next_id = 1
        for i, row in enumerate(rows):
            for t in row:
                ys = slice(t.read[0].start - top, t.read[0].stop - top)
                kept = paint_owned(
                    self.predict(self.read(t.read)), t, self.shape, buf[ys, t.read[1]], next_id
                )
                self._scores.append(kept)
                next_id += kept.size
            self.n_ids = next_id - 1
            final = rows[i + 1][0].read[0].start if i + 1 < len(rows) else h
            while top + self.band <= final or (top < final == h):
                n = min(self.band, h - top)
                yield buf[:n].copy()
                buf[: buf.shape[0] - n] = buf[n:]
                buf[buf.shape[0] - n :] = 0
                top += n


__all__ = ["BandStitcher"]
