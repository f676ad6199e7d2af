"""Predicting a folder: a bad image is recorded and the others go on, a killed run resumes
per image to the same outputs, an empty input is an error, errors are one line (exit 1/2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from conftest import ROOT
from helpers import disc_labels, tiny_student_checkpoint
from PIL import Image

from cellfuse.errors import CellfuseError
from cellfuse.io import read_image, write_labels
from student.batch import JOURNAL, predict_files, read_journal

TOOL = ROOT / "tools" / "predict.py"


class ThresholdPredictor:
    """Stands in for StudentPredictor: labels = connected bright regions of the image."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = 0, stop_after

    def predict_file(self, path, out_path, progress=False, stream=None):
        from scipy import ndimage

        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # the process dies here: nothing after it is recorded
        img = read_image(path, allow_constant=True)
        lab, n = ndimage.label(img[..., 0] > 100)
        write_labels(out_path, lab)
        return {"shape": list(lab.shape), "n_cells": int(n), "scale": 1.0}


def _folder(root, n_good=4, bad=True):
    root.mkdir(parents=True)
    for i in range(n_good):
        lab = disc_labels((64, 80), 5, seed=i)
        Image.fromarray(np.where(lab > 0, 200, 20).astype(np.uint8)).save(root / f"g{i}.png")
    if bad:
        (root / "b_empty.png").write_bytes(b"")
        (root / "b_text.tif").write_text("not an image")
    return sorted(root.iterdir())


def _outputs(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_label.tiff"))}


def test_bad_images_are_recorded_and_the_rest_predicted(tmp_path):
    files = _folder(tmp_path / "in")
    res = predict_files(ThresholdPredictor(), files, tmp_path / "out", key="m1")
    assert (res["done"], res["failed"], res["skipped"]) == (4, 2, 0)
    assert res["failures"] == {
        "b_empty": f"{tmp_path}/in/b_empty.png: empty file (0 bytes)",
        "b_text": f"{tmp_path}/in/b_text.tif: not a valid TIFF (not a TIFF file: header=b'not ')",
    }
    saved = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert saved["failed"] == 2 and [r["status"] for r in saved["rows"]].count("failed") == 2
    assert sorted(_outputs(tmp_path / "out")) == [f"g{i}_label.tiff" for i in range(4)]
    # re-run: the good ones are skipped, the failed ones tried again
    again = predict_files(ThresholdPredictor(), files, tmp_path / "out", key="m1")
    assert (again["done"], again["failed"], again["skipped"]) == (0, 2, 4)
    # another model redoes everything
    other = predict_files(ThresholdPredictor(), files, tmp_path / "out", key="m2")
    assert (other["done"], other["skipped"]) == (4, 0)


def test_killed_run_resumes_per_image_to_identical_outputs(tmp_path):
    files = _folder(tmp_path / "in", n_good=5, bad=False)
    predict_files(ThresholdPredictor(), files, tmp_path / "ref", key="m")
    with pytest.raises(KeyboardInterrupt):
        predict_files(ThresholdPredictor(stop_after=2), files, tmp_path / "out", key="m")
    assert len(read_journal(tmp_path / "out" / JOURNAL)) == 2
    with open(tmp_path / "out" / JOURNAL, "a") as fh:
        fh.write('{"id": "g2", "sta')  # a torn last line from the kill
    res = predict_files(ThresholdPredictor(), files, tmp_path / "out", key="m")
    assert (res["skipped"], res["done"], res["failed"]) == (2, 3, 0)
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "ref")


def test_no_images_and_duplicate_ids_are_errors(tmp_path):
    with pytest.raises(CellfuseError, match="nothing to predict"):
        predict_files(ThresholdPredictor(), [], tmp_path / "out", key="m")
    files = _folder(tmp_path / "in", n_good=1, bad=False)
    tifffile.imwrite(tmp_path / "in" / "g0.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(CellfuseError, match="also the id of g0.png"):
        predict_files(
            ThresholdPredictor(), [*files, tmp_path / "in" / "g0.tif"], tmp_path / "o", key="m"
        )


# --------------------------------------------------------------------------- the tool

_KILL_ON_FIFTH = """
import os, signal, sys
sys.argv[0] = {tool!r}
from student.predictor import StudentPredictor
real, calls = StudentPredictor.predict_file, []
def predict_file(self, *a, **k):
    calls.append(1)
    if len(calls) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *a, **k)
StudentPredictor.predict_file = predict_file
import runpy
runpy.run_path({tool!r}, run_name="__main__")
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch  # noqa: F401 - a dev install has it: missing fails, not skips

    return tiny_student_checkpoint(tmp_path_factory.mktemp("ck") / "best.pth")


def _tool(*args, script=None):
    cmd = [sys.executable, "-c", script] if script else [sys.executable, str(TOOL)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_tool_goes_on_past_a_bad_image_resumes_after_kill_and_exits_1(checkpoint, tmp_path):
    _folder(tmp_path / "in", n_good=4)
    common = [
        "--checkpoint",
        checkpoint,
        "--input",
        tmp_path / "in",
        "--threads",
        "1",
        "--backend",
        "torch",
        "--no-progress",
    ]
    ref = _tool(*common, "--out", tmp_path / "ref")
    assert ref.returncode == 1, ref.stderr[-2000:]
    errors = [x for x in ref.stderr.splitlines() if x.startswith("error:")]
    assert errors == [
        f"error: {tmp_path}/in/b_empty.png: empty file (0 bytes)",
        f"error: {tmp_path}/in/b_text.tif: cannot read TIFF header (not a TIFF file: header=b'not ')",
    ]
    assert "Traceback" not in ref.stderr
    killed = _tool(*common, "--out", tmp_path / "out", script=_KILL_ON_FIFTH.format(tool=str(TOOL)))
    assert killed.returncode == -9
    assert len(read_journal(tmp_path / "out" / JOURNAL)) == 4  # 2 failed, g0 and g1 done
    resumed = _tool(*common, "--out", tmp_path / "out")
    assert resumed.returncode == 1
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (summary["skipped"], summary["done"], summary["failed"]) == (2, 2, 2)
    assert (
        _outputs(tmp_path / "out") == _outputs(tmp_path / "ref")
        and len(_outputs(tmp_path / "ref")) == 4
    )


def test_tool_errors_are_one_line_exit_2_and_traceback_with_debug(checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    res = _tool("--checkpoint", checkpoint, "--input", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path}/empty: no image files to predict"
    ]
    missing = ["--onnx", tmp_path / "nope.onnx", "--input", ROOT / "data/demo/test/images"]
    res = _tool(*missing, "--out", tmp_path / "o")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "nope" in last
    res = _tool(*missing, "--out", tmp_path / "o", "--debug")
    assert res.returncode == 2 and "Traceback" in res.stderr
