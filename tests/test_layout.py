"""Tests for cellfuse.layout: the Med-MLE-bench / NeurIPS CellSeg input layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from cellfuse.errors import LayoutError
from cellfuse.layout import Sample, find_label, image_id, list_images, list_samples

DATA = SHARED_DATA

LABEL_NAMES = ["{}_label.tiff", "{}_label.tif", "{}.tiff", "{}.tif"]


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def _split(root: Path, images: list[str], labels: list[str] | None) -> Path:
    _touch(root / "images", *images)
    if labels is not None:
        _touch(root / "labels", *labels)
    return root


@pytest.mark.parametrize("pattern", LABEL_NAMES)
def test_find_label_each_pattern(tmp_path, pattern):
    _touch(tmp_path, pattern.format("cell_00001"), "cell_00002_label.tiff")
    assert find_label(tmp_path, "cell_00001") == tmp_path / pattern.format("cell_00001")


@pytest.mark.parametrize("first", range(len(LABEL_NAMES)))
def test_find_label_prefers_earlier_patterns(tmp_path, first):
    _touch(tmp_path, *(p.format("a") for p in LABEL_NAMES[first:]))
    assert find_label(tmp_path, "a") == tmp_path / LABEL_NAMES[first].format("a")


def test_find_label_missing(tmp_path):
    _touch(tmp_path, "b_label.tiff", "a_label.png")
    assert find_label(tmp_path, "a") is None
    assert find_label(tmp_path / "absent", "a") is None


def test_list_images_filters_and_sorts(tmp_path):
    _touch(
        tmp_path,
        "c.png",
        "a.TIF",
        "b.tiff",
        "d.JPEG",
        "e.jpg",
        "f.bmp",
        ".hidden.png",
        "._a.TIF",
        ".x.tmp.tif",
        "notes.txt",
        "g.gif",
        "description.md",
    )
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.TIF", "b.tiff", "c.png", "d.JPEG", "e.jpg", "f.bmp"]


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(LayoutError, match="nowhere"):
        list_images(tmp_path / "nowhere")


def test_list_samples_labeled(tmp_path):
    split = _split(
        tmp_path / "train",
        ["x1.png", "x2.tif", "x3.bmp", "x4.tiff", ".x5.png"],
        ["x1_label.tiff", "x2_label.tif", "x3.tiff", "x4.tif", "x9_label.tiff"],
    )
    samples = list_samples(split, require_labels=True)
    assert [s.id for s in samples] == ["x1", "x2", "x3", "x4"]
    assert samples[0] == Sample("x1", split / "images/x1.png", split / "labels/x1_label.tiff")
    assert [s.label.name for s in samples] == ["x1_label.tiff", "x2_label.tif", "x3.tiff", "x4.tif"]


def test_list_samples_missing_labels_are_listed(tmp_path):
    images = [f"img{i}.png" for i in range(8)]
    split = _split(tmp_path / "train", images, ["img0_label.tiff"])
    with pytest.raises(LayoutError) as info:
        list_samples(split, require_labels=True)
    message = str(info.value)
    assert "7 of 8" in message and "and 2 more" in message
    assert all(f"img{i}" in message for i in range(1, 6))
    assert "img6" not in message
    # Without the requirement the unlabeled ones just have no label.
    samples = list_samples(split, require_labels=False)
    assert [s.label is not None for s in samples] == [True] + [False] * 7


def test_list_samples_without_labels_folder(tmp_path):
    split = _split(tmp_path / "test", ["b.tif", "a.png"], None)
    with pytest.raises(LayoutError, match="labels/"):
        list_samples(split, require_labels=True)
    samples = list_samples(split, require_labels=False)
    assert [(s.id, s.label) for s in samples] == [("a", None), ("b", None)]


def test_list_samples_flat_folder(tmp_path):
    _touch(tmp_path / "pool", "u2.png", "u1.tiff", "readme.txt")
    samples = list_samples(tmp_path / "pool", require_labels=False)
    assert [(s.id, s.image.name, s.label) for s in samples] == [
        ("u1", "u1.tiff", None),
        ("u2", "u2.png", None),
    ]
    with pytest.raises(LayoutError, match="images/"):
        list_samples(tmp_path / "pool", require_labels=True)


@pytest.mark.parametrize("require_labels", [True, False])
def test_list_samples_bad_folders(tmp_path, require_labels):
    with pytest.raises(LayoutError, match="missing"):
        list_samples(tmp_path / "missing", require_labels=require_labels)
    _split(tmp_path / "empty", [], [])
    with pytest.raises(LayoutError, match="no image files"):
        list_samples(tmp_path / "empty", require_labels=require_labels)
    _split(tmp_path / "dup", ["a.png", "a.tif"], ["a_label.tiff"])
    with pytest.raises(LayoutError, match="'a'"):
        list_samples(tmp_path / "dup", require_labels=require_labels)


def test_image_id_and_sample_is_frozen():
    assert image_id("train/images/cell_00528.tif") == "cell_00528"
    assert image_id(Path("x/dsb_01d44a26f668.png")) == "dsb_01d44a26f668"
    sample = Sample("a", Path("a.png"), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.id = "b"  # type: ignore[misc]


def test_real_layouts():
    neurips = list_samples(DATA / "neurips_samples", require_labels=True)
    assert [(s.id, s.label.name) for s in neurips] == [("cell_00528", "cell_00528_label.tiff")]
    if (DATA / "dsb2018/train").is_dir():
        dsb = list_samples(DATA / "dsb2018/train", require_labels=True)
        assert len(dsb) == 166 and all(s.label.name == f"{s.id}_label.tiff" for s in dsb)
