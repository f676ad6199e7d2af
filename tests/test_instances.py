import numpy as np
import pytest
from helpers import disc_labels

from cellfuse.errors import LabelError
from cellfuse.instances import (
    Instances,
    bboxes,
    centroids,
    fill_holes,
    labels_to_masks,
    masks_to_labels,
    relabel_sequential,
    remove_small,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64])
def test_relabel_sequential(dtype):
    lab = np.array([[0, 7, 7], [3, 0, 200]], dtype=dtype)
    new, old = relabel_sequential(lab)
    assert new.tolist() == [[0, 2, 2], [1, 0, 3]]
    assert old.tolist() == [3, 7, 200]
    assert new.dtype == np.uint16


@pytest.mark.parametrize("top", [200, 2**40])  # the lookup table, and skimage for huge ids
def test_relabel_sequential_without_background(top):
    """A tile covered by cells has no 0: every id is still returned (the first was dropped)."""
    lab = np.array([[3, 7, 7], [3, top, top]], dtype=np.int64)
    new, old = relabel_sequential(lab)
    assert new.tolist() == [[1, 2, 2], [1, 3, 3]] and old.tolist() == [3, 7, top]
    assert relabel_sequential(np.zeros((0, 3), np.uint32))[1].size == 0


def test_relabel_picks_uint32_beyond_65535():
    lab = np.arange(70000, dtype=np.uint32).reshape(100, 700)
    new, _ = relabel_sequential(lab)
    assert new.dtype == np.uint32 and new.max() == 69999


def test_remove_small_and_fill_holes():
    lab = np.zeros((20, 20), np.uint16)
    lab[2:10, 2:10] = 1
    lab[5, 5] = 0  # a hole
    lab[15, 15] = 2  # 1 px
    out = remove_small(lab, 4)
    assert 2 not in out and (out == 1).sum() == 63
    filled = fill_holes(lab)
    assert filled[5, 5] == 1 and (filled == 1).sum() == 64


def test_fill_holes_leaves_gaps_between_cells():
    # background enclosed by two different cells is not a hole of either
    lab = np.zeros((10, 10), np.uint16)
    lab[2:8, 2:5] = 1
    lab[2:8, 6:9] = 2
    lab[2, 5] = 1
    lab[7, 5] = 2
    assert np.array_equal(fill_holes(lab), lab)


def test_masks_labels_round_trip_and_overlap_priority():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 1:5, 1:5] = True
    masks[1, 3:7, 3:7] = True
    lab = masks_to_labels(masks, np.array([0.9, 0.5]))
    assert lab[4, 4] == 1  # higher score wins the overlap
    lab2 = masks_to_labels(masks, np.array([0.1, 0.5]))
    assert lab2[4, 4] == 2
    back = labels_to_masks(lab)
    assert back.shape == (2, 8, 8) and np.array_equal(back[0], masks[0])


def test_centroids_and_bboxes_match_regionprops():
    from skimage.measure import regionprops

    lab = disc_labels((128, 128), 20, seed=1)
    c = centroids(lab)
    b = bboxes(lab)
    for p in regionprops(lab):
        np.testing.assert_allclose(c[p.label - 1], p.centroid)
        assert tuple(b[p.label - 1]) == p.bbox


def test_instances_validation_and_select():
    lab = disc_labels((128, 128), 5, seed=2)
    assert lab.max() == 5
    inst = Instances(lab, np.linspace(0.1, 0.9, 5))
    assert inst.n == 5
    sub = inst.select(np.array([True, False, True, False, False]))
    assert sub.n == 2 and sub.labels.max() == 2
    np.testing.assert_allclose(sub.scores, [0.1, 0.5])
    assert np.array_equal(sub.labels == 2, lab == 3)
    with pytest.raises(LabelError, match="5 labels but 3 scores"):
        Instances(lab, np.ones(3))
    with pytest.raises(LabelError, match="negative"):
        Instances.from_labels(np.array([[0, -1]]))


def test_from_labels_keeps_scores_with_their_cells():
    lab = np.array([[0, 5, 5], [9, 0, 0]], np.int32)
    scores = np.zeros(9)
    scores[4], scores[8] = 0.4, 0.8
    inst = Instances.from_labels(lab, scores)
    assert inst.labels.tolist() == [[0, 1, 1], [2, 0, 0]]
    np.testing.assert_allclose(inst.scores, [0.4, 0.8])


def test_clean_drops_the_highest_id():
    lab = np.zeros((20, 20), np.uint16)
    lab[5:15, 5:15] = 1
    lab[0:2, 0:2] = 2  # the last id is the small one
    inst = Instances(lab, [0.3, 0.7]).clean(min_size=10)
    assert inst.n == 1 and inst.scores.tolist() == pytest.approx([0.3])


def test_clean_drops_small_and_keeps_scores_aligned():
    lab = np.zeros((20, 20), np.uint16)
    lab[0:2, 0:2] = 1  # 4 px
    lab[5:15, 5:15] = 2
    inst = Instances(lab, [0.3, 0.7]).clean(min_size=10)
    assert inst.n == 1 and inst.scores.tolist() == pytest.approx([0.7])


def test_empty():
    e = Instances.empty((5, 6))
    assert e.n == 0 and e.shape == (5, 6) and e.centroids().shape == (0, 2)


def test_fast_on_10k_cells():
    import time

    lab = np.zeros((2000, 2000), np.uint32)
    ids = np.arange(1, 10001, dtype=np.uint32).reshape(100, 100)
    lab[:] = np.kron(ids, np.ones((20, 20), np.uint32))
    lab[::20] = 0
    t = time.perf_counter()
    inst = Instances(lab, np.ones(10000)).clean(min_size=5)
    inst.centroids()
    assert inst.n == 10000
    assert (
        time.perf_counter() - t < 20
    )  # generous: a per-cell loop over the full image takes minutes
