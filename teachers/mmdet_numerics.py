"""Pure numerics of the Mask R-CNN teacher: the network's view of an image, label images
<-> boxes and masks, detections -> :class:`~cellfuse.instances.Instances`. numpy only, so
they are usable (and tested) without mmcv/mmdet; :mod:`teachers.mmdet_plugins` holds the
MMDetection dataset, transforms, metric and hooks.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage as ndi

from cellfuse.errors import LabelError
from cellfuse.instances import Instances, label_dtype
from cellfuse.preprocess import prepare_image as _prepare_image

log = logging.getLogger(__name__)


def prepare_image(
    image: np.ndarray, *, lower: float = 1.0, upper: float = 99.8, invert_bright: bool = True
) -> np.ndarray:
    """The network's view of an image: :func:`cellfuse.preprocess.prepare_image` (RGB,
    percentile-normalised, bright backgrounds inverted unless ``invert_bright`` is False)
    times 255.

    Args:
        image: HxW or HxWxC array of any real dtype (as ``cellfuse.io.read_image`` returns).
        lower: lower percentile mapped to 0.
        upper: upper percentile mapped to 255.
        invert_bright: invert bright-background images (brightfield and stains alike; this
            teacher inverted gray brightfield images only before the rule was shared).

    Returns:
        HxWx3 float32 in [0, 255].
    """
    out = _prepare_image(image, "auto" if invert_bright else False, lower=lower, upper=upper)
    out *= 255.0
    return out


def labels_to_boxes(labels: np.ndarray, min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and masks of the instances of a label image.

    Args:
        labels: HxW integer label image, 0 = background, ids need not be sequential.
        min_area: instances with fewer pixels are dropped (e.g. slivers cut by a crop).

    Returns:
        (Nx4 float32 boxes ``x0, y0, x1, y1`` in pixel-edge coordinates, so a one-pixel
        cell at (y, x) is ``x, y, x + 1, y + 1``; NxHxW uint8 masks).
    """
    h, w = labels.shape
    boxes, masks = [], []
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = labels[sl] == i
        if int(crop.sum()) < min_area:
            continue
        m = np.zeros((h, w), np.uint8)
        m[sl][crop] = 1
        masks.append(m)
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, h, w), np.uint8)
    return np.asarray(boxes, np.float32), np.stack(masks)


def detections_to_instances(
    masks: np.ndarray,
    scores: np.ndarray,
    boxes: np.ndarray | None = None,
    *,
    score_thr: float = 0.5,
    min_visible: float = 0.5,
    min_size: int = 0,
) -> Instances:
    """Resolve overlapping detections into one label image; the higher score wins a pixel.

    Detections are painted best first, each only onto pixels no better detection holds; a
    detection left with less than ``min_visible`` of its mask (a duplicate of a better
    one) is dropped.

    Args:
        masks: NxHxW bool (or 0/1) full-image masks.
        scores: N float detection scores.
        boxes: Nx4 ``x0, y0, x1, y1`` boxes bounding the masks (speeds painting up);
            None computes them.
        score_thr: detections below this score are dropped.
        min_visible: fraction of a mask that must stay visible.
        min_size: instances with fewer visible pixels are dropped.

    Returns:
        Instances with labels 1..M in descending score order.
    """
    masks = np.asarray(masks)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if masks.ndim != 3 or masks.shape[0] != scores.size:
        raise LabelError(f"need NxHxW masks and N scores, got {masks.shape} and {scores.shape}")
    h, w = masks.shape[1:]
    keep = np.flatnonzero(scores >= score_thr)
    order = keep[np.argsort(-scores[keep], kind="stable")]
    labels = np.zeros((h, w), label_dtype(max(len(order), 1)))
    kept: list[float] = []
    for k in order:
        if boxes is None:
            ys, xs = np.nonzero(masks[k])
            if ys.size == 0:
                continue
            sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        else:
            x0, y0, x1, y1 = boxes[k]
            sl = (
                slice(max(int(math.floor(y0)) - 1, 0), min(int(math.ceil(y1)) + 1, h)),
                slice(max(int(math.floor(x0)) - 1, 0), min(int(math.ceil(x1)) + 1, w)),
            )
        m = masks[k][sl].astype(bool, copy=False)
        area = int(m.sum())
        if area == 0:
            continue
        free = m & (labels[sl] == 0)
        visible = int(free.sum())
        if visible < max(min_size, 1) or visible < min_visible * area:
            continue
        labels[sl][free] = len(kept) + 1
        kept.append(float(scores[k]))
    return Instances(labels, np.asarray(kept, np.float32))


def above_score(inst: Instances, score_thr: float) -> np.ndarray:
    """The label image :func:`detections_to_instances` gives at a higher ``score_thr``.

    Detections are painted best first and each only competes with better ones, so raising
    the threshold keeps a prefix of the painting order: labels ``1..k`` with ``k`` the
    number of scores at or above ``score_thr``. One painting at the lowest threshold thus
    serves every higher one.

    Args:
        inst: :func:`detections_to_instances` output (labels in descending score order).
        score_thr: the higher threshold.

    Returns:
        HxW label image of ``inst.labels``' dtype.
    """
    k = int((inst.scores >= score_thr).sum())
    return np.where(inst.labels <= k, inst.labels, 0).astype(inst.labels.dtype, copy=False)
