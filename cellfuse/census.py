"""The cell census of a slide: one row per cell (CSV) and one polygon per cell (GeoJSON that
QuPath imports), computed window by window so the label image is never held whole.

Windows are the tiles of :func:`cellfuse.tiling.tile_grid` (``window`` px plus ``margin``
px of context on each side); their cores partition the slide. **A cell is measured once,
by the window whose core holds its first pixel in raster order** (topmost row, leftmost
pixel of that row). A cell that does not touch a cut edge of the read window is seen
whole there. A cell that touches one (larger than the margin, or lying across it) and
whose first visible pixel is in the core is re-read from a window grown around it
(doubling the context until it touches no cut edge), then measured if its true first
pixel is in the core; otherwise a neighbour owns it. So every cell is measured exactly
once and whole, whatever its size, as long as its pixels are connected (8-connectivity);
pieces of one id farther apart than the grown context are not gathered.

Measurements (pixel units, pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``): ``area``
(pixel count), ``centroid_y/x`` (mean of the pixel indices, as skimage), ``perimeter``
and ``eccentricity`` (skimage's ``regionprops`` definitions, 4-neighbourhood perimeter),
``bbox_y0, bbox_x0, bbox_y1, bbox_x1`` (half-open), ``mean_intensity_<c>`` per image
channel. Polygons trace the cell's outline (``find_contours`` at 0.5, holes filled, the
largest piece when it has several), in QuPath's pixel-corner coordinates.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cellfuse.io import atomic_write
from cellfuse.tiling import tile_grid

Region = tuple[slice, slice]
Reader = Callable[[Region], np.ndarray]

BASE_COLUMNS = [
    "id",
    "centroid_y",
    "centroid_x",
    "area",
    "perimeter",
    "eccentricity",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
]

# skimage.measure.perimeter (neighbourhood 4): weight of a border pixel by its code
# 1 + 2 * (border 4-neighbours) + 10 * (border diagonal neighbours)
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2
_N4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))


# ----------------------------------------------------------------------------- measuring


def measure(
    labels: np.ndarray, image: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], list[tuple[slice, slice]], np.ndarray]:
    """Vectorised ``regionprops`` of every cell of a label window.

    Args:
        labels: HxW non-negative integer ids.
        image: HxWxC (or HxW) intensities, or None.

    Returns:
        ``(ids, columns, boxes, first)``: the N ids present in the raster order of their
        first pixel, a dict of N-arrays (:data:`BASE_COLUMNS` but ``id``, in window
        coordinates, plus ``mean_intensity_<c>``), each cell's bounding-box slices, and
        the flat (raster) index of each cell's first pixel.
    """
    import fastremap

    h, w = labels.shape
    # ids -> 1..N in order of first appearance (fastremap scans in memory order)
    compact, remap = fastremap.renumber(np.ascontiguousarray(labels), in_place=False)
    old = np.fromiter(remap.keys(), np.int64, len(remap))
    new = np.fromiter(remap.values(), np.int64, len(remap))
    n = int(new.max(initial=0))
    ids = np.zeros(n, np.int64)
    ids[new[new > 0] - 1] = old[new > 0]
    flat = compact.ravel()
    idx = np.flatnonzero(flat)  # foreground pixels only: the sums skip the background
    k = flat[idx].astype(np.intp)
    if k.size:
        run_max = np.maximum.accumulate(k)
        is_first = np.concatenate([[True], run_max[1:] > run_max[:-1]])
    else:
        is_first = np.zeros(0, bool)
    if int(is_first.sum()) == n and np.array_equal(k[is_first], np.arange(1, n + 1)):
        first = idx[is_first]
    else:  # not numbered by first appearance: find each id's first pixel by sorting
        _, at = np.unique(k, return_index=True)
        first = idx[at]
    area = np.bincount(k, minlength=n + 1)[1:].astype(np.float64)
    boxes = ndi.find_objects(compact, max_label=n)
    b = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in boxes], np.int64)
    b = b.reshape(-1, 4)
    # coordinates relative to each cell's box corner: the sums (and so every value) do not
    # depend on where the window starts, and the moments lose no precision
    yy = (idx // w - b[k - 1, 0]).astype(np.float64)
    xx = (idx % w - b[k - 1, 1]).astype(np.float64)

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(k, weights, minlength=n + 1)[1:]

    a = np.maximum(area, 1)
    cy, cx = total(yy) / a, total(xx) / a
    myy = total(yy * yy) / a - cy * cy
    mxx = total(xx * xx) / a - cx * cx
    mxy = total(yy * xx) / a - cy * cx
    del yy, xx
    half_sum, half_diff = (myy + mxx) / 2, np.sqrt(((myy - mxx) / 2) ** 2 + mxy**2)
    l1 = np.maximum(half_sum + half_diff, 0)
    l2 = np.maximum(half_sum - half_diff, 0)
    ecc = np.sqrt(1 - np.divide(l2, l1, out=np.ones_like(l1), where=l1 > 0))
    ecc[l1 <= 0] = 0.0
    cols: dict[str, np.ndarray] = dict(
        centroid_y=cy + b[:, 0],
        centroid_x=cx + b[:, 1],
        area=area.astype(np.int64),
        perimeter=_perimeters(compact, n),
        eccentricity=ecc,
    )
    for j, name in enumerate(("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")):
        cols[name] = b[:, j]
    if image is not None:
        img = (image if image.ndim == 3 else image[..., None]).reshape(h * w, -1)
        for c in range(img.shape[1]):
            cols[f"mean_intensity_{c}"] = total(img[idx, c].astype(np.float64)) / a
    return ids, cols, boxes, first


def _perimeters(compact: np.ndarray, n: int) -> np.ndarray:
    """skimage ``perimeter(mask, 4)`` of each cell's own mask, for all cells at once."""
    p = np.pad(compact, 1)
    h, w = compact.shape

    def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return a[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    same = {d: shifted(p, *d) == compact for d in _N4 + _DIAG}
    inner = same[_N4[0]] & same[_N4[1]] & same[_N4[2]] & same[_N4[3]]
    border = (compact > 0) & ~inner
    pb = np.pad(border, 1)
    code = np.ones(compact.shape, np.int64)
    for d in _N4:
        code += 2 * (same[d] & shifted(pb, *d))
    for d in _DIAG:
        code += 10 * (same[d] & shifted(pb, *d))
    per = np.bincount(compact[border], _PERIMETER_WEIGHTS[code[border]], minlength=n + 1)
    return per[1:]


def outline(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> list[list[float]] | None:
    """Closed exterior ring ``[[x, y], ...]`` of a boolean mask in pixel-corner coordinates
    offset by ``origin`` (y, x): the marching-squares contour at 0.5 (through the middle of
    the boundary pixels' outer edges), of the largest piece, holes ignored; counter-
    clockwise (positive shoelace area in these coordinates), collinear vertices dropped.
    None for an empty mask."""
    from skimage.measure import find_contours

    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.float32)
    padded[1:-1, 1:-1] = mask
    best, best_area = None, 0.0
    for c in find_contours(padded, 0.5):
        if len(c) < 4:
            continue
        y, x = c[:, 0], c[:, 1]
        area2 = float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
        if abs(area2) > best_area:
            best, best_area = (c[::-1] if area2 < 0 else c), abs(area2)
    if best is None:
        return None
    ring = best[:-1]  # drop the closing copy of the first point
    step = np.diff(best, axis=0)  # step[i]: ring[i] -> ring[i + 1], cyclically
    prev, nxt = np.concatenate([step[-1:], step[:-1]]), step
    turn = np.abs(prev[:, 0] * nxt[:, 1] - prev[:, 1] * nxt[:, 0]) > 1e-9
    ring = ring[turn] if turn.sum() >= 3 else ring
    # (r, c) index coords of the padded crop -> pixel-corner (x, y) of the image
    xs = np.round(ring[:, 1] + origin[1] - 0.5, 3).tolist()
    ys = np.round(ring[:, 0] + origin[0] - 0.5, 3).tolist()
    pts = [[x, y] for x, y in zip(xs, ys, strict=True)]
    return pts + [pts[0]]


# ----------------------------------------------------------------------------- windows


def _touching_cut(lab: np.ndarray, region: Region, shape: tuple[int, int]) -> np.ndarray:
    """Ids on the sides of a window that are cuts (not the image border)."""
    (ys, xs), edges = region, []
    if ys.start > 0:
        edges.append(lab[0])
    if ys.stop < shape[0]:
        edges.append(lab[-1])
    if xs.start > 0:
        edges.append(lab[:, 0])
    if xs.stop < shape[1]:
        edges.append(lab[:, -1])
    return np.unique(np.concatenate(edges)) if edges else np.zeros(0, lab.dtype)


def iter_cells(
    read_labels: Reader,
    shape: tuple[int, int],
    *,
    read_image: Reader | None = None,
    window: int = 2048,
    margin: int = 128,
    polygons: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield one record per cell of a label image read by window (see the module docstring).

    Args:
        read_labels: window -> HxW ids (e.g. ``PyramidReader(path).read``).
        shape: (H, W) of the label image.
        read_image: window -> HxWxC intensities (e.g. ``lambda w: read_image(p, region=w)``).
        window: core side (px) of the windows.
        margin: context (px) around each core; cells smaller than it are never re-read.
        polygons: add ``"polygon"`` (a closed ``[[x, y], ...]`` ring) to each record.

    Yields:
        dicts with :data:`BASE_COLUMNS` (image coordinates), ``mean_intensity_<c>`` when
        ``read_image`` is given, and ``polygon`` when asked; in window order.
    """
    h, w = shape
    for t in tile_grid((h, w), window + 2 * margin, 2 * margin):
        lab = np.asarray(read_labels(t.read))
        img = None if read_image is None else np.asarray(read_image(t.read))
        ids, cols, boxes, first = measure(lab, img)
        if ids.size == 0:
            continue
        oy, ox = t.read[0].start, t.read[1].start
        fy, fx = first // lab.shape[1] + oy, first % lab.shape[1] + ox
        (cy, cx) = t.core
        owned = (fy >= cy.start) & (fy < cy.stop) & (fx >= cx.start) & (fx < cx.stop)
        cut = np.isin(ids, _touching_cut(lab, t.read, shape))
        whole = np.flatnonzero(owned & ~cut)
        for k, rec in zip(whole.tolist(), _records(ids[whole], cols, whole, (oy, ox)), strict=True):
            if polygons:
                sy, sx = boxes[k]
                rec["polygon"] = outline(lab[sy, sx] == rec["id"], (oy + sy.start, ox + sx.start))
            yield rec
        for k in np.flatnonzero(owned & cut).tolist():
            sy, sx = boxes[k]
            box = (oy + sy.start, ox + sx.start, oy + sy.stop, ox + sx.stop)
            rec = _grown(read_labels, read_image, shape, int(ids[k]), box, t.core, margin, polygons)
            if rec is not None:
                yield rec


_Y_COLUMNS = ("centroid_y", "bbox_y0", "bbox_y1")
_X_COLUMNS = ("centroid_x", "bbox_x0", "bbox_x1")


def _records(
    ids: np.ndarray, cols: dict[str, np.ndarray], sel: np.ndarray, origin: tuple[int, int]
) -> list[dict[str, Any]]:
    """Records of the cells ``sel`` of :func:`measure`'s columns, in image coordinates."""
    names = ["id", *(c for c in BASE_COLUMNS if c != "id")]
    names += [c for c in cols if c not in BASE_COLUMNS]
    values = [ids.tolist()]
    for c in names[1:]:
        v = cols[c][sel]
        v = v + origin[0] if c in _Y_COLUMNS else v + origin[1] if c in _X_COLUMNS else v
        values.append(v.tolist())
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _grown(read_labels, read_image, shape, gid, box, core, margin, polygons):
    """Measure a cell cut by its window's edge from a window grown around it, or return
    None when its true first pixel lies outside ``core`` (another window owns it)."""
    h, w = shape
    m = max(int(margin), 16)
    y0, x0, y1, x1 = box
    while True:
        region = (slice(max(y0 - m, 0), min(y1 + m, h)), slice(max(x0 - m, 0), min(x1 + m, w)))
        lab = np.asarray(read_labels(region))
        mask = lab == gid
        rows, cols_ = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        oy, ox = region[0].start, region[1].start
        y0, y1 = oy + int(rows[0]), oy + int(rows[-1]) + 1
        x0, x1 = ox + int(cols_[0]), ox + int(cols_[-1]) + 1
        if not _touching_cut(mask, region, shape).any():
            break
        m *= 2
    fy, fx = oy + int(rows[0]), ox + int(np.argmax(mask[rows[0]]))
    if not (core[0].start <= fy < core[0].stop and core[1].start <= fx < core[1].stop):
        return None
    img = None if read_image is None else np.asarray(read_image(region))
    ids, cols, boxes, _ = measure(np.where(mask, lab, 0), img)
    rec = _records(ids, cols, np.array([0]), (oy, ox))[0]
    if polygons:
        sy, sx = boxes[0]
        rec["polygon"] = outline(mask[sy, sx], (oy + sy.start, ox + sx.start))
    return rec


# ----------------------------------------------------------------------------- writers


def geojson_feature(
    rec: dict[str, Any],
    *,
    object_type: str = "detection",
    classification: str | None = "Nucleus",
    color: tuple[int, int, int] = (255, 0, 0),
    namespace: str = "cellfuse",
) -> dict[str, Any]:
    """QuPath's GeoJSON for one cell record with a ``polygon``: a Feature with a Polygon in
    pixel coordinates, ``objectType``, ``classification``, the cell ``id`` and every
    measurement. The Feature's own ``id`` is a UUID derived from ``namespace`` and the id
    (QuPath keeps objects' ids as UUIDs)."""
    props: dict[str, Any] = {"objectType": object_type, "id": rec["id"], "isLocked": False}
    if classification:
        props["classification"] = {"name": classification, "color": list(color)}
    props["measurements"] = {k: v for k, v in rec.items() if k not in ("id", "polygon")}
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{rec['id']}")),
        "geometry": {"type": "Polygon", "coordinates": [rec["polygon"]]},
        "properties": props,
    }


def export_cells(
    labels: str | os.PathLike[str],
    *,
    image: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    geojson_path: str | os.PathLike[str] | None = None,
    window: int = 2048,
    margin: int = 128,
    object_type: str = "detection",
    classification: str | None = "Nucleus",
) -> dict[str, Any]:
    """Write a label TIFF's census (CSV) and/or cell polygons (GeoJSON), streaming.

    Args:
        labels: label TIFF (pyramidal or not; level 0 is read by window).
        image: the slide (any TIFF ``read_image`` reads) for ``mean_intensity_<c>``.
        csv_path: per-cell table, one row per cell, :data:`BASE_COLUMNS` first.
        geojson_path: FeatureCollection, one Polygon Feature per cell (QuPath import).
        window, margin: see :func:`iter_cells`.
        object_type, classification: QuPath object type ("detection", "annotation") and
            class name of every Feature.

    Returns:
        ``{"n_cells", "csv", "geojson"}``.
    """
    from cellfuse.io import read_image
    from cellfuse.pyramid import PyramidReader

    if csv_path is None and geojson_path is None:
        raise ValueError("export_cells: give csv_path and/or geojson_path")
    namespace = Path(labels).name
    n = 0
    with PyramidReader(labels) as reader, _open_outputs(csv_path, geojson_path) as (tab, gj):
        read_img = None if image is None else (lambda win: read_image(image, region=win))
        cells = iter_cells(
            reader.read,
            reader.shape,
            read_image=read_img,
            window=window,
            margin=margin,
            polygons=gj is not None,
        )
        writer = None
        for rec in cells:
            if tab is not None:
                row = {k: v for k, v in rec.items() if k != "polygon"}
                if writer is None:
                    writer = csv.DictWriter(tab, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
            if gj is not None and rec.get("polygon"):
                feat = geojson_feature(
                    rec,
                    object_type=object_type,
                    classification=classification,
                    namespace=namespace,
                )
                gj.write((",\n" if n else "") + json.dumps(feat, separators=(",", ":")))
            n += 1
        if tab is not None and writer is None:
            n_ch = (
                0
                if image is None
                else read_image(image, region=(slice(0, 2), slice(0, 2))).shape[2]
            )
            extra = [f"mean_intensity_{c}" for c in range(n_ch)]
            csv.writer(tab).writerow(BASE_COLUMNS + extra)
    return dict(
        n_cells=n,
        csv=None if csv_path is None else str(csv_path),
        geojson=None if geojson_path is None else str(geojson_path),
    )


OUTPUT_FORMATS = ("tiff", "ome-tiff", "csv", "geojson")


def slide_outputs(
    image: str | os.PathLike[str],
    label_tiff: str | os.PathLike[str],
    formats: list[str],
    *,
    pyramid: bool = False,
) -> dict[str, Any]:
    """The outputs ``formats`` (:data:`OUTPUT_FORMATS`) of a predicted label TIFF
    ``<dir>/<id>_label.tiff``: ``<id>_label.ome.tif`` (label pyramid), ``<id>_cells.csv``
    and ``<id>_cells.geojson`` beside it; the label TIFF is removed unless "tiff" is
    asked. ``pyramid``: the label TIFF already is a label pyramid (a streamed slide), so
    it becomes the ``.ome.tif`` (a hard link when both are asked, a copy where links are
    not supported) instead of being rewritten. The census reads the labels by window in
    either case. Returns ``{"outputs": [paths]}``."""
    import shutil

    from cellfuse.pyramid import label_tiff_to_pyramid

    unknown = set(formats) - set(OUTPUT_FORMATS)
    if unknown:
        raise ValueError(f"unknown output format(s) {sorted(unknown)}; use {OUTPUT_FORMATS}")
    label_tiff = Path(label_tiff)
    stem = label_tiff.name.removesuffix(".tiff").removesuffix("_label")
    folder, written = label_tiff.parent, []
    ome = folder / f"{stem}_label.ome.tif"
    if "ome-tiff" in formats and not pyramid:
        written.append(label_tiff_to_pyramid(label_tiff, ome)["path"])
    if "csv" in formats or "geojson" in formats:
        res = export_cells(
            label_tiff,
            image=image,
            csv_path=folder / f"{stem}_cells.csv" if "csv" in formats else None,
            geojson_path=folder / f"{stem}_cells.geojson" if "geojson" in formats else None,
        )
        written += [p for p in (res["csv"], res["geojson"]) if p]
    if "ome-tiff" in formats and pyramid:
        ome.unlink(missing_ok=True)
        if "tiff" in formats:
            try:
                os.link(label_tiff, ome)
            except OSError:
                shutil.copyfile(label_tiff, ome)
        else:
            os.replace(label_tiff, ome)
        written.insert(0, str(ome))
    if "tiff" in formats:
        written.insert(0, str(label_tiff))
    elif label_tiff.exists():
        label_tiff.unlink()
    return {"outputs": written}


@contextlib.contextmanager
def _open_outputs(csv_path, geojson_path):
    """Both output files opened atomically; the GeoJSON's header and footer around the
    features. Neither file replaces an old one unless every cell was written."""
    with contextlib.ExitStack() as stack:
        tab = None if csv_path is None else stack.enter_context(atomic_write(csv_path, newline=""))
        gj = None if geojson_path is None else stack.enter_context(atomic_write(geojson_path))
        if gj is not None:
            gj.write('{"type":"FeatureCollection","features":[\n')
        yield tab, gj
        if gj is not None:
            gj.write("\n]}\n")


__all__ = [
    "BASE_COLUMNS",
    "OUTPUT_FORMATS",
    "export_cells",
    "geojson_feature",
    "iter_cells",
    "measure",
    "outline",
    "slide_outputs",
]
