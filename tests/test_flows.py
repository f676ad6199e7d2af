"""Flow targets, flow-following and mask reconstruction (cellfuse.flows), no network involved."""

import numpy as np
import pytest
from conftest import DEMO
from helpers import disc_labels, same_partition

from cellfuse.errors import LabelError
from cellfuse.flows import (
    cell_centers,
    flow_errors,
    flows_to_labels,
    follow_flows,
    labels_to_flows,
    masks_from_positions,
)
from cellfuse.io import read_labels
from cellfuse.layout import list_samples
from cellfuse.metric import evaluate_image


def _disc(shape=(41, 41), center=(20, 20), r=12):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (((yy - center[0]) ** 2 + (xx - center[1]) ** 2) <= r * r).astype(np.uint16)


def test_flows_are_unit_inside_zero_outside_and_point_to_the_centre():
    lab = _disc()
    fl = labels_to_flows(lab)
    assert fl.shape == (2, 41, 41) and fl.dtype == np.float32
    norm = np.sqrt((fl**2).sum(0))
    inside = lab > 0
    assert np.allclose(norm[~inside], 0)
    assert np.allclose(norm[inside & ~((np.indices(lab.shape) == 20).all(0))], 1, atol=1e-5)
    yy, xx = np.indices(lab.shape)
    to_center = np.stack([20 - yy, 20 - xx]).astype(np.float32)
    dot = (fl * to_center).sum(0)[inside & (norm > 0)]
    assert (dot > 0).mean() > 0.99


def test_flows_stay_inside_each_cell_of_touching_cells():
    lab = np.zeros((30, 60), np.uint16)
    lab[5:25, 5:30] = 1
    lab[5:25, 30:55] = 2  # touching along x = 29|30
    fl = labels_to_flows(lab)
    # pixels on the shared edge flow away from the neighbour
    assert (fl[1, 8:22, 29] < 0).all() and (fl[1, 8:22, 30] > 0).all()


def test_cell_centers_are_inside_non_convex_cells():
    lab = np.zeros((40, 40), np.uint16)
    lab[5:35, 5:10] = 3
    lab[30:35, 5:35] = 3  # an L whose centroid lies outside it
    ids, c = cell_centers(lab)
    assert ids.tolist() == [3] and lab[c[0, 0], c[0, 1]] == 3


def test_follow_flows_converges_to_the_centre():
    lab = _disc()
    fl = labels_to_flows(lab)
    final = follow_flows(fl, lab > 0, n_iter=60)
    assert final.shape == ((lab > 0).sum(), 2)
    assert np.abs(final - 20).max() < 2.0


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32])
def test_round_trip_synthetic_discs(dtype):
    lab = disc_labels((200, 240), 40, rmin=4, rmax=14, seed=3).astype(dtype)
    out, prob, err = flows_to_labels(labels_to_flows(lab), (lab > 0).astype(np.float32), min_size=0)
    assert same_partition(lab, out)
    assert np.allclose(prob, 1) and err.max() < 1e-3


def _demo_labels(k):
    return [read_labels(s.label) for s in list_samples(DEMO / "train", require_labels=True)[:k]]


def test_round_trip_recovers_real_labels():
    """Labels -> flows -> flow-following recovers DSB labels (challenge F1 >= 0.99 each)."""
    for lab in _demo_labels(6):
        fl = labels_to_flows(lab)
        out, _, _ = flows_to_labels(fl, (lab > 0).astype(np.float32), n_iter=200, min_size=0)
        f1 = evaluate_image(lab, out, [0.5, 0.9])["scores"]
        assert f1[0.5]["f1"] >= 0.99 and f1[0.9]["f1"] >= 0.95


def test_flow_error_flags_wrong_flows_and_bad_masks_are_dropped():
    lab = disc_labels((100, 100), 6, rmin=6, rmax=10, seed=1)
    fl = labels_to_flows(lab)
    assert np.allclose(flow_errors(lab, fl), 0, atol=1e-6)
    assert (flow_errors(lab, -fl) > 3).all()
    # reversed flows inside cell 1 only: its pixels diverge and are not kept as one mask
    bad = fl.copy()
    bad[:, lab == 1] *= -1
    out, _, err = flows_to_labels(bad, (lab > 0).astype(np.float32), min_size=0)
    assert (err <= 0.4).all()
    assert evaluate_image(lab, out, [0.5])["scores"][0.5]["tp"] == lab.max() - 1


def test_small_and_big_masks_are_removed_and_holes_filled():
    lab = np.zeros((100, 100), np.uint16)
    lab[10:13, 10:13] = 1  # 9 px
    lab[40:60, 40:60] = 2
    prob = (lab > 0).astype(np.float32)
    prob[50, 50] = 0  # a hole in the prediction
    out, _, _ = flows_to_labels(labels_to_flows(lab), prob, min_size=15)
    assert out.max() == 1 and (out > 0).sum() == 400
    big = np.ones((50, 50), np.uint16)
    out, _, _ = flows_to_labels(labels_to_flows(big), np.ones((50, 50), np.float32))
    assert out.max() == 0


def test_empty_inputs():
    z = np.zeros((32, 48), np.uint16)
    assert not labels_to_flows(z).any()
    out, p, e = flows_to_labels(np.zeros((2, 32, 48), np.float32), np.zeros((32, 48), np.float32))
    assert out.shape == (32, 48) and out.max() == 0 and p.size == 0 and e.size == 0
    assert follow_flows(np.zeros((2, 5, 5)), np.zeros((5, 5), bool)).shape == (0, 2)
    assert masks_from_positions(np.zeros((0, 2), int), np.zeros((0, 2)), (5, 5)).max() == 0


def test_bad_labels_raise():
    with pytest.raises(LabelError):
        labels_to_flows(np.zeros((4, 4), np.float32))
    with pytest.raises(LabelError):
        labels_to_flows(-np.ones((4, 4), np.int32))
    with pytest.raises(LabelError):
        labels_to_flows(np.zeros((2, 4, 4), np.uint16))
