"""Shared test fixtures: synthetic cell images and label comparison."""

from __future__ import annotations

import numpy as np


def disc_labels(
    shape: tuple[int, int], n: int, rmin: int = 4, rmax: int = 10, seed: int = 0
) -> np.ndarray:
    """HxW uint16 labels of ``n`` random non-overlapping-ish discs (later discs win overlaps)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    k = 0
    for _ in range(n * 5):
        if k == n:
            break
        r = rng.integers(rmin, rmax + 1)
        cy, cx = rng.integers(r, shape[0] - r), rng.integers(r, shape[1] - r)
        y0, y1, x0, x1 = max(cy - r - 1, 0), cy + r + 2, max(cx - r - 1, 0), cx + r + 2
        if (labels[y0:y1, x0:x1] > 0).any():
            continue
        k += 1
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images hold the same instances, whatever their ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]), axis=1)
    return pairs.shape[1] == len(np.unique(a[fg])) == len(np.unique(b[fg]))


def tiny_student_checkpoint(path):
    """A flow_xs student checkpoint with random weights (seed 0), as training saves one."""
    import torch

    from student.model import VARIANTS, StudentNet

    torch.manual_seed(0)
    net = StudentNet(**VARIANTS["flow_xs"])
    with torch.no_grad():
        net.head[-1].bias[0] = 0.5  # push some pixels over the probability threshold
    torch.save(
        dict(
            state_dict=net.state_dict(),
            net=net.config(),
            variant="flow_xs",
            nominal_diameter=17.0,
            postprocess=dict(prob_threshold=0.5, min_size=4, flow_threshold=None),
            predictor=dict(tile=256, overlap=48, diameter=17.0),
            metrics={"f1_50": 0.0},
        ),
        path,
    )
    return path


def two_teacher_config(teacher: dict, custom_teachers: dict, **pseudo) -> dict:
    """A pseudo-label config of two variants of ``teacher`` (sigma 1 weight 1, sigma 2 weight
    0.5), fused at hi=0.6, with 2 Ray workers; ``pseudo`` overrides the run options."""
    opts = dict(num_workers=2, retries=1, max_restarts=2, max_task_retries=2)
    return dict(
        teachers=[
            dict(name="a", cfg=teacher, checkpoint=None, weight=1.0),
            dict(name="b", cfg={**teacher, "sigma": 2.0}, checkpoint=None, weight=0.5),
        ],
        fusion=dict(hi=0.6),
        pseudo=dict(opts, custom_teachers=custom_teachers, **pseudo),
    )


class OracleBackend:
    """A perfect 'network' for bright discs: logits and flows from the labels it sees.

    Like a real network it is local: a disc fully inside a tile gets the same outputs in
    the tile as in the whole image, so tiled and whole-image predictions must agree exactly.
    ``calls`` records the batch shapes it was given. Ray workers import it from here.
    """

    stride = 16

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        from scipy import ndimage as ndi

        from cellfuse.flows import FLOW_SCALE, labels_to_flows

        self.calls.append(x.shape)
        out = np.zeros((x.shape[0], 3, *x.shape[2:]), np.float32)
        for i, img in enumerate(x):
            lab, _ = ndi.label(img[0] > 0.5)
            out[i, 0] = np.where(lab > 0, 8.0, -8.0)
            out[i, 1:] = FLOW_SCALE * labels_to_flows(lab)
        return out
