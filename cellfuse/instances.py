"""The one prediction type passed between stages: a label image plus a score per instance.

Every teacher returns :class:`Instances`; fusion, metrics, stitching and the submission
writer only see this type. The numerics are plain functions on label arrays so they can be
tested and reused without the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential as _relabel_sequential

from cellfuse.errors import LabelError


def label_dtype(max_id: int) -> np.dtype:
    """Smallest unsigned dtype (uint16 or uint32) that holds ``max_id``."""
    return np.dtype(np.uint16) if max_id <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def check_labels(labels: np.ndarray, where: str = "labels") -> np.ndarray:
    """The label-image rule, for every consumer of label arrays: HxW, integer ids (a bool
    mask is read as 0/1), none negative.

    Args:
        labels: an HxW array, or anything with a ``labels`` attribute (:class:`Instances`).
        where: what to name in the error message.

    Returns:
        The array (a uint8 view of a bool mask).

    Raises:
        LabelError: not 2-D, not integer, or negative ids.
    """
    arr = np.asarray(getattr(labels, "labels", labels))
    if arr.ndim != 2:
        raise LabelError(f"{where}: expected an HxW label image, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.view(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(f"{where}: label ids must be integers, got {arr.dtype}; cast them first")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise LabelError(f"{where}: negative label id {arr.min()}; use 0 for background, 1..N")
    return arr


def relabel_sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel to 1..N in the order of the sorted ids (``skimage``'s relabel_sequential).

    Args:
        labels: HxW non-negative integer label image.

    Returns:
        (HxW uint16/uint32 labels 0..N, N old ids: ``old_ids[i]`` became ``i + 1``).
    """
    top = int(labels.max()) if labels.size else 0
    if top <= max(4 * labels.size, 1 << 16):
        # one bincount and one lookup (skimage's map_array is ~3x slower on tiles)
        present = np.bincount(labels.ravel(), minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present).astype(labels.dtype)
        if ids.size == 0:
            return np.zeros(labels.shape, np.uint16), ids
        lut = np.zeros(top + 1, label_dtype(ids.size))
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[labels], ids
    new, _, inverse = _relabel_sequential(labels)
    # (out_values starts with 0 only when the image has background)
    ids = np.asarray(inverse.out_values)[np.asarray(inverse.in_values) > 0]
    ids = ids.astype(labels.dtype, copy=False)
    if ids.size == 0:
        return np.zeros(labels.shape, np.uint16), ids
    return new.astype(label_dtype(ids.size), copy=False), ids


def areas(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Pixel count of instances 1..n (index 0 of the result is instance 1)."""
    n = int(labels.max()) if n is None else n
    return np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1]


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero out instances smaller than ``min_size`` pixels (ids are kept, not relabelled)."""
    if min_size <= 0 or labels.max() == 0:
        return labels
    small = np.bincount(labels.ravel()) < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes inside each instance; loops over objects but only on their bounding boxes."""
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == i
        filled = ndi.binary_fill_holes(mask)
        hole = filled & ~mask & (labels[sl] == 0)
        if hole.any():
            out[sl][hole] = i
    return out


def masks_to_labels(masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Paint NxHxW boolean masks into one label image; where masks overlap, the higher score wins.

    Args:
        masks: NxHxW bool.
        scores: N float; default all equal (later masks win ties).

    Returns:
        HxW uint16/uint32 labels, mask ``k`` painted as ``k + 1`` (ids of fully hidden masks vanish).
    """
    n = masks.shape[0]
    labels = np.zeros(masks.shape[1:], dtype=label_dtype(n))
    order = np.argsort(np.zeros(n) if scores is None else scores, kind="stable")
    for k in order:  # ascending: the best mask is painted last
        labels[masks[k]] = k + 1
    return labels


def labels_to_masks(labels: np.ndarray) -> np.ndarray:
    """NxHxW bool masks of instances 1..N (N = labels.max()); for small images only."""
    n = int(labels.max())
    return labels[None] == np.arange(1, n + 1, dtype=labels.dtype)[:, None, None]


def centroids(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Nx2 float (y, x) centroids of instances 1..n; NaN for ids that are absent."""
    n = int(labels.max()) if n is None else n
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1)[1 : n + 1].astype(np.float64)
    yy, xx = np.indices(labels.shape, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(flat, yy.ravel(), minlength=n + 1)[1 : n + 1] / count
        cx = np.bincount(flat, xx.ravel(), minlength=n + 1)[1 : n + 1] / count
    return np.stack([cy, cx], axis=1)


def bboxes(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Nx4 int (y0, x0, y1, x1) half-open boxes of instances 1..n; -1 rows for absent ids."""
    n = int(labels.max()) if n is None else n
    out = np.full((n, 4), -1, dtype=np.int64)
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n)):
        if sl is not None:
            out[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return out


@dataclass
class Instances:
    """A label image plus one score per instance.

    Attributes:
        labels: HxW uint16/uint32, 0 = background, 1..N = instances.
        scores: N float32, ``scores[i]`` belongs to label ``i + 1``, in [0, 1].
    """

    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.labels.dtype == bool:
            raise LabelError("Instances.labels: label ids must be integers, got bool")
        check_labels(self.labels, "Instances.labels")
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = int(self.labels.max()) if self.labels.size else 0
        if self.scores.size != n:
            raise LabelError(f"Instances has {n} labels but {self.scores.size} scores")

    @property
    def n(self) -> int:
        return int(self.scores.size)

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Instances:
        return cls(np.zeros(shape, np.uint16), np.zeros(0, np.float32))

    @classmethod
    def from_labels(cls, labels: np.ndarray, scores: np.ndarray | None = None) -> Instances:
        """Relabel any non-negative label image to 1..N; ``scores`` is indexed by old id - 1."""
        new, old = relabel_sequential(check_labels(labels))
        if scores is None:
            s = np.ones(old.size, np.float32)
        else:
            s = np.asarray(scores, np.float32)[old.astype(np.int64) - 1]
        return cls(new, s)

    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: np.ndarray | None = None) -> Instances:
        """NxHxW bool masks -> Instances; overlaps go to the higher score, hidden masks vanish."""
        s = np.ones(masks.shape[0], np.float32) if scores is None else np.asarray(scores)
        return cls.from_labels(masks_to_labels(masks, s), s)

    def select(self, keep: np.ndarray) -> Instances:
        """Keep the instances where the N-bool ``keep`` is True, relabelled 1..M."""
        keep = np.asarray(keep, bool)
        lut = np.zeros(self.n + 1, dtype=label_dtype(int(keep.sum())))
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
        return Instances(lut[self.labels], self.scores[keep])

    def clean(self, min_size: int = 0, fill: bool = True) -> Instances:
        """Fill holes, drop instances under ``min_size`` pixels, relabel."""
        labels = fill_holes(self.labels) if fill else self.labels
        labels = remove_small(labels, min_size)
        return Instances.from_labels(labels, self.scores)

    def areas(self) -> np.ndarray:
        return areas(self.labels, self.n)

    def centroids(self) -> np.ndarray:
        return centroids(self.labels, self.n)

    def bboxes(self) -> np.ndarray:
        return bboxes(self.labels, self.n)

    def to_masks(self) -> np.ndarray:
        return labels_to_masks(self.labels)
