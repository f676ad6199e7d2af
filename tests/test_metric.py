"""The challenge F1: hand-worked cases, ROI mode, and agreement with an independent reference."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from conftest import SHARED_DATA
from helpers import disc_labels
from scipy.optimize import linear_sum_assignment

from cellfuse.errors import LabelError
from cellfuse.io import read_labels
from cellfuse.metric import (
    ROI_MIN_PIXELS,
    ROI_SIZE,
    THRESHOLDS,
    evaluate_image,
    f1_scores,
    iou_matrix,
    match,
    remove_boundary_cells,
)
from cellfuse.scoring import evaluate_dirs

SAMPLE_LABEL = SHARED_DATA / "neurips_samples/labels/cell_00528_label.tiff"


def box(labels: np.ndarray, y0: int, y1: int, x0: int, x1: int, k: int) -> np.ndarray:
    labels[y0:y1, x0:x1] = k
    return labels


def f1_at(res: dict, thr: float) -> float:
    return res["scores"][thr]["f1"]


def counts_at(res: dict, thr: float) -> tuple[int, int, int]:
    s = res["scores"][thr]
    return s["tp"], s["fp"], s["fn"]


# --------------------------------------------------------------------------- hand-worked cases


def test_perfect_match_scores_one_everywhere():
    truth = disc_labels((96, 96), 12, seed=1)
    # same cells under other ids: matching is by pixels, not ids
    perm = np.concatenate([[0], np.random.default_rng(0).permutation(np.arange(1, 13)) + 100])
    pred = perm[truth].astype(np.int32)
    res = evaluate_image(truth, pred)
    n = res["n_true"]
    assert n == res["n_pred"] > 0
    for thr in THRESHOLDS:
        assert counts_at(res, thr) == (n, 0, 0)
        assert f1_at(res, thr) == 1.0


def test_split_into_exact_halves_keeps_one_match_at_0_5():
    # IoU of each half is exactly 50/100 = 0.5, and the rule is IoU >= t
    truth = box(np.zeros((32, 32), np.uint16), 10, 20, 10, 20, 1)
    pred = box(box(np.zeros((32, 32), np.uint16), 10, 20, 10, 15, 1), 10, 20, 15, 20, 2)
    assert iou_matrix(truth, pred).tolist() == [[0.5, 0.5]]
    res = evaluate_image(truth, pred)
    assert counts_at(res, 0.5) == (1, 1, 0)
    assert f1_at(res, 0.5) == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert counts_at(res, 0.6) == (0, 2, 1)
    assert f1_at(res, 0.6) == 0.0


def test_split_cell_has_no_match():
    # 10x12 truth cut into 4- and 8-column pieces: IoU 1/3 and 2/3
    truth = box(np.zeros((32, 32), np.uint16), 10, 20, 10, 22, 1)
    pred = box(box(np.zeros((32, 32), np.uint16), 10, 20, 10, 14, 1), 10, 20, 14, 22, 2)
    m = match(truth, pred, (0.5, 0.6, 0.7))
    assert m == {0.5: (1, 1, 0), 0.6: (1, 1, 0), 0.7: (0, 2, 1)}
    # three equal thirds: IoU 1/3 each, no match at 0.5
    pred3 = np.zeros((32, 32), np.uint16)
    for k in range(3):
        box(pred3, 10, 20, 10 + 4 * k, 14 + 4 * k, k + 1)
    assert match(truth, pred3, (0.5,)) == {0.5: (0, 3, 1)}


def test_merged_pair():
    # truths of 120 and 80 px merged into one 200 px prediction: IoU 0.6 and 0.4
    truth = box(box(np.zeros((32, 32), np.uint16), 10, 20, 6, 18, 1), 10, 20, 18, 26, 2)
    pred = box(np.zeros((32, 32), np.uint16), 10, 20, 6, 26, 7)
    np.testing.assert_allclose(iou_matrix(truth, pred)[:, 6], [0.6, 0.4])
    res = evaluate_image(truth, pred)
    assert counts_at(res, 0.5) == (1, 0, 1)
    assert f1_at(res, 0.5) == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert counts_at(res, 0.6) == (1, 0, 1)
    assert counts_at(res, 0.7) == (0, 1, 2)


def test_empty_prediction_scores_zero():
    truth = disc_labels((64, 64), 5, seed=2)
    res = evaluate_image(truth, np.zeros_like(truth))
    n = res["n_true"]
    assert n > 0 and res["n_pred"] == 0
    for thr in THRESHOLDS:
        assert counts_at(res, thr) == (0, 0, n)
        assert res["scores"][thr]["f1"] == res["scores"][thr]["precision"] == 0.0


def test_empty_truth_with_predictions_scores_zero():
    pred = disc_labels((64, 64), 5, seed=3)
    res = evaluate_image(np.zeros_like(pred), pred)
    assert counts_at(res, 0.5) == (0, res["n_pred"], 0)
    assert res["n_pred"] > 0 and f1_at(res, 0.5) == 0.0


def test_both_empty_scores_zero_as_the_official_script():
    z = np.zeros((16, 16), np.uint8)
    res = evaluate_image(z, z)
    assert res["n_true"] == res["n_pred"] == 0
    assert res["scores"][0.5] == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


def test_f1_scores():
    assert f1_scores(0, 0, 0) == (0.0, 0.0, 0.0)
    assert f1_scores(0, 3, 2) == (0.0, 0.0, 0.0)
    p, r, f = f1_scores(3, 1, 3)
    assert (p, r) == (0.75, 0.5) and f == pytest.approx(0.6)


def test_remove_boundary_cells_uses_a_2px_frame_and_relabels_in_order():
    lab = np.zeros((20, 20), np.int32)
    box(lab, 1, 4, 5, 8, 9)  # touches row 1: dropped
    box(lab, 2, 5, 10, 13, 4)  # starts at row 2: kept
    box(lab, 8, 12, 17, 19, 30)  # touches column 18 (= W - 2): dropped
    box(lab, 8, 12, 8, 12, 50)  # interior: kept
    box(lab, 14, 18, 2, 6, 7)  # ends at row 17 (= H - 3): kept
    out = remove_boundary_cells(lab)
    assert out.dtype == np.uint16
    # kept ids 4, 7, 50 become 1, 2, 3 in order
    assert set(np.unique(out[lab == 4])) == {1}
    assert set(np.unique(out[lab == 7])) == {2}
    assert set(np.unique(out[lab == 50])) == {3}
    assert not out[(lab == 9) | (lab == 30)].any()
    assert np.array_equal(remove_boundary_cells(lab, border=0) > 0, lab > 0)


def test_border_cells_are_not_scored():
    truth = np.zeros((40, 40), np.uint16)
    box(truth, 10, 20, 10, 20, 1)
    box(truth, 0, 6, 25, 30, 2)  # on the border
    box(truth, 30, 39, 35, 40, 3)  # on the border
    pred = np.zeros_like(truth)
    box(pred, 10, 20, 10, 20, 5)
    box(pred, 34, 40, 0, 8, 6)  # a false positive, but on the border
    res = evaluate_image(truth, pred)
    assert (res["n_true"], res["n_pred"]) == (1, 1)
    assert f1_at(res, 0.9) == 1.0
    # without the frame the border cells count
    assert counts_at(evaluate_image(truth, pred, border=0), 0.5) == (1, 1, 2)


def test_inputs_validated_and_instances_accepted():
    truth = disc_labels((48, 48), 4, seed=4)
    inst = SimpleNamespace(labels=truth.astype(np.uint32), scores=np.ones(4))
    assert f1_at(evaluate_image(truth.astype(np.int16), inst), 0.9) == 1.0
    with pytest.raises(LabelError, match="negative"):
        evaluate_image(truth.astype(np.int16) - 1, truth)
    with pytest.raises(LabelError, match="must match"):
        match(truth, truth[:-1])
    with pytest.raises(LabelError, match="integers"):
        match(truth.astype(np.float32), truth)
    with pytest.raises(ValueError, match="outside"):
        match(truth, truth, (0.0,))


# --------------------------------------------------------------------------- ROI mode


@pytest.mark.parametrize("h, rois", [(5000, 9), (4999, 1)])
def test_roi_rule_switches_at_25_mpx_with_the_default_arguments(h, rois):
    # the challenge rule, through evaluate_image's defaults: 5000x5000 (25 Mpx) is scored in
    # 2000 px ROIs (padded to 3x3), one row less as one image
    truth = np.zeros((h, 5000), np.uint8)
    box(truth, 1990, 2010, 100, 120, 1)  # crosses the ROI edge y = 2000: dropped in ROI mode
    res = evaluate_image(truth, truth.copy(), (0.5,))
    assert res["rois"] == rois and (ROI_SIZE, ROI_MIN_PIXELS) == (2000, 5000 * 5000)
    assert res["n_true"] == (0 if rois == 9 else 1)


def test_large_image_is_scored_in_2000px_rois():
    n = 6000  # 36 Mpx: 3x3 ROIs of 2000 px, no padding
    truth = np.zeros((n, n), np.uint16)
    pred = np.zeros_like(truth)
    box(truth, 500, 540, 500, 540, 1)  # ROI (0,0): matched
    box(pred, 502, 540, 500, 540, 1)
    box(truth, 980, 1020, 1980, 2020, 2)  # crosses the ROI edge x = 2000: dropped
    box(pred, 980, 1020, 1980, 2020, 2)
    box(truth, 3000, 3030, 3000, 3030, 3)  # ROI (1,1): missed -> FN
    box(pred, 5000, 5020, 4500, 4520, 3)  # ROI (2,2): FP
    box(truth, 0, 10, 100, 120, 4)  # on the image border: dropped
    box(pred, 2500, 2520, 1999, 2010, 4)  # touches ROI column 1999: dropped
    box(truth, 4100, 4130, 1000, 1030, 5)  # ROI (2,0): IoU 600/1200 = 0.5
    box(pred, 4100, 4130, 1010, 1040, 5)
    res = evaluate_image(truth, pred, (0.5, 0.9))
    # by hand: truths 1, 3, 5 and preds 1, 3, 5 count; 1 matches at both thresholds, 5 at 0.5
    assert res["rois"] == 9
    assert (res["n_true"], res["n_pred"]) == (3, 3)
    assert counts_at(res, 0.5) == (2, 1, 1)
    assert counts_at(res, 0.9) == (1, 2, 2)
    assert f1_at(res, 0.5) == pytest.approx(2 / 3)


def test_roi_padding_keeps_cells_on_a_padded_edge():
    # scaled down: 50x45 image, 20 px ROIs -> padded to 60x60, 3x3 ROIs
    truth = np.zeros((50, 45), np.uint16)
    box(truth, 45, 50, 25, 30, 1)  # touches the image's last row, inside ROI (2,1): kept
    box(truth, 5, 10, 42, 45, 2)  # touches the last column, inside ROI (0,2): kept
    box(truth, 5, 10, 18, 23, 3)  # crosses x = 20: dropped
    pred = truth.copy()
    res = evaluate_image(truth, pred, (0.5,), roi_size=20, roi_min_pixels=50 * 45)
    assert res["rois"] == 9
    assert counts_at(res, 0.5) == (2, 0, 0)
    below = evaluate_image(truth, pred, (0.5,), roi_size=20, roi_min_pixels=50 * 45 + 1)
    assert below["rois"] == 1 and below["n_true"] == 1  # whole image: 2-px frame drops 1 and 2


# --------------------------------------------------------------------------- reference check


def _reference_f1(gt: np.ndarray, seg: np.ndarray, thr: float, roi: int | None = None):
    """Independent re-implementation of the organisers' script: boolean masks, loops, dense
    LSA with their cost, ROIs by padding; returns (tp, n_true, n_pred, f1)."""

    def drop_border(m):
        m = m.astype(np.int64).copy()
        ring = np.ones(m.shape, bool)
        ring[2:-2, 2:-2] = False
        for i in np.unique(m[ring]):
            if i:
                m[m == i] = 0
        ids = [i for i in np.unique(m) if i]
        out = np.zeros_like(m)
        for k, i in enumerate(ids, 1):
            out[m == i] = k
        return out

    def tp_of(g, s):
        ng, ns = int(g.max()), int(s.max())
        if ns == 0:
            return 0, ng, 0
        iou = np.zeros((ng, ns))
        for i in range(ng):
            a = g == i + 1
            for j in range(ns):
                b = s == j + 1
                iou[i, j] = (a & b).sum() / (a | b).sum()
        if ng == 0:
            return 0, 0, ns
        cost = -(iou >= thr).astype(float) - iou / (2 * min(ng, ns))
        r, c = linear_sum_assignment(cost)
        return int((iou[r, c] >= thr).sum()), ng, ns

    if roi is None:
        tp, nt, ns = tp_of(drop_border(gt), drop_border(seg))
    else:
        h, w = gt.shape
        ph, pw = -(-h // roi) * roi, -(-w // roi) * roi
        g2, s2 = np.zeros((ph, pw), gt.dtype), np.zeros((ph, pw), seg.dtype)
        g2[:h, :w], s2[:h, :w] = gt, seg
        tp = nt = ns = 0
        for y in range(0, ph, roi):
            for x in range(0, pw, roi):
                a, b, c = tp_of(
                    drop_border(g2[y : y + roi, x : x + roi]),
                    drop_border(s2[y : y + roi, x : x + roi]),
                )
                tp, nt, ns = tp + a, nt + b, ns + c
    if tp == 0:
        return 0, nt, ns, 0.0
    p, r = tp / ns, tp / nt
    return tp, nt, ns, 2 * p * r / (p + r)


def _max_matching(iou: np.ndarray, thr: float) -> int:
    """Largest one-to-one matching among pairs with IoU >= thr (Kuhn's augmenting paths)."""
    adj = [np.flatnonzero(row >= thr).tolist() for row in iou]
    owner: dict[int, int] = {}

    def augment(i, seen):
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(adj)))


def _random_pair(seed: int, shape=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """Truth of ~10 discs; prediction of shifted, grown, split, merged and spurious cells."""
    rng = np.random.default_rng(seed)
    truth = disc_labels(shape, 10, rmin=3, rmax=8, seed=seed)
    pred = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for k in range(1, int(truth.max()) + 1):
        m = truth == k
        r = rng.random()
        if r < 0.15:
            continue  # missed
        dy, dx = rng.integers(-3, 4, size=2)
        m = np.roll(m, (dy, dx), axis=(0, 1))
        if r < 0.35:  # split along a random column
            cx = int(np.median(xx[m])) + rng.integers(-2, 3)
            pred[m & (xx < cx)] = 200 + k
            pred[m & (xx >= cx)] = 300 + k
        else:
            pred[m] = k
    for j in range(rng.integers(1, 4)):  # spurious or merging blobs painted on top
        cy, cx, rad = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(3, 12)
        pred[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad] = 500 + j
    return truth, pred


def test_assignment_maximises_the_number_of_matches_first():
    # IoU table [[0.9, 0.3], [0.3, 0]] at t = 0.25: maximising the IoU sum pairs (0,0) and
    # (1,1), one match; the official cost pairs (0,1) and (1,0), two matches.
    from cellfuse.metric import _true_positives

    ti, pi, iou = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.3, 0.3])
    assert _true_positives(ti, pi, iou, 0.25) == 2
    assert _true_positives(ti, pi, iou, 0.5) == 1


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_brute_force_reference(seed):
    truth, pred = _random_pair(seed)
    thresholds = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    # dense IoU from boolean masks, over the ids present
    t_ids, p_ids = (np.setdiff1d(np.unique(x), [0]) for x in (truth, pred))
    dense = np.array(
        [
            [((truth == a) & (pred == b)).sum() / ((truth == a) | (pred == b)).sum() for b in p_ids]
            for a in t_ids
        ]
    )
    ours = iou_matrix(truth, pred)[np.ix_(t_ids - 1, p_ids - 1)]
    np.testing.assert_array_equal(ours, dense)
    m = match(truth, pred, thresholds)
    res = evaluate_image(truth, pred, thresholds)
    for thr in thresholds:
        tp = _max_matching(dense, thr)
        assert m[thr] == (tp, len(p_ids) - tp, len(t_ids) - tp)
        ref_tp, ref_nt, ref_ns, ref_f1 = _reference_f1(truth, pred, thr)
        assert counts_at(res, thr) == (ref_tp, ref_ns - ref_tp, ref_nt - ref_tp)
        assert f1_at(res, thr) == pytest.approx(ref_f1, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_roi_mode_agrees_with_reference(seed):
    truth, pred = _random_pair(100 + seed, shape=(70, 58))
    res = evaluate_image(truth, pred, (0.5, 0.7), roi_size=24, roi_min_pixels=1)
    for thr in (0.5, 0.7):
        tp, nt, ns, f1 = _reference_f1(truth, pred, thr, roi=24)
        assert (res["n_true"], res["n_pred"], counts_at(res, thr)[0]) == (nt, ns, tp)
        assert f1_at(res, thr) == pytest.approx(f1, abs=1e-12)


def test_real_sample_against_itself():
    truth = read_labels(SAMPLE_LABEL)
    res = evaluate_image(truth, truth)
    assert 0 < res["n_true"] < len(np.unique(truth)) - 1  # some of the 44 cells touch the border
    assert f1_at(res, 0.9) == 1.0


# --------------------------------------------------------------------------- folders


@pytest.fixture
def eval_dirs(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "run" / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir(parents=True)
    a = disc_labels((64, 64), 6, seed=10)
    b = disc_labels((48, 80), 5, seed=11)
    c = disc_labels((40, 40), 3, seed=12)
    tifffile.imwrite(truth_dir / "a_label.tiff", a)
    tifffile.imwrite(truth_dir / "b.tif", b)  # another accepted name pattern
    tifffile.imwrite(truth_dir / "c_label.tif", c)
    tifffile.imwrite(pred_dir / "a_label.tiff", a)  # perfect
    tifffile.imwrite(pred_dir / "c_label.tiff", c[:-1])  # wrong shape: failed
    tifffile.imwrite(pred_dir / "z_label.tiff", c)  # no truth: extra
    return truth_dir, pred_dir  # b: missing


def test_evaluate_dirs_report(eval_dirs, tmp_path):
    truth_dir, pred_dir = eval_dirs
    report = evaluate_dirs(truth_dir, pred_dir, (0.5, 0.9))
    assert [im["image_id"] for im in report.images] == ["a", "b", "c"]
    assert [im["status"] for im in report.images] == ["ok", "missing", "failed"]
    assert report.missing == ["b"] and list(report.failed) == ["c"] and report.extra == ["z"]
    s = report.summary()[0.5]
    assert s["mean_f1"] == pytest.approx(1 / 3)  # mean of per-image F1: 1, 0, 0
    n_a = report.images[0]["n_true"]
    n_all = sum(im["n_true"] for im in report.images)
    assert (s["tp"], s["fp"], s["fn"]) == (n_a, 0, n_all - n_a)
    assert s["pooled_f1"] == pytest.approx(2 * n_a / (n_a + n_all))

    csv_text = report.to_csv(tmp_path / "o" / "per_image.csv").read_text()
    lines = csv_text.splitlines()
    assert lines[0].startswith("image_id,status,n_true,n_pred,f1@0.5,precision@0.5")
    assert len(lines) == 4 and lines[1].startswith("a,ok,")
    data = json.loads(report.to_json(tmp_path / "o" / "summary.json").read_text())
    assert data["summary"]["0.5"]["mean_f1"] == pytest.approx(1 / 3)
    assert data["missing"] == ["b"] and len(data["images"]) == 3
    table = report.table()
    assert "mean F1" in table and "1 missing" in table and "0.50" in table


def test_cli_evaluate_writes_next_to_predictions(eval_dirs, capsys):
    from cellfuse.app.cli import main

    truth_dir, pred_dir = eval_dirs
    args = ["evaluate", str(truth_dir), str(pred_dir), "--thresholds", "0.5", "0.75"]
    assert main(args) == 0
    out = pred_dir.parent / "eval"
    assert (out / "per_image.csv").is_file()
    assert json.loads((out / "summary.json").read_text())["thresholds"] == [0.5, 0.75]
    assert "pooled F1" in capsys.readouterr().out
