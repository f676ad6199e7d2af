"""Running an exported student: the onnxruntime backend and the ``.json`` sidecar that
holds what the predictor needs beside the network (stride, nominal diameter,
post-processing, tiling). numpy + onnxruntime only: no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError

SIDECAR_VERSION = 1
INPUT, OUTPUT = "image", "output"


class OnnxBackend:
    """onnxruntime session behind the predictor's backend interface.

    Args:
        onnx_path: the exported model.
        stride: input H and W must be multiples of it (from the sidecar).
        threads: intra-op threads (0 = onnxruntime's default).
        providers: onnxruntime providers; default CUDA when available, then CPU.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        stride: int,
        threads: int = 0,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ConfigError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider",) if p in avail]
            providers.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.stride = int(stride)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``Bx3xHxW`` float32 (H, W multiples of :attr:`stride`) -> ``Bx3xHxW`` float32."""
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]


def sidecar_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The JSON sidecar next to an exported ONNX file."""
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: sidecar not found (written by `cellfuse export` next to the .onnx)"
        )
    side = json.loads(path.read_text())
    if side.get("format_version") != SIDECAR_VERSION:
        raise ConfigError(
            f"{path}: sidecar format {side.get('format_version')}, expected {SIDECAR_VERSION}"
        )
    from student.export_guard import verify_onnx_hash

    verify_onnx_hash(side, onnx_path, path)  # the sidecar belongs to this very ONNX file
    return side


__all__ = ["OnnxBackend", "read_sidecar", "sidecar_path", "SIDECAR_VERSION", "INPUT", "OUTPUT"]
