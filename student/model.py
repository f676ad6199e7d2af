"""The student network: a compact flow U-Net, and a registry of its variants.

Like segment-anything's ``sam_model_registry``: one private builder, thin public builders
per variant, and a plain dict mapping names to builders. A builder takes
``checkpoint=None``, loads a local state dict when given one, returns the model in
``eval()`` mode and never downloads anything::

    net = student_registry["flow_s"](checkpoint="work/student/distill_cpu/best.pth")

Why it is fast (the teacher U-Net costs ~74 GFLOP/Mpx): a stride-2 stem, so no block runs
at full resolution except one cheap depthwise-separable fusion of the upsampled decoder
features with 8 full-resolution channels computed straight from the input (which keeps
mask boundaries sharp); depthwise-separable blocks everywhere else. ``flow_s`` costs
~3 GFLOP/Mpx (see :func:`flops_per_mpx`).

Outputs are the flow teacher's: channel 0 the cell-probability logit, channels 1-2 the flow
``(dy, dx)`` times :data:`cellfuse.flows.FLOW_SCALE`. Only ONNX-friendly ops are used
(convs, bilinear x2 upsampling, concatenation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellfuse.errors import ConfigError
from cellfuse.nn.checkpoints import load_checkpoint
from cellfuse.nn.layers import ACTS, NORMS, ActFactory, NormFactory, count_parameters, lookup


class DSConv(nn.Module):
    """Depthwise 3x3 (optionally strided) -> norm -> act -> pointwise 1x1 -> norm -> act,
    with an identity shortcut when shapes allow."""

    def __init__(
        self, in_ch: int, out_ch: int, norm: NormFactory, act: ActFactory, stride: int = 1
    ) -> None:
        super().__init__()
        self.dw = nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False)
        self.n1, self.a1 = norm(in_ch), act()
        self.pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.n2, self.a2 = norm(out_ch), act()
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a2(self.n2(self.pw(self.a1(self.n1(self.dw(x))))))
        return x + y if self.residual else y


class StudentNet(nn.Module):
    """Compact flow U-Net (see module doc).

    Input height and width must be multiples of :attr:`stride` (``2 ** len(widths)``);
    :func:`cellfuse.nn.layers.pad_to_multiple` pads them.

    Args:
        in_ch: input channels.
        out_ch: output channels (3: logit, 5*dy, 5*dx).
        widths: channels per level; level ``i`` runs at ``1 / 2 ** (i + 1)`` resolution.
        blocks: depthwise-separable blocks per encoder level (after its downsampling).
        full_ch: channels of the full-resolution input branch; 0: no full-resolution branch,
            the head runs at half resolution and only its ``out_ch`` maps are upsampled
            (bilinear) to full resolution.
        norm: name in :data:`cellfuse.nn.layers.NORMS`.
        act: name in :data:`cellfuse.nn.layers.ACTS`.
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 2, 2),
        full_ch: int = 8,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if len(widths) < 1 or min(widths) < 1 or len(blocks) != len(widths) or full_ch < 0:
            raise ConfigError(
                f"StudentNet: need positive widths, one block count per width and full_ch >= 0 "
                f"(got widths={widths}, blocks={blocks}, full_ch={full_ch})"
            )
        self._config = dict(
            in_ch=int(in_ch),
            out_ch=int(out_ch),
            widths=[int(w) for w in widths],
            blocks=[int(b) for b in blocks],
            full_ch=int(full_ch),
            norm=norm,
            act=act,
        )
        nf: NormFactory = lookup(NORMS, norm, "norm")
        af: ActFactory = lookup(ACTS, act, "activation")
        ws = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_ch, ws[0], 3, 2, 1, bias=False), nf(ws[0]), af())
        # (modules are created in the order they always were: seeded inits replay)
        self.full: nn.Module | None = None
        if full_ch:
            self.full = nn.Sequential(
                nn.Conv2d(in_ch, full_ch, 3, 1, 1, bias=False), nf(full_ch), af()
            )
        self.down = nn.ModuleList()
        for i, (w, b) in enumerate(zip(ws, blocks, strict=True)):
            layers: list[nn.Module] = [] if i == 0 else [DSConv(ws[i - 1], w, nf, af, stride=2)]
            layers += [DSConv(w, w, nf, af) for _ in range(b)]
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(
            DSConv(ws[i + 1] + ws[i], ws[i], nf, af) for i in reversed(range(len(ws) - 1))
        )
        self.proj: nn.Module | None = None
        if full_ch:
            # Full resolution is where time goes: only thin tensors (full_ch channels) live there.
            self.proj = nn.Conv2d(ws[0], full_ch, 1)
            self.head = nn.Sequential(
                nn.Conv2d(2 * full_ch, 2 * full_ch, 1), af(), nn.Conv2d(2 * full_ch, out_ch, 1)
            )
        else:
            # On CPU the network's time is memory traffic, most of it at full resolution
            # (docs/slides.md): here nothing but the out_ch output maps reaches it.
            self.head = nn.Sequential(nn.Conv2d(ws[0], ws[0], 1), af(), nn.Conv2d(ws[0], out_ch, 1))

    @property
    def stride(self) -> int:
        return 2 ** len(self.down)

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this network: ``StudentNet(**net.config())``."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``BxCxHxW`` float32 in [0, 1] -> ``Bx(out_ch)xHxW``; H, W multiples of :attr:`stride`."""
        y = self.stem(x)
        skips = []
        for block in self.down:
            y = block(y)
            skips.append(y)
        skips.pop()
        for block in self.up:
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skips.pop()], dim=1))
        if self.full is None or self.proj is None:
            return F.interpolate(
                self.head(y), scale_factor=2.0, mode="bilinear", align_corners=False
            )
        y = F.interpolate(self.proj(y), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(torch.cat([y, self.full(x)], dim=1))


# ----------------------------------------------------------------------------- registry

VARIANTS: dict[str, dict[str, Any]] = {
    "flow_xs": dict(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), full_ch=8),
    "flow_s": dict(widths=(24, 48, 96, 192), blocks=(1, 2, 2, 2), full_ch=8),
    # flow_s with its head at half resolution (no full-resolution branch)
    "flow_s_half": dict(widths=(24, 48, 96, 192), blocks=(1, 2, 2, 2), full_ch=0),
    "flow_m": dict(widths=(32, 64, 128, 256), blocks=(2, 2, 3, 3), full_ch=16),
}


def _state_dict_of(checkpoint: str | Path | dict[str, Any]) -> dict[str, torch.Tensor]:
    """A bare state dict, or the ``state_dict`` entry of a training checkpoint."""
    ck = checkpoint
    if not isinstance(ck, dict):
        ck = load_checkpoint(checkpoint, what="student checkpoint")
    return ck["state_dict"] if "state_dict" in ck else ck


def _build_student(
    checkpoint: str | Path | dict[str, Any] | None = None, **net_kwargs: Any
) -> StudentNet:
    net = StudentNet(**net_kwargs)
    if checkpoint is not None:
        net.load_state_dict(_state_dict_of(checkpoint))
    return net.eval()


def build_flow_xs(checkpoint: str | Path | None = None) -> StudentNet:
    return _build_student(checkpoint, **VARIANTS["flow_xs"])


def build_flow_s(checkpoint: str | Path | None = None) -> StudentNet:
    return _build_student(checkpoint, **VARIANTS["flow_s"])


def build_flow_s_half(checkpoint: str | Path | None = None) -> StudentNet:
    return _build_student(checkpoint, **VARIANTS["flow_s_half"])


def build_flow_m(checkpoint: str | Path | None = None) -> StudentNet:
    return _build_student(checkpoint, **VARIANTS["flow_m"])


student_registry: dict[str, Callable[..., StudentNet]] = {
    "flow_xs": build_flow_xs,
    "flow_s": build_flow_s,
    "flow_s_half": build_flow_s_half,
    "flow_m": build_flow_m,
}


def build_student(
    variant: str = "flow_s", checkpoint: str | Path | None = None, **overrides: Any
) -> StudentNet:
    """A registered variant, optionally with its architecture keyword arguments changed."""
    if variant not in student_registry:
        raise ConfigError(f"unknown student variant {variant!r}; known: {sorted(student_registry)}")
    if not overrides:
        return student_registry[variant](checkpoint=checkpoint)
    return _build_student(checkpoint, **{**VARIANTS[variant], **overrides})


def load_student(checkpoint: str | Path) -> tuple[StudentNet, dict[str, Any]]:
    """Rebuild a trained student from a training checkpoint (its own net config inside).

    Returns:
        (the network in eval mode, the checkpoint's inference metadata: ``nominal_diameter``,
        ``postprocess`` and ``predictor`` dicts, ``metrics``, ``variant``).
    """
    path = Path(checkpoint)
    ck = load_checkpoint(path, what="student checkpoint")
    if "net" not in ck or "state_dict" not in ck:
        raise ConfigError(
            f"{path}: not a student training checkpoint (no 'net'/'state_dict'); "
            "load a bare state dict with student_registry[variant](checkpoint=...)"
        )
    net = _build_student(ck, **ck["net"])
    meta = {
        k: ck.get(k) for k in ("variant", "nominal_diameter", "postprocess", "predictor", "metrics")
    }
    return net, meta


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to ``bn(conv(x))`` in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        groups=conv.groups,
        bias=True,
    )
    std = torch.sqrt(bn.running_var + bn.eps)
    g = bn.weight / std
    fused.weight.data = conv.weight.data * g.reshape(-1, 1, 1, 1)
    b = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (b - bn.running_mean) * g + bn.bias
    return fused


@torch.no_grad()
def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair into one conv, in place (inference only).

    Saves one memory pass per norm on CPU; the outputs are unchanged up to float rounding.
    """
    net.eval()
    for mod in net.modules():
        if isinstance(mod, DSConv):
            if isinstance(mod.n1, nn.BatchNorm2d):
                mod.dw, mod.n1 = _fold_bn(mod.dw, mod.n1), nn.Identity()
            if isinstance(mod.n2, nn.BatchNorm2d):
                mod.pw, mod.n2 = _fold_bn(mod.pw, mod.n2), nn.Identity()
        elif isinstance(mod, nn.Sequential):
            kids = list(mod)
            for i in range(len(kids) - 1):
                if isinstance(kids[i], nn.Conv2d) and isinstance(kids[i + 1], nn.BatchNorm2d):
                    mod[i], mod[i + 1] = _fold_bn(kids[i], kids[i + 1]), nn.Identity()
    return net


def flops_per_mpx(net: nn.Module, size: int = 512) -> float:
    """Multiply-adds x 2 of convolutions per megapixel of input (GFLOP/Mpx), by forward hooks."""
    total = [0]

    def hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total[0] += 2 * k * out.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return total[0] / (size * size / 1e6) / 1e9


__all__ = [
    "StudentNet",
    "DSConv",
    "VARIANTS",
    "student_registry",
    "build_student",
    "build_flow_xs",
    "build_flow_s",
    "build_flow_s_half",
    "build_flow_m",
    "load_student",
    "count_parameters",
    "flops_per_mpx",
    "fuse_batchnorm",
]
