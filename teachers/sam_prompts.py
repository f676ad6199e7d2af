"""Pure helpers of the SAM teacher: prompt points, zoom, image preparation, mask painting.

Also the two calls into the model, :func:`encode` (image -> embedding) and :func:`decode`
(B prompts on one embedding -> low-res logits + predicted IoU), shared by inference
(:mod:`teachers.sam`) and training (:mod:`teachers.sam_train`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cellfuse.instances import Instances, label_dtype
from cellfuse.preprocess import cell_areas, scale_for_diameter
from cellfuse.preprocess import equivalent_diameters as _diameters_of_areas
from cellfuse.preprocess import prepare_image as _prepare_image

# ----------------------------------------------------------------------------- pure helpers


def merge_prompt_points(points: Sequence[np.ndarray], radius: float = 3.0) -> np.ndarray:
    """Union of point sets with near-duplicates merged.

    Points closer than ``radius`` (transitively) form one cluster, replaced by its mean.
    NaN rows (absent instances) are dropped.

    Args:
        points: list of Nx2 float arrays of (y, x) points, e.g. one per teacher.
        radius: merge distance in px.

    Returns:
        Mx2 float64 points, M <= total N, ordered by each cluster's first point.
    """
    arrs = [np.asarray(p, np.float64).reshape(-1, 2) for p in points]
    pts = np.concatenate(arrs) if arrs else np.zeros((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2 or radius <= 0:
        return pts
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    n = len(pts)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    k, comp = connected_components(graph, directed=False)
    count = np.bincount(comp, minlength=k)
    merged = np.stack([np.bincount(comp, pts[:, i], minlength=k) / count for i in (0, 1)], 1)
    first = np.full(k, n)
    np.minimum.at(first, comp, np.arange(n))
    return merged[np.argsort(first, kind="stable")]


def neighbour_negatives(points: np.ndarray, k: int, radius: float) -> np.ndarray:
    """Indices of each point's ``k`` nearest other points within ``radius``.

    Args:
        points: Nx2 float points.
        k: neighbours per point.
        radius: largest distance.

    Returns:
        NxK int64 indices into ``points``, -1 where there are fewer neighbours.
    """
    n = len(points)
    if k <= 0 or n < 2:
        return np.full((n, max(k, 0)), -1, np.int64)
    dist, idx = cKDTree(points).query(points, k=k + 1, distance_upper_bound=radius)
    dist, idx = dist[:, 1:].reshape(n, k), idx[:, 1:].reshape(n, k)
    return np.where(np.isfinite(dist), idx, -1).astype(np.int64)


def prompt_scale(
    diameters: np.ndarray, nominal: float, limits: tuple[float, float] = (0.25, 4.0)
) -> float:
    """Zoom factor that brings the median of ``diameters`` (px) to ``nominal`` px
    (:func:`cellfuse.preprocess.scale_for_diameter`)."""
    d = diameters[np.isfinite(diameters) & (diameters > 0)]
    if d.size == 0:
        return 1.0
    return scale_for_diameter(nominal, float(np.median(d)), *limits)


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """N float: diameter of the disc with each instance's area (instances 1..max)."""
    return _diameters_of_areas(cell_areas(labels).astype(np.float64))


def prepare_image(image: np.ndarray, invert_bright: bool = True) -> np.ndarray:
    """Any HxWxC (or HxW) image -> HxWx3 float32 RGB in [0, 255], as SAM expects:
    :func:`cellfuse.preprocess.prepare_image` (bright backgrounds inverted unless
    ``invert_bright`` is False) times 255."""
    return _prepare_image(image, "auto" if invert_bright else False) * 255.0


def paint_masks(
    shape: tuple[int, int],
    masks: Sequence[tuple[int, int, np.ndarray]],
    scores: np.ndarray,
    min_visible: float = 0.5,
) -> Instances:
    """Resolve overlapping masks into one label image, best score first.

    A mask takes only pixels no better mask holds; one left with less than
    ``min_visible`` of its area is dropped (a duplicate answer to a near-duplicate prompt).

    Args:
        shape: (H, W) of the output.
        masks: (y0, x0, hxw bool window) per mask, in output coordinates.
        scores: N float, one per mask.
        min_visible: smallest kept fraction of a mask.

    Returns:
        Instances with labels ordered by descending score.
    """
    labels = np.zeros(shape, label_dtype(len(masks)))
    kept: list[float] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        y0, x0, m = masks[i]
        win = labels[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        free = m & (win == 0)
        if free.sum() < min_visible * m.sum() or not free.any():
            continue
        kept.append(float(scores[i]))
        win[free] = len(kept)
    return Instances(labels, np.asarray(kept, np.float32))


# Default errors of the imperfect label copies (:func:`perturb_labels`): boundary and shift
# noise in cell radii, and the share of touching pairs merged.
MASK_NOISE = 0.1
MASK_MERGE_PROB = 0.1


def perturb_labels(
    labels: np.ndarray,
    rng: np.random.Generator,
    noise: float = MASK_NOISE,
    merge_prob: float = MASK_MERGE_PROB,
) -> np.ndarray:
    """An imperfect copy of a label image, as another teacher would segment it.

    Each cell's boundary moves in or out (its signed distance map thresholded at
    ``N(0, noise * r)``), wobbles (a smooth random field of the same scale is added) and the
    cell shifts by ``N(0, noise * r)`` px, r its equivalent radius; with ``merge_prob`` a cell
    swallows a touching neighbour. These are the errors of the prompting teachers whose
    masks SAM gets as mask prompts (:func:`mask_prompt_input`) and learns to correct.

    Returns:
        HxW labels of the same dtype; ids are those of ``labels`` (a swallowed cell is gone).
    """
    lab = np.asarray(labels)
    out = np.zeros_like(lab)
    n = int(lab.max()) if lab.size else 0
    if n == 0:
        return out
    owner = np.arange(n + 1)
    if merge_prob > 0:
        # touching pairs: a pixel and its right/lower neighbour with different non-zero ids
        pairs = [
            np.stack([a[(a != b) & (a > 0) & (b > 0)], b[(a != b) & (a > 0) & (b > 0)]], 1)
            for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:]))
        ]
        pairs = np.unique(np.concatenate(pairs), axis=0)
        for a, b in pairs[rng.random(len(pairs)) < merge_prob]:
            if owner[a] == a and owner[b] == b:
                owner[b] = a
    lab_m = owner[lab]
    h, w = lab.shape
    for i, sl in enumerate(ndi.find_objects(lab_m), start=1):
        if sl is None:
            continue
        r = max(1.0, np.sqrt((lab_m[sl] == i).sum() / np.pi))
        pad = int(np.ceil(2 * noise * r)) + 3
        y0, y1 = max(0, sl[0].start - pad), min(h, sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(w, sl[1].stop + pad)
        m = lab_m[y0:y1, x0:x1] == i
        sd = ndi.distance_transform_edt(m) - ndi.distance_transform_edt(~m)
        field = ndi.gaussian_filter(rng.normal(size=m.shape), max(1.0, r / 3))
        field *= noise * r / max(float(field.std()), 1e-6)
        m = sd + field > rng.normal(0, noise * r)
        dy, dx = np.round(rng.normal(0, noise * r, 2)).astype(int)
        m = np.roll(m, (dy, dx), (0, 1))
        win = out[y0:y1, x0:x1]
        win[m & (win == 0)] = i
    return out


def component_at(mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """The connected component of ``mask`` holding (y, x), else its largest one."""
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and lab[y, x] > 0:
        return lab == lab[y, x]
    return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)


# ----------------------------------------------------------------------------- prompting


def point_prompts(
    pos: np.ndarray, neg: np.ndarray | None, neg_idx: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """SAM point prompts: one positive point plus up to K negatives per prompt.

    Args:
        pos: Bx2 (y, x) positive points in the encoder frame.
        neg: Mx2 (y, x) candidate negatives in the encoder frame (or None).
        neg_idx: BxK indices into ``neg``, -1 = none.

    Returns:
        (Bx(1+K)x2 float32 (x, y) coords, Bx(1+K) float32 labels: 1 pos, 0 neg, -1 pad).
    """
    b = len(pos)
    k = 0 if neg_idx is None else neg_idx.shape[1]
    coords = np.zeros((b, 1 + k, 2), np.float32)
    labels = np.full((b, 1 + k), -1.0, np.float32)
    coords[:, 0] = pos[:, ::-1]
    labels[:, 0] = 1
    if k and neg is not None and len(neg):
        valid = neg_idx >= 0
        coords[:, 1:][valid] = neg[neg_idx[valid]][:, ::-1]
        labels[:, 1:][valid] = 0
    return coords, labels


def decode(
    sam: Any,
    embedding: torch.Tensor,
    coords: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor | None = None,
    multimask: bool = False,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for B prompts on one image embedding.

    Args:
        sam: the model.
        embedding: 1xCxhxw image embedding.
        coords: BxNx2 (x, y) points in the encoder frame; labels BxN (1/0/-1).
        boxes: Bx4 (x0, y0, x1, y1) or None.
        multimask: use the three multimask outputs (else the single-mask token).
        masks: Bx1xLxL dense mask prompts (:func:`mask_prompt_input`) or None.

    Returns:
        (BxKxLxL low-res logits, BxK predicted IoU), K = 3 if multimask else 1.
    """
    sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=boxes, masks=masks)
    return sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


# A mask prompt is a low-res logit map, as SAM feeds its previous answer back: +-this value
# inside/outside the prompting mask (area-averaged at the mask borders).
MASK_PROMPT_LOGIT = 8.0


def mask_prompt_input(masks: torch.Tensor, sam: Any) -> torch.Tensor:
    """BxSxS {0, 1} masks in the encoder frame (S = img_size) -> Bx1xLxL dense mask prompts
    at SAM's mask-input size L (4x the image embedding), as logits of the covered fraction."""
    low = int(sam.prompt_encoder.mask_input_size[0])
    frac = F.adaptive_avg_pool2d(masks[:, None].float(), low)
    return MASK_PROMPT_LOGIT * (2.0 * frac - 1.0)


def encode(sam: Any, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """B images, each 3xhxw float RGB in [0, 255] (h, w <= img_size) -> BxCxexe embeddings.

    Each image is normalised and zero-padded bottom/right to ``img_size`` (``Sam.preprocess``).
    """
    return sam.image_encoder(torch.stack([sam.preprocess(x) for x in images]))


def sample_window(
    logits: torch.Tensor,
    frame: int,
    y0: float,
    x0: float,
    sy: float,
    sx: float,
    win: tuple[int, int, int, int],
) -> np.ndarray:
    """Resample an LxL low-res logit map onto original pixels ``win`` (oy0, oy1, ox0, ox1).

    The map covers the encoder frame (``frame`` px) whose origin is at (y0, x0) in the
    rescaled image; rescaled = (original + 0.5) * s - 0.5.
    """
    oy0, oy1, ox0, ox1 = win
    ys = (torch.arange(oy0, oy1, dtype=torch.float32) + 0.5) * sy - 0.5 - y0
    xs = (torch.arange(ox0, ox1, dtype=torch.float32) + 0.5) * sx - 0.5 - x0
    gy = 2 * (ys + 0.5) / frame - 1
    gx = 2 * (xs + 0.5) / frame - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    out = F.grid_sample(logits[None, None], grid, mode="bilinear", align_corners=False)
    return out[0, 0].numpy()
