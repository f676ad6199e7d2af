"""Runs a torch student network on numpy batches (the predictor's torch backend; the ONNX
one is :class:`student.export.OnnxBackend`). torch is imported when a backend is built."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np


class TorchBackend:
    """Runs a torch student on ``Bx3xHxW`` float32 numpy batches.

    A private copy of the network is used with its batch norms folded into the convs; on CPU
    it runs channels-last, on CUDA under bf16 (fp16 when bf16 is unsupported) autocast; the
    outputs are float32.
    """

    def __init__(self, net: Any, device: str = "auto", amp: bool = True) -> None:
        import torch

        from student.model import fuse_batchnorm

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.stride = int(net.stride)
        self.net = fuse_batchnorm(copy.deepcopy(net).float().eval()).to(self.device)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.amp_dtype = None
        if amp and self.device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_torch(x).cpu().numpy()

    def run_torch(self, x: Any) -> Any:
        """``Bx3xHxW`` tensor or array (H, W multiples of :attr:`stride`) -> float32 tensor."""
        import torch

        t = torch.as_tensor(x, dtype=torch.float32).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        amp = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), amp:
            y = self.net(t)
        return y.float().contiguous()


__all__ = ["TorchBackend"]
