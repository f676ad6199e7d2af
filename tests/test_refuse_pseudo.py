"""tools/refuse_pseudo.py: re-fusing cached teacher outputs with a subset of the teachers."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from refuse_pseudo import main  # noqa: E402

from cellfuse.label_files import write_labels  # noqa: E402


def _square_cells(boxes, shape=(48, 48)) -> np.ndarray:
    lab = np.zeros(shape, np.uint16)
    for i, (y, x) in enumerate(boxes, 1):
        lab[y : y + 8, x : x + 8] = i
    return lab


@pytest.fixture
def run(tmp_path):
    """One image: teacher `good` finds both true cells, teacher `bad` one wrong cell, equal
    weights, so each cell has half the vote: below the confident share (0.6), ignored."""
    pseudo, truth = tmp_path / "pseudo", tmp_path / "truth"
    truth.mkdir()
    write_labels(truth / "img_label.tiff", _square_cells([(4, 4), (30, 30)]))
    outputs = {"good": [(4, 4), (30, 30)], "bad": [(4, 30)]}
    for name, boxes in outputs.items():
        (pseudo / "cache" / name).mkdir(parents=True)
        write_labels(pseudo / "cache" / name / "img_label.tiff", _square_cells(boxes))
        (pseudo / "cache" / name / "img_scores.json").write_text(
            json.dumps({"scores": [1.0] * len(boxes)})
        )
    entry = {"id": "img", "teachers": {n: {"weight": 0.9} for n in outputs}}
    (pseudo / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    return pseudo, truth


def _result(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_dropping_the_teacher_that_disagrees_keeps_the_other_ones_cells(run, capsys):
    pseudo, truth = run
    both = _result(capsys, [str(pseudo), str(truth)])
    assert both["teachers"] == ["bad", "good"]
    assert both["fused"]["f1@0.5"] == 0.0 and both["fused"]["kept_fraction"] == 0.0
    good = _result(capsys, [str(pseudo), str(truth), "--teachers", "good"])
    assert good["teachers"] == ["good"]
    assert good["fused"]["f1@0.5"] == 1.0 and good["fused"]["kept_fraction"] == 1.0


def test_unknown_teacher_is_a_config_error(run):
    from cellfuse.errors import ConfigError

    pseudo, truth = run
    with pytest.raises(ConfigError, match="no cached output"):
        main([str(pseudo), str(truth), "--teachers", "sam"])


def test_a_truth_folder_without_labels_is_a_layout_error(run, tmp_path):
    from cellfuse.errors import LayoutError

    pseudo, _ = run
    with pytest.raises(LayoutError, match="no \\*_label.tiff truth files"):
        main([str(pseudo), str(tmp_path)])
