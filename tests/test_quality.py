"""Pseudo-label quality against truth (ensemble.quality): the three views of the fusion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cellfuse.errors import ConfigError
from cellfuse.fusion import FusionParams, fuse
from cellfuse.instances import Instances
from cellfuse.io import write_labels
from ensemble.manifest import Manifest
from ensemble.quality import pseudo_quality, seen_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_fusion import paint_discs  # noqa: E402

SHAPE = (64, 96)
CELLS = np.array([[16, 16], [16, 50], [44, 70]])


def labels_of(*k: int) -> np.ndarray:
    """Discs of radius 8 at CELLS[k] (labels 1..len(k))."""
    return paint_discs(SHAPE, CELLS[list(k)].reshape(-1, 2), np.full(len(k), 8.0))


def test_seen_truth_drops_cells_mostly_in_the_ignore_mask():
    truth = labels_of(0, 1, 2)
    ignore = np.zeros(SHAPE, bool)
    ignore[:, 40:] = True  # all of cell 2, none of cell 1; cell 3 lies at x 62..78
    ignore[:, 66:] = False  # ...and only a third of cell 3 is ignored
    seen = seen_truth(truth, ignore)
    assert sorted(np.unique(seen)) == [0, 1, 3]
    assert np.array_equal(seen[truth != 2], truth[truth != 2])
    assert not seen_truth(np.zeros(SHAPE, np.uint16), ignore).any()


def _pseudo_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Two teachers with equal weights: both see cells 1 and 2, only the first sees cell 3.
    Fused with the defaults (hi 0.6) cell 3 has vote 0.5: uncertain, so ignored."""
    a, b = labels_of(0, 1, 2), labels_of(0, 1)
    out, truth = tmp_path / "pseudo", tmp_path / "truth"
    res = fuse([_inst(a), _inst(b)], [0.8, 0.8], FusionParams(), hi=0.6)
    assert res.instances.n == 2 and res.ignore[a == 3].all()
    write_labels(out / "img_label.tiff", res.instances.labels)
    write_labels(out / "img_ignore.tiff", res.ignore.astype(np.uint8))
    (out / "img_conf.json").write_text(json.dumps({"stats": res.stats}))
    for name, lab in (("one", a), ("two", b)):
        write_labels(out / "cache" / name / "img_label.tiff", lab)
        scores = [1.0] * int(lab.max())
        (out / "cache" / name / "img_scores.json").write_text(json.dumps({"scores": scores}))
    teachers = {n: {"checkpoint": None, "sha1": "", "weight": 0.8} for n in ("one", "two")}
    Manifest(out / "manifest.jsonl").append({"id": "img", "status": "ok", "teachers": teachers})
    write_labels(truth / "img_label.tiff", labels_of(0, 1, 2))
    return out, truth


def _inst(labels):
    return Instances.from_labels(labels)


def test_quality_scores_teachers_confident_cells_seen_cells_and_the_predictor(tmp_path):
    out, truth = _pseudo_folder(tmp_path)
    q = pseudo_quality(out, truth, FusionParams().for_prediction(dict(tau=0.3, lo=0.3, hi=0.3)))
    assert q["n_true"] == 3
    assert q["teachers"]["one"]["f1@0.5"] == 1.0
    assert q["teachers"]["two"]["f1@0.5"] == pytest.approx(0.8)  # 2 of 3 found
    # Confident cells: 2 of 3 true cells -> recall 2/3, precision 1.
    assert q["fused"]["f1@0.5"] == pytest.approx(0.8)
    assert q["fused"]["precision@0.5"] == 1.0
    assert q["fused"]["kept_fraction"] == pytest.approx(2 / 3, abs=1e-4)
    # The third true cell is ignored, so what the student sees is perfect.
    assert q["fused_seen"]["f1@0.5"] == 1.0
    assert q["fused_seen"]["true_cells_seen"] == 2
    # As a predictor (a third of the vote is enough) the fusion keeps the third cell too.
    assert q["fused_predict"]["f1@0.5"] == 1.0
    assert q["fused_predict"]["n_pred"] == 3
    assert q["missing"] == {}
    assert q["found_by_any"] == 1.0  # teacher "one" found all three


def test_found_by_any_is_the_share_of_true_cells_some_teacher_found(tmp_path):
    out, truth = _pseudo_folder(tmp_path)
    extra = paint_discs(SHAPE, np.array([[50, 20]]), np.array([6.0]))
    both = labels_of(0, 1, 2)
    both[extra > 0] = 4  # a fourth true cell that no teacher found
    write_labels(truth / "img_label.tiff", both)
    write_labels(out / "cache" / "one" / "img_label.tiff", labels_of(0))  # one finds cell 1
    q = pseudo_quality(out, truth)
    assert q["n_true"] == 4
    assert q["found_by_any"] == pytest.approx(2 / 4)  # cell 1 (both), cell 2 (two)


def test_quality_without_predictor_params_has_no_predict_row(tmp_path):
    out, truth = _pseudo_folder(tmp_path)
    q = pseudo_quality(out, truth)
    assert "fused_predict" not in q and "fused_seen" in q


def test_predictor_row_reports_a_missing_teacher_cache(tmp_path):
    out, truth = _pseudo_folder(tmp_path)
    (out / "cache" / "two" / "img_scores.json").unlink()
    q = pseudo_quality(out, truth, FusionParams())
    assert q["missing"] == {"fused_predict": 1}
    assert q["fused_predict"]["f1@0.5"] == 0.0


def test_predictor_row_treats_an_unreadable_teacher_cache_as_missing(tmp_path):
    out, truth = _pseudo_folder(tmp_path)
    (out / "cache" / "one" / "img_label.tiff").write_bytes(b"not a tiff")
    q = pseudo_quality(out, truth, FusionParams())
    assert q["missing"] == {"fused_predict": 1, "one": 1}


def test_for_prediction_overrides_and_rejects_unknown_keys():
    base = FusionParams(tau=0.5, lo=0.25, hi=0.6, iou_thr=0.4)
    p = base.for_prediction(dict(tau=0.3, lo=0.3, hi=0.3))
    assert (p.tau, p.lo, p.hi, p.iou_thr) == (0.3, 0.3, 0.3, 0.4)
    assert base.for_prediction(None) == base
    with pytest.raises(ConfigError, match="unknown keys"):
        base.for_prediction(dict(thau=0.3))
    with pytest.raises(ConfigError, match="lo <= hi"):
        base.for_prediction(dict(lo=0.7))
