"""Export the student: ONNX (+ a JSON sidecar), a ``torch.export`` program, and parity checks.

::

    paths = export_student("work/student/distill_cpu/best.pth", "work/export")
    pred = StudentPredictor.from_onnx(paths["onnx"])     # onnxruntime, no training code

ONNX: ``torch.onnx.export`` with a dynamic batch, height and width (H and W must be
multiples of the network stride; the predictor pads). torch 2.14's default exporter is the
dynamo one (``dynamo=True`` + ``dynamic_shapes``), which needs the ``onnxscript`` package;
``exporter="auto"`` uses it when ``onnxscript`` is importable and the TorchScript-based one
(``dynamo=False`` + ``dynamic_axes``) otherwise. Batch norms are folded into the convs
first. The sidecar ``<name>.json`` holds everything the predictor needs besides the network:
stride, nominal diameter, normalisation, post-processing thresholds, tiling.

``torch.export``: an :class:`torch.export.ExportedProgram` with the same dynamic dims, saved
as ``.pt2`` (TorchScript is deprecated upstream and not offered).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError
from cellfuse.io import atomic_write_text
from student.onnx_backend import (  # noqa: F401  (re-exported)
    INPUT,
    OUTPUT,
    SIDECAR_VERSION,
    OnnxBackend,
    read_sidecar,
    sidecar_path,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- export


def _onnxscript_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxscript") is not None


def export_onnx(
    net: Any, path: str | Path, *, exporter: str = "auto", opset: int = 18, size: int = 256
) -> str:
    """Export a student network to ONNX with dynamic batch, height and width.

    Args:
        net: :class:`student.model.StudentNet` (batch norms are folded in a copy).
        path: output ``.onnx`` file (written atomically).
        exporter: "dynamo", "torchscript" or "auto" (see module doc).
        opset: ONNX opset.
        size: side of the example input (a multiple of the stride).

    Returns:
        The exporter used.
    """
    import copy

    import torch

    from cellfuse.io import atomic_write
    from student.model import fuse_batchnorm

    if exporter == "auto":
        exporter = "dynamo" if _onnxscript_available() else "torchscript"
    net = fuse_batchnorm(copy.deepcopy(net).float().cpu().eval())
    x = torch.rand(1, 3, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if exporter == "dynamo":
        prog = torch.onnx.export(
            net,
            (x,),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"x": _dynamic_dims(net.stride)},
            opset_version=opset,
        )
        prog.save(str(tmp))
    elif exporter == "torchscript":
        with warnings.catch_warnings():  # its deprecation notice: see the module doc
            warnings.simplefilter("ignore", DeprecationWarning)
            _export_torchscript(net, x, tmp, opset)
    else:
        raise ConfigError(f"unknown exporter {exporter!r} (auto, dynamo, torchscript)")
    with atomic_write(path, "wb") as fh:
        fh.write(tmp.read_bytes())
    tmp.unlink()
    return exporter


def _export_torchscript(net: Any, x: Any, tmp: Path, opset: int) -> None:
    import torch

    torch.onnx.export(
        net,
        (x,),
        str(tmp),
        dynamo=False,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={
            INPUT: {0: "batch", 2: "height", 3: "width"},
            OUTPUT: {0: "batch", 2: "height", 3: "width"},
        },
        opset_version=min(opset, 17),
    )


def _dynamic_dims(stride: int) -> dict[int, Any]:
    from torch.export import Dim

    h, w = Dim("h", min=1, max=1024), Dim("w", min=1, max=1024)
    return {0: Dim("batch", min=1, max=1024), 2: stride * h, 3: stride * w}


def export_program(net: Any, path: str | Path, size: int = 256) -> Path:
    """``torch.export`` the network (dynamic batch/H/W, BN folded) and save it as ``.pt2``."""
    import copy

    import torch

    from student.model import fuse_batchnorm

    net = fuse_batchnorm(copy.deepcopy(net).float().cpu().eval())
    ep = torch.export.export(
        net, (torch.rand(2, 3, size, size),), dynamic_shapes={"x": _dynamic_dims(net.stride)}
    )
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")  # torch.export.save wants a .pt2 suffix
    torch.export.save(ep, str(tmp))
    tmp.replace(path)
    return path


def write_sidecar(onnx_path: str | Path, net: Any, meta: dict[str, Any], exporter: str) -> Path:
    """Everything besides the network that inference needs, as JSON next to the ONNX file."""
    from cellfuse.flow_instances import FLOW_SCALE, PostProcess
    from student.export_guard import file_sha256

    side = dict(
        format_version=SIDECAR_VERSION,
        onnx_sha256=file_sha256(onnx_path),
        variant=meta.get("variant"),
        net=net.config(),
        stride=int(net.stride),
        exporter=exporter,
        input=dict(
            name=INPUT,
            layout="Bx3xHxW float32 in [0, 1]; H, W multiples of stride (reflect-pad)",
            normalisation=dict(
                rgb="gray repeated, alpha dropped",
                percentiles=[1.0, 99.8],
                per_channel=True,
                invert="when the median of the normalised gray > 0.5",
            ),
        ),
        output=dict(
            name=OUTPUT,
            layout="Bx3xHxW float32: cell logit, flow dy and dx times flow_scale",
            flow_scale=FLOW_SCALE,
        ),
        nominal_diameter=float(meta.get("nominal_diameter") or 17.0),
        postprocess=PostProcess.from_dict(meta.get("postprocess")).to_dict(),
        predictor=dict(meta.get("predictor") or {}),
        metrics=dict(meta.get("metrics") or {}),
    )
    path = sidecar_path(onnx_path)
    atomic_write_text(path, json.dumps(side, indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- parity


def parity(
    net: Any,
    onnx_path: str | Path,
    images: list[np.ndarray] | None = None,
    *,
    threads: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the torch network with its ONNX export.

    Network outputs are compared on a random input and on each image (normalised, padded);
    final labels of :class:`StudentPredictor` (torch vs onnxruntime) are compared with the
    challenge F1 (torch labels as truth).

    Returns:
        ``{"random_max_abs", "images": [{"max_abs", "n_torch", "n_onnx", "f1_50", "f1_75"}]}``.
    """
    import torch

    from cellfuse.metric import evaluate_image
    from cellfuse.preprocess import Normalizer, pad_to_multiple
    from student.predictor import StudentPredictor

    side = read_sidecar(onnx_path)
    backend = OnnxBackend(onnx_path, stride=side["stride"], threads=threads)
    ref = net.float().cpu().eval()

    def torch_out(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return ref(torch.from_numpy(x)).numpy()

    rng = np.random.default_rng(seed)
    x = rng.random((2, 3, 2 * backend.stride, 3 * backend.stride), dtype=np.float32)
    report: dict[str, Any] = dict(random_max_abs=float(np.abs(torch_out(x) - backend(x)).max()))
    kw = dict(
        nominal_diameter=side["nominal_diameter"],
        postprocess=side["postprocess"],
        **side.get("predictor", {}),
    )
    p_torch = StudentPredictor(ref, device="cpu", **kw)
    p_onnx = StudentPredictor(backend, **kw)
    report["images"] = []
    for img in images or []:
        norm = Normalizer.from_image(img)
        if norm is None:
            continue
        xi = pad_to_multiple(norm(img).transpose(2, 0, 1)[None].copy(), backend.stride)
        diff = float(np.abs(torch_out(xi) - backend(xi)).max())
        a, b = p_torch.predict(img), p_onnx.predict(img)
        s = evaluate_image(a.labels, b.labels, (0.5, 0.75))["scores"]
        report["images"].append(
            dict(
                max_abs=diff,
                n_torch=a.n,
                n_onnx=b.n,
                f1_50=s[0.5]["f1"],
                f1_75=s[0.75]["f1"],
                same_labels=bool(np.array_equal(a.labels, b.labels)),
            )
        )
    return report


def export_student(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    name: str = "student",
    exporter: str = "auto",
    program: bool = True,
    check_images: list[np.ndarray] | None = None,
    max_abs: float | None = None,
    min_f1: float | None = None,
) -> dict[str, Any]:
    """Export a trained student checkpoint to ``out_dir``: ONNX + sidecar (+ ``.pt2``), and
    check parity: beyond ``max_abs`` / ``min_f1`` (default
    :data:`student.export_guard.PARITY_MAX_ABS` / ``PARITY_MIN_F1``) the export fails with
    :class:`student.export_guard.ParityError` (the report is still written).

    Returns:
        ``{"onnx", "sidecar", "pt2", "exporter", "seconds", "parity"}`` (also written to
        ``out_dir/<name>_export.json``).
    """
    from student.model import load_student

    net, meta = load_student(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    onnx_path = out / f"{name}.onnx"
    used = export_onnx(net, onnx_path, exporter=exporter)
    side = write_sidecar(onnx_path, net, meta, used)
    result: dict[str, Any] = dict(onnx=str(onnx_path), sidecar=str(side), exporter=used)
    if program:
        result["pt2"] = str(export_program(net, out / f"{name}.pt2"))
    result["seconds"] = round(time.time() - t0, 2)
    result["parity"] = parity(net, onnx_path, check_images)
    from student import export_guard as guard

    tol = dict(
        max_abs=guard.PARITY_MAX_ABS if max_abs is None else max_abs,
        min_f1=guard.PARITY_MIN_F1 if min_f1 is None else min_f1,
    )
    result["parity"]["tolerance"] = tol
    try:
        guard.check_parity(result["parity"], **tol, where=str(onnx_path))
        result["parity"]["ok"] = True
    finally:
        result["parity"].setdefault("ok", False)
        atomic_write_text(out / f"{name}_export.json", json.dumps(result, indent=2) + "\n")
    log.info("exported %s -> %s (%s)", checkpoint, onnx_path, used)
    return result


__all__ = [
    "OnnxBackend",
    "export_onnx",
    "export_program",
    "export_student",
    "write_sidecar",
    "read_sidecar",
    "sidecar_path",
    "parity",
]
