"""Prediction from an exported ONNX model needs no torch (a lab that only segments slides
installs ``cellfuse`` + ``onnxruntime``), and gives the torch backend's labels.

The no-torch run happens in a fresh interpreter in which importing torch (or mmengine,
mmcv, mmdet, segment-anything, ray) raises; it segments the demo test images from the
``.onnx`` + sidecar and reports ``sys.modules``.
"""

import json
import subprocess
import sys
import time

import numpy as np
import onnxruntime  # noqa: F401 - a dev install has it: missing fails, not skips
import torch
from conftest import DEMO, ROOT

from cellfuse.io import read_labels
from cellfuse.layout import image_id, list_images

HEAVY = ("torch", "torchvision", "mmengine", "mmcv", "mmdet", "segment_anything", "ray")

CHILD = r"""
import importlib.abc, json, sys, time
from pathlib import Path

HEAVY = {heavy!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is blocked: prediction must not need it")

sys.meta_path.insert(0, Block())
from student.batch import predict_files
from student.predictor import StudentPredictor

onnx, images, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
pred = StudentPredictor.from_onnx(onnx, threads=1, diameter=12.0)
summary = predict_files(pred, [Path(p) for p in images], out, key="onnx", progress=False)
summary["wall_s"] = time.perf_counter() - t0
summary["heavy_loaded"] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(summary))
"""


def test_onnx_prediction_imports_no_torch_and_matches_the_torch_backend(
    exported, tmp_path, monkeypatch
):
    from student.batch import predict_files
    from student.predictor import StudentPredictor

    ckpt, onnx = exported
    images = list_images(DEMO / "test" / "images")
    code = CHILD.format(heavy=HEAVY)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(onnx),
            json.dumps([str(p) for p in images]),
            str(tmp_path / "onnx"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["heavy_loaded"] == []
    assert child["images"] == len(images)

    t0 = time.perf_counter()
    torch_pred = StudentPredictor.from_checkpoint(
        ckpt, device="cpu", backend="torch", diameter=12.0
    )
    torch.set_num_threads(1)
    summary = predict_files(torch_pred, images, tmp_path / "torch", key="torch", progress=False)
    torch_s = time.perf_counter() - t0

    scaled = [r for r in summary["rows"] if r["scale"] not in (None, 1.0)]
    assert scaled, "no image was resized: the test would not cover the numpy resize"
    assert sum(r["n_cells"] for r in summary["rows"]) > 0, "no cells: nothing to compare"
    same = 0
    for p in images:
        a = read_labels(tmp_path / "onnx" / f"{image_id(p)}_label.tiff")
        b = read_labels(tmp_path / "torch" / f"{image_id(p)}_label.tiff")
        same += bool(np.array_equal(a, b))
    # and the predictor before its resize became numpy's (torch's F.interpolate) agrees too
    import student.predictor
    from cellfuse.nn.augment import resize_image_torch

    monkeypatch.setattr(student.predictor, "resize_image", resize_image_torch)
    predict_files(torch_pred, images, tmp_path / "torch_resize", key="torch", progress=False)
    same_old = sum(
        np.array_equal(
            read_labels(tmp_path / "onnx" / f"{image_id(p)}_label.tiff"),
            read_labels(tmp_path / "torch_resize" / f"{image_id(p)}_label.tiff"),
        )
        for p in images
    )
    print(
        f"\n{len(images)} demo test images: onnx without torch {child['wall_s']:.2f} s "
        f"({child['s_per_mpx']} s/Mpx), torch backend {torch_s:.2f} s "
        f"({summary['s_per_mpx']} s/Mpx); identical labels on {same}/{len(images)}; "
        f"with torch's resize: {same_old}/{len(images)}"
    )
    assert same == len(images)
    assert same_old == len(images)


def test_numpy_resize_is_torchs_to_one_ulp():
    """The predictor's numpy resize and the training path's torch resize agree."""
    from cellfuse.nn.augment import resize_image_torch
    from cellfuse.preprocess import resize_image

    rng = np.random.default_rng(0)
    cases = [((100, 120), (150, 170)), ((300, 256), (131, 200)), ((256, 256), (512, 97))]
    cases += [((37, 53), (37, 80)), ((520, 696), (700, 900)), ((1, 5), (3, 9)), ((7, 7), (2, 3))]
    for (h, w), shape in cases:
        x = rng.random((h, w, 3), dtype=np.float32)
        a, b = resize_image(x, shape), resize_image_torch(x, shape)
        assert a.shape == b.shape == (*shape, 3)
        np.testing.assert_allclose(a, b, rtol=0, atol=2.5e-7)
    # the interpolation matrices are banded (O(pixels) resizing), whatever the factor
    from cellfuse.preprocess import _resize_weights

    for n_in, n_out, aa in ((730, 512, True), (512, 730, False), (2000, 400, True)):
        assert _resize_weights(n_in, n_out, aa).nnz <= n_out * (2 * n_in / n_out + 2)
