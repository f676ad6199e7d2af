"""A small, plain-PyTorch U-Net whose sizes, norm and activation come from arguments.

Used by the flow U-Net teacher (and loaded by the student as a soft teacher). Everything needed to rebuild a network is
in :meth:`UNet.config` (plain ints and strings), so a checkpoint can hold it next to the
weights. Only ops that export cleanly to ONNX are used (3x3 convs, max-pool, bilinear
upsampling by 2, concatenation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellfuse.errors import ConfigError
from cellfuse.nn.layers import ACTS, NORMS, ActFactory, NormFactory, lookup


class ConvBlock(nn.Module):
    """``depth`` x (conv3x3 -> norm -> act), optionally with a residual 1x1 shortcut."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        norm: NormFactory,
        act: ActFactory,
        depth: int = 2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=False),
                norm(out_ch),
                act(),
            ]
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + self.shortcut(x) if self.shortcut is not None else y


class UNet(nn.Module):
    """U-Net: an encoder of ``len(widths)`` levels (max-pool between), a mirrored decoder
    (bilinear x2 upsampling, skip concatenation) and a 1x1 head.

    Input height and width must be multiples of :attr:`stride` (``2 ** (levels - 1)``);
    :func:`cellfuse.nn.layers.pad_to_multiple` pads them.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        widths: channels per level, e.g. ``(16, 32, 64, 128)``.
        depth: convolutions per block.
        norm: name in :data:`NORMS`.
        act: name in :data:`ACTS`.
        residual: residual shortcut in every block.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        widths: Sequence[int] = (16, 32, 64, 128),
        depth: int = 2,
        norm: str = "batch",
        act: str = "relu",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) < 1 or min(widths) < 1:
            raise ConfigError(f"UNet widths must be positive ints, got {widths}")
        self._config = dict(
            in_ch=int(in_ch),
            out_ch=int(out_ch),
            widths=[int(w) for w in widths],
            depth=int(depth),
            norm=norm,
            act=act,
            residual=bool(residual),
        )
        nf = lookup(NORMS, norm, "norm")
        af = lookup(ACTS, act, "activation")
        ws = list(widths)
        self.down = nn.ModuleList()
        prev = in_ch
        for w in ws:
            self.down.append(ConvBlock(prev, w, nf, af, depth, residual))
            prev = w
        self.up = nn.ModuleList(
            ConvBlock(ws[i + 1] + ws[i], ws[i], nf, af, depth, residual)
            for i in reversed(range(len(ws) - 1))
        )
        self.head = nn.Conv2d(ws[0], out_ch, 1)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.down) - 1)

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this network: ``UNet(**net.config())``."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``BxCxHxW`` -> ``Bx(out_ch)xHxW``; H and W multiples of :attr:`stride`."""
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


__all__ = ["UNet", "ConvBlock"]
