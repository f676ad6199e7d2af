"""Scarce-label inputs (cellfuse/scarce.py) and the stratified hold-out (teachers/train.py)."""

import json

import pytest
from conftest import DEMO

from cellfuse.layout import list_images, list_samples
from cellfuse.scarce import allocate, make_inputs, modalities, nested_subsets
from teachers.train import resolve_splits, stratified_holdout


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A DSB-layout source (train, val, unlabeled) over the demo data."""
    src = tmp_path_factory.mktemp("src")
    (src / "val").mkdir()
    (src / "train").symlink_to(DEMO / "train", target_is_directory=True)
    (src / "unlabeled").symlink_to(DEMO / "unlabeled", target_is_directory=True)
    (src / "val" / "images").symlink_to(DEMO / "test" / "images", target_is_directory=True)
    (src / "val" / "labels").symlink_to(DEMO / "test_labels", target_is_directory=True)
    return src


def test_allocate_is_proportional_with_one_of_each_and_never_below_the_floor():
    counts = {"fluorescence": 135, "stained": 27, "brightfield": 4}
    assert allocate(counts, 8) == {"fluorescence": 6, "stained": 1, "brightfield": 1}
    a16 = allocate(counts, 16, allocate(counts, 8))
    assert sum(a16.values()) == 16 and a16["stained"] >= 2
    assert allocate(counts, 166) == counts
    floor = {"fluorescence": 1, "stained": 5, "brightfield": 1}
    assert allocate(counts, 10, floor)["stained"] == 5
    with pytest.raises(ValueError):
        allocate(counts, 167)


def test_subsets_are_nested_stratified_and_seeded():
    mods = {f"f{i:03d}": "fluorescence" for i in range(40)}
    mods |= {f"s{i:03d}": "stained" for i in range(10)}
    mods |= {f"b{i:03d}": "brightfield" for i in range(3)}
    sub = nested_subsets(mods, (4, 8, 20), seed=0)
    assert set(sub[4]) < set(sub[8]) < set(sub[20])
    for ids in sub.values():
        assert {mods[i] for i in ids} == {"fluorescence", "stained", "brightfield"}
    assert [len(v) for v in sub.values()] == [4, 8, 20]
    assert nested_subsets(mods, (4, 8, 20), seed=0) == sub
    assert nested_subsets(mods, (4, 8, 20), seed=1) != sub


def test_make_inputs_writes_med_mle_bench_folders(source, tmp_path):
    out = tmp_path / "scarce"
    folders = make_inputs(source, out, (4, 8), seed=0)
    assert [f.name for f in folders] == ["scarce_4", "scarce_8", "shift"]
    n_train = len(list_images(source / "train" / "images"))
    n_unl = len(list_images(source / "unlabeled" / "images"))
    for f in folders:
        split = json.loads((f / "split.json").read_text())
        labeled = {s.id for s in list_samples(f / "train", require_labels=True)}
        assert labeled == set(split["labeled"])
        unl = {p.stem for p in list_images(f / "unlabeled" / "images")}
        assert not labeled & unl  # a labeled image is never in the pool
        assert len(unl) == n_train - len(labeled) + n_unl == split["unlabeled_images"]
        assert len(list_images(f / "test" / "images")) == len(list(f.glob("test_labels/*")))
        assert not (f / "val").exists() and not (f / "unlabeled" / "labels").exists()
    shift = json.loads((out / "shift" / "split.json").read_text())
    mods = modalities(source / "train" / "images")
    assert shift["labeled"] == sorted(i for i, m in mods.items() if m == "fluorescence")
    # idempotent: an unchanged split is not rewritten (a run may be reading it)
    stamp = (out / "scarce_4" / "split.json").stat().st_mtime_ns
    make_inputs(source, out, (4, 8), seed=0, shift=False)
    assert (out / "scarce_4" / "split.json").stat().st_mtime_ns == stamp


def test_stratified_holdout_keeps_a_modality_s_only_image_in_training(source, tmp_path):
    out = make_inputs(source, tmp_path / "s", (6,), seed=0, shift=False)[0]
    train = list_samples(out / "train", require_labels=True)
    mods = modalities(out / "train" / "images")
    assert sorted(mods.values()).count("stained") >= 1
    val = stratified_holdout(train, 5)
    assert len(val) == 1
    kept = {mods[s.id] for s in train if s not in val}
    assert kept == set(mods.values())  # every modality still has a training image
    tr, va = resolve_splits(dict(root=str(out), train="train", val=None, holdout="stratified"))
    assert {s.id for s in va} == {s.id for s in val} and len(tr) + len(va) == len(train)
