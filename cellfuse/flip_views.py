"""Test-time views: the eight flips and rotations of an image, and their inverses.

A teacher run on a flipped image and its output flipped back is a second, slightly different
opinion at no training cost. The ensemble lets one teacher vote once per view (data
distillation, Radosavovic et al. 2018: one model over several transforms labels unlabeled
data better than the model alone). Each view acts on the first two axes, so the same pair of
functions maps an HxWxC image forward and an HxW label image back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cellfuse.errors import ConfigError

Array = np.ndarray

# name -> (forward, inverse); every transform is a view, never a copy (callers copy when needed)
VIEWS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "identity": (lambda a: a, lambda a: a),
    "hflip": (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    "vflip": (lambda a: a[::-1], lambda a: a[::-1]),
    "rot180": (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
    "transpose": (lambda a: a.swapaxes(0, 1), lambda a: a.swapaxes(0, 1)),
    "rot90": (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, -1)),
    "rot270": (lambda a: np.rot90(a, -1), lambda a: np.rot90(a, 1)),
    "antitranspose": (
        lambda a: a[::-1, ::-1].swapaxes(0, 1),
        lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    ),
}


def check_view(name: str) -> str:
    if name not in VIEWS:
        raise ConfigError(f"unknown view {name!r}; known: {sorted(VIEWS)}")
    return name


def to_view(image: Array, name: str) -> Array:
    """``image`` as the model sees it in view ``name`` (C-contiguous)."""
    return np.ascontiguousarray(VIEWS[check_view(name)][0](image))


def from_view(labels: Array, name: str) -> Array:
    """A prediction made in view ``name`` mapped back to the original frame (C-contiguous)."""
    return np.ascontiguousarray(VIEWS[check_view(name)][1](labels))
