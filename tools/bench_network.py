"""The exported student's network alone on a slide-sized crop: fp32 against int8
(onnxruntime static quantisation, QDQ and QOperator) at several tile sizes.

    python tools/benchmark.py --parts network --onnx student.onnx

Times are per Mpx of the crop (tile overlap included, as a slide pays it), interleaved over
rounds, minimum kept: on a busy machine only the ratios between rows count. The int8 models
are calibrated on a few training images and written under ``WORK/network``; whether they are
faster depends on the CPU (int8 dot-product instructions: AVX512-VNNI / AVX-VNNI / AMX).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

TILES = (512, 768, 1024)
OVERLAP = 64


def cpu_flags() -> list[str]:
    """The int8-relevant instruction sets this CPU reports (Linux ``/proc/cpuinfo``)."""
    want = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return [f for f in want if f in flags]


def _network_input(image: np.ndarray) -> np.ndarray:
    from cellfuse.preprocess import prepare_image

    return np.ascontiguousarray(prepare_image(image).transpose(2, 0, 1), np.float32)


def quantize(onnx: Path, calib: list[Path], out_dir: Path, side: int = 256) -> dict[str, Path]:
    """int8 QDQ and QOperator models of ``onnx``, calibrated on ``side``-px crops of ``calib``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from cellfuse.io import read_image

    out_dir.mkdir(parents=True, exist_ok=True)
    pre = out_dir / "pre.onnx"
    quant_pre_process(str(onnx), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.files = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self.files, None)
            if path is None:
                return None
            x = _network_input(read_image(path))[:, :side, :side]
            pad = ((0, 0), (0, side - x.shape[1]), (0, side - x.shape[2]))
            return {"image": np.pad(x, pad, mode="reflect")[None]}

    models = {}
    for fmt, name in ((QuantFormat.QDQ, "int8_qdq"), (QuantFormat.QOperator, "int8_qop")):
        path = out_dir / f"{name}.onnx"
        if not path.is_file():
            quantize_static(
                str(pre),
                str(path),
                Reader(),
                quant_format=fmt,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        models[name] = path
    return models


def _tiles_time(session: Any, x: np.ndarray, tile: int) -> float:
    """Seconds to run the network over ``x`` (3xHxW) in the predictor's tiles
    (:func:`cellfuse.tiling.tile_grid`: ``tile`` px overlapping by :data:`OVERLAP`, the last
    ones shifted inside the image)."""
    from cellfuse.tiling import tile_grid

    t0 = time.perf_counter()
    for t in tile_grid(x.shape[1:], tile, OVERLAP):
        session.run(None, {"image": np.ascontiguousarray(x[(slice(None), *t.read)][None])})
    return time.perf_counter() - t0


def part_network(
    onnx: Path, image: np.ndarray, calib: list[Path], work: Path, threads: int, rounds: int = 2
) -> dict[str, Any]:
    """s/Mpx of ``image`` per model and tile size (see module doc)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    paths = {"fp32": onnx, **quantize(onnx, calib, work / "network")}
    sessions = {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    x = _network_input(image)
    if min(x.shape[1:]) < max(TILES):  # a smaller side would be one tile of another size
        raise ValueError(f"image {x.shape[1:]} is smaller than the largest tile {max(TILES)}")
    mpx = x.shape[1] * x.shape[2] / 1e6
    best: dict[str, dict[str, float]] = {k: {} for k in sessions}
    for _ in range(rounds):  # interleaved, so a busy spell hits every row alike
        for name, sess in sessions.items():
            for tile in TILES:
                s = _tiles_time(sess, x, tile) / mpx
                best[name][str(tile)] = round(min(best[name].get(str(tile), s), s), 4)
    return {
        "onnx": str(onnx),
        "shape": list(x.shape[1:]),
        "threads": threads,
        "overlap": OVERLAP,
        "cpu_flags": cpu_flags(),
        "s_per_mpx": best,
        "int8_vs_fp32_at_512": {
            k: round(v["512"] / best["fp32"]["512"], 3) for k, v in best.items() if k != "fp32"
        },
    }


__all__ = ["part_network", "quantize", "cpu_flags", "TILES", "OVERLAP"]
