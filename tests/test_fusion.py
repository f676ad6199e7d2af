"""Weighted mask voting (cellfuse.fusion) on hand-made teachers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cellfuse.errors import ConfigError, LabelError
from cellfuse.fusion import (
    FusionParams,
    cluster_instances,
    fuse,
    match_greedy,
    merge_for_prompts,
    pair_ious,
    pair_overlaps,
)
from cellfuse.instances import Instances

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_fusion import bench, paint_discs  # noqa: E402

SHAPE = (64, 96)


def discs(*cells: tuple[float, float, float], shape=SHAPE, scores=None) -> Instances:
    """Instances of discs (cy, cx, r), label k+1 for the k-th."""
    labels = paint_discs(
        shape, np.array([c[:2] for c in cells]).reshape(-1, 2), np.array([c[2] for c in cells])
    )
    return Instances.from_labels(labels, None if scores is None else np.asarray(scores, np.float32))


A, B, C = (16, 16, 8), (16, 50, 8), (44, 70, 9)


def test_three_agreeing_teachers_give_the_same_cells_with_full_confidence():
    t = discs(A, B, C)
    res = fuse([t, t, t], [0.8, 0.7, 0.6])
    assert res.instances.n == 3
    assert np.array_equal(res.instances.labels, t.labels)
    np.testing.assert_allclose(res.instances.scores, 1.0, atol=1e-6)
    assert not res.ignore.any()
    assert res.votes.dtype == np.float32
    np.testing.assert_allclose(res.votes[t.labels > 0], 1.0, atol=1e-6)
    assert res.stats == {"clusters": 3, "confident": 3, "uncertain": 0, "background": 0}


def test_dissenting_teacher_is_outvoted_and_its_lone_cell_ignored():
    extra = (48, 20, 7)
    good = discs(A, B, C)
    bad = discs(A, extra)  # misses B and C, adds a cell nobody else sees
    res = fuse([good, good, bad], params=dict(hi=0.6, lo=0.25))
    labels = res.instances.labels
    assert res.instances.n == 3
    # A: all three agree (conf 1); B, C: two of three (vote 2/3 everywhere inside).
    np.testing.assert_allclose(sorted(res.instances.scores), [2 / 3, 2 / 3, 1.0], atol=1e-5)
    lone = discs(extra).labels > 0
    assert not (labels[lone] > 0).any()
    assert res.ignore[lone].all()  # vote 1/3: uncertain cluster and disagreeing pixels
    assert not res.ignore[labels > 0].any()
    assert res.stats["uncertain"] == 1


def test_cell_missed_by_one_teacher_depends_on_weights_and_hi():
    full, partial = discs(A, B), discs(A)
    # Two teachers, equal weights: B has vote 0.5 -> fused (tau 0.5) with conf 0.5 < hi.
    res = fuse([full, partial], params=dict(hi=0.6))
    assert res.instances.n == 1
    assert res.ignore[discs(B).labels > 0].all()
    # The teacher that saw B is trusted more: vote 0.75 -> kept.
    res = fuse([full, partial], [3.0, 1.0], params=dict(hi=0.6))
    assert res.instances.n == 2
    np.testing.assert_allclose(sorted(res.instances.scores), [0.75, 1.0], atol=1e-6)
    # A cell seen only by a zero-weight teacher is background, not ignored.
    res = fuse([partial, full], [1.0, 0.0])
    assert res.instances.n == 1 and not res.ignore.any()


def test_scores_scale_the_vote():
    t = discs(A, B, scores=[1.0, 0.5])
    res = fuse([t, t], params=dict(hi=0.6, lo=0.25, disagree=(0.2, 0.8)))
    assert res.instances.n == 1  # B: vote 0.5 >= tau but conf 0.5 < hi -> ignored
    assert res.ignore[discs(B).labels > 0].all()
    np.testing.assert_allclose(res.votes[discs(B).labels > 0], 0.5, atol=1e-6)


def test_boundary_disagreement_is_ignored_not_labelled():
    small, big = discs((30, 40, 8)), discs((30, 40, 11))
    res = fuse([small, small, big])
    assert res.instances.n == 1
    assert np.array_equal(res.instances.labels > 0, small.labels > 0)
    ring = (big.labels > 0) & (small.labels == 0)
    assert res.ignore[ring].all()  # vote 1/3 in the ring
    assert not res.ignore[small.labels > 0].any()


def test_touching_cells_stay_separate_and_conflicts_go_to_the_higher_vote():
    h, w = 40, 60
    left_a = np.zeros((h, w), np.uint16)
    left_a[10:30, 5:30] = 1
    left_a[10:30, 30:55] = 2
    left_b = np.zeros((h, w), np.uint16)  # boundary moved 2 px right: columns 30, 31 disputed
    left_b[10:30, 5:32] = 1
    left_b[10:30, 32:55] = 2
    ta, tb = Instances.from_labels(left_a), Instances.from_labels(left_b)
    res = fuse([ta, ta, tb])
    lab = res.instances.labels
    assert res.instances.n == 2
    # Columns 30..31: cell 2 has vote 2/3, cell 1 has 1/3 -> they go to cell 2.
    assert (lab[10:30, 30:32] == lab[20, 40]).all()
    assert lab[20, 10] != lab[20, 40]
    # With the dissenting teacher weighted higher, the disputed columns go to cell 1.
    res = fuse([ta, ta, tb], [1.0, 1.0, 3.0])
    lab = res.instances.labels
    assert (lab[10:30, 30:32] == lab[20, 10]).all()
    assert lab[20, 10] != lab[20, 40]


def test_empty_inputs():
    empty = Instances.empty(SHAPE)
    res = fuse([empty, empty])
    assert res.instances.n == 0 and res.instances.shape == SHAPE
    assert not res.ignore.any() and not res.votes.any()
    # One empty teacher among two: the other's cells have vote 0.5.
    res = fuse([discs(A), empty], params=dict(hi=0.5))
    assert res.instances.n == 1


def test_bad_inputs_raise_clear_errors():
    t = discs(A)
    with pytest.raises(LabelError, match="same HxW"):
        fuse([t, Instances.empty((10, 10))])
    with pytest.raises(ConfigError, match="at least one"):
        fuse([])
    with pytest.raises(ConfigError, match="weights"):
        fuse([t, t], [1.0])
    with pytest.raises(ConfigError, match="weights"):
        fuse([t, t], [1.0, -1.0])
    with pytest.raises(ConfigError, match="lo <= hi"):
        fuse([t], params=dict(lo=0.8, hi=0.5))
    with pytest.raises(ConfigError, match="unknown fusion keys"):
        fuse([t], params=dict(treshold=0.5))
    with pytest.raises(LabelError, match="not Instances"):
        fuse([t.labels])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_pair_overlaps_match_brute_force(dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, (30, 40)).astype(dtype)
    b = rng.integers(0, 5, (30, 40)).astype(dtype)
    ia, ib, inter = pair_overlaps(a, b)
    got = {(int(x), int(y)): int(n) for x, y, n in zip(ia, ib, inter, strict=True)}
    want = {}
    for x in range(1, 6):
        for y in range(1, 5):
            n = int(((a == x) & (b == y)).sum())
            if n:
                want[(x - 1, y - 1)] = n
    assert got == want
    ia, ib, iou = pair_ious(Instances.from_labels(a), Instances.from_labels(b))
    k = 0
    ref = ((a == ia[k] + 1) & (b == ib[k] + 1)).sum() / ((a == ia[k] + 1) | (b == ib[k] + 1)).sum()
    assert iou[k] == pytest.approx(ref)


def test_greedy_matching_is_one_to_one_best_first():
    ia = np.array([0, 0, 1, 1])
    ib = np.array([0, 1, 0, 1])
    iou = np.array([0.40, 0.35, 0.45, 0.2])
    a, b, v = match_greedy(ia, ib, iou, 0.3)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert v.min() >= 0.3


def test_clusters_never_hold_two_cells_of_one_teacher():
    # Teacher 0 has two small cells that teacher 1 sees as one big cell: at a low IoU
    # threshold both would match it; the cluster must keep only one of them.
    t0 = np.zeros((20, 40), np.uint16)
    t0[5:15, 5:19] = 1
    t0[5:15, 21:35] = 2
    t1 = np.zeros((20, 40), np.uint16)
    t1[5:15, 5:35] = 1
    t2 = t0.copy()  # teacher 2 agrees with teacher 0: a chain 0a-1-... and 0a-2a, 0b-2b
    preds = [Instances.from_labels(x) for x in (t0, t1, t2)]
    cluster = cluster_instances(preds, iou_thr=0.3)
    teacher = np.repeat(np.arange(3), [p.n for p in preds])
    for c in np.unique(cluster):
        members = teacher[cluster == c]
        assert np.unique(members).size == members.size
    res = fuse(preds, params=dict(iou_thr=0.3))
    assert res.instances.n == 2  # the two small cells, agreed by teachers 0 and 2


def test_merge_for_prompts_keeps_every_cluster_once():
    a, b = discs(A, B), discs((A[0] + 1, A[1], A[2]), C)
    merged = merge_for_prompts([a, b])
    assert merged.n == 3


def test_fusion_params_round_trip():
    p = FusionParams.from_dict({"hi": 0.7, "disagree": [0.1, 0.9]})
    assert p.hi == 0.7 and p.disagree == (0.1, 0.9)
    res = fuse([discs(A)], params=p, hi=0.9)  # overrides win
    assert res.instances.n == 1


def test_benchmark_small_synthetic_image_fuses_better_than_each_teacher():
    out = bench((500, 500), 300, repeat=1)
    assert out["n_cells_fused"] > 0.8 * out["n_cells_true"]
    assert out["precision@0.5_fused"] >= max(out["precision@0.5_teachers"])
    assert out["seconds"] < 5


@pytest.mark.slow
def test_benchmark_5000_cells_in_a_few_seconds():
    out = bench((2000, 2000), 5000, repeat=1)
    assert out["seconds"] < 10
    assert out["precision@0.5_fused"] >= max(out["precision@0.5_teachers"])
