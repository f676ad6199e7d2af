"""Layer factories shared by every torch network here: norm and activation by name,
padding to the network stride, parameter counts.

Networks take their norm and activation as factories (timm's habit), so a variant is a
config entry, not new code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellfuse.errors import ConfigError

NormFactory = Callable[[int], nn.Module]
ActFactory = Callable[[], nn.Module]


def _group_norm(ch: int) -> nn.Module:
    return nn.GroupNorm(min(8, ch), ch)


NORMS: dict[str, NormFactory] = {
    "batch": nn.BatchNorm2d,
    "group": _group_norm,
    "instance": lambda ch: nn.InstanceNorm2d(ch, affine=True),
    "none": lambda ch: nn.Identity(),
}
ACTS: dict[str, ActFactory] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
}


def lookup(table: dict[str, Any], name: str, what: str) -> Any:
    """``table[name]``, or a ConfigError that lists the known names."""
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (replicate when too small) the bottom/right of ``BxCxHxW`` to a multiple.

    Returns:
        (padded tensor, (H, W) of the input, to crop the output back with ``[..., :H, :W]``).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of ``net``."""
    return sum(p.numel() for p in net.parameters())


__all__ = [
    "NormFactory",
    "ActFactory",
    "NORMS",
    "ACTS",
    "lookup",
    "pad_to_multiple",
    "count_parameters",
]
