"""Submission writer and checker: round trip, every kind of bad input, atomic replacement."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from helpers import disc_labels, same_partition
from PIL import Image

import cellfuse.submission as sub
from cellfuse.app.cli import main
from cellfuse.errors import SubmissionError
from cellfuse.io import read_labels
from cellfuse.submission import check_submission, write_submission

SHAPES = {"img_a": (40, 56), "img_b": (48, 48), "img_c": (32, 64)}


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def case(tmp_path):
    """Test images (tif and png), matching predictions under the accepted name patterns."""
    rng = np.random.default_rng(0)
    test_dir, pred_dir = tmp_path / "test" / "images", tmp_path / "pred"
    test_dir.mkdir(parents=True)
    pred_dir.mkdir()
    masks = {}
    for i, (key, shape) in enumerate(SHAPES.items()):
        img = rng.integers(0, 255, shape, dtype=np.uint8)
        if key == "img_b":
            Image.fromarray(img).save(test_dir / f"{key}.png")
        else:
            tifffile.imwrite(test_dir / f"{key}.tif", img)
        masks[key] = disc_labels(shape, 3, rmin=3, rmax=6, seed=i)
    masks["img_a"] = (masks["img_a"] * 7).astype(np.int32)  # non-sequential ids, signed dtype
    tifffile.imwrite(pred_dir / "img_a_label.tiff", masks["img_a"])
    tifffile.imwrite(pred_dir / "img_b.tif", masks["img_b"])  # another accepted pattern
    tifffile.imwrite(pred_dir / "img_c_label.tif", masks["img_c"])
    return SimpleNamespace(
        test_dir=test_dir,
        pred_dir=pred_dir,
        out=tmp_path / "submission",
        masks=masks,
        root=tmp_path,
    )


def no_temp_dirs(root: Path) -> bool:
    return not [p for p in root.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_round_trip(case):
    csv_path = write_submission(case.pred_dir, case.test_dir, case.out)
    assert csv_path == case.out / "submission.csv"
    rows = read_csv(csv_path)
    assert rows[0] == ["image_id", "predicted_mask_path"]
    assert rows[1:] == [[k, f"predictions/{k}_label.tiff"] for k in sorted(SHAPES)]
    for key, want in case.masks.items():
        got = read_labels(case.out / "predictions" / f"{key}_label.tiff")
        assert got.dtype == np.uint16 and got.shape == SHAPES[key]
        assert same_partition(got, want)
        assert got.max() == len(np.unique(want)) - 1  # renumbered 1..N
    assert check_submission(case.out, case.test_dir) == []
    assert no_temp_dirs(case.root)
    umask = os.umask(0)
    os.umask(umask)
    assert case.out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


def test_mapping_of_arrays_and_instances(case):
    preds = {k: SimpleNamespace(labels=v, scores=None) for k, v in case.masks.items()}
    preds["img_c"] = case.masks["img_c"].astype(bool)  # one cell, as a bool mask
    preds["not_a_test_image"] = case.masks["img_c"]  # ignored
    write_submission(preds, case.test_dir, case.out)
    assert check_submission(case.out, case.test_dir) == []
    c = read_labels(case.out / "predictions" / "img_c_label.tiff")
    assert c.max() == 1


def test_sample_submission_defines_rows_order_and_paths(case):
    sample = case.root / "sample_submission.csv"
    sample.write_text(
        "image_id,predicted_mask_path\n"
        "img_c,masks/img_c.tiff\n"
        "img_a,/abs/elsewhere.tiff\n"  # absolute: replaced by the default path
        "img_b,\n"
    )
    write_submission(case.pred_dir, case.test_dir, case.out, sample_submission=sample)
    assert read_csv(case.out / "submission.csv")[1:] == [
        ["img_c", "masks/img_c.tiff"],
        ["img_a", "predictions/img_a_label.tiff"],
        ["img_b", "predictions/img_b_label.tiff"],
    ]
    assert (case.out / "masks" / "img_c.tiff").is_file()
    assert check_submission(case.out, case.test_dir, sample_submission=sample) == []


def test_sample_submission_with_duplicate_or_unknown_id(case):
    sample = case.root / "sample.csv"
    sample.write_text("image_id\nimg_a\nimg_b\nimg_a\nimg_x\n")
    with pytest.raises(SubmissionError) as err:
        write_submission(case.pred_dir, case.test_dir, case.out, sample_submission=sample)
    assert "img_a: listed twice" in str(err.value)
    assert "img_x: in the sample submission but there is no such test image" in str(err.value)
    assert not case.out.exists() and no_temp_dirs(case.root)


def test_missing_mask(case):
    (case.pred_dir / "img_b.tif").unlink()
    with pytest.raises(SubmissionError, match="img_b: no predicted mask"):
        write_submission(case.pred_dir, case.test_dir, case.out)
    assert not case.out.exists() and no_temp_dirs(case.root)


def test_wrong_shape(case):
    tifffile.imwrite(case.pred_dir / "img_c_label.tif", case.masks["img_c"][:, :-3])
    with pytest.raises(
        SubmissionError, match=r"img_c: mask is HxW \(32, 61\), test image is \(32, 64\)"
    ):
        write_submission(case.pred_dir, case.test_dir, case.out)


def test_negative_labels_from_file_and_array(case):
    bad = case.masks["img_a"].copy()
    bad[0, 0] = -1
    tifffile.imwrite(case.pred_dir / "img_a_label.tiff", bad)
    with pytest.raises(SubmissionError, match="img_a: .*negative"):
        write_submission(case.pred_dir, case.test_dir, case.out)
    preds = dict(case.masks, img_a=bad)
    with pytest.raises(SubmissionError, match="img_a: .*negative"):
        write_submission(preds, case.test_dir, case.out)


def test_error_lists_at_most_ten_problems(case):
    with pytest.raises(SubmissionError) as err:
        write_submission({}, case.test_dir, case.out)
    assert "3 problem(s)" in str(err.value)
    many = [f"p{i}" for i in range(14)]
    msg = str(sub._fail(many, "x"))
    assert "p9" in msg and "p10" not in msg and "... and 4 more" in msg


def test_check_finds_problems(case):
    write_submission(case.pred_dir, case.test_dir, case.out)
    csv_path = case.out / "submission.csv"
    rows = read_csv(csv_path)
    rows.append(["img_a", "predictions/img_a_label.tiff"])  # duplicate id
    rows[2][1] = "predictions/gone.tiff"  # img_b: missing file
    tifffile.imwrite(case.out / "predictions" / "img_c_label.tiff", np.zeros((5, 5), np.uint16))
    rows.append(["ghost", "../outside.tiff"])
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    problems = check_submission(case.out, case.test_dir)
    text = "\n".join(problems)
    assert "img_a: duplicate image_id" in text
    assert "img_b: mask predictions/gone.tiff does not exist" in text
    assert "img_c: mask is HxW (5, 5), test image is (32, 64)" in text
    assert "ghost: mask path '../outside.tiff' must be relative" in text
    assert "ghost: row names no test image" in text
    assert len(problems) == 5

    (case.out / "predictions" / "img_c_label.tiff").write_bytes(b"not a tiff")
    assert any("img_c: mask" in p and "not a readable" in p for p in check_submission(case.out))


def test_check_columns_and_coverage(case, tmp_path):
    out = tmp_path / "manual"
    (out / "predictions").mkdir(parents=True)
    (out / "submission.csv").write_text("id,path\nimg_a,x\n")
    assert "expected exactly 'image_id,predicted_mask_path'" in check_submission(out)[0]
    tifffile.imwrite(out / "predictions" / "img_a_label.tiff", np.zeros(SHAPES["img_a"], np.int16))
    (out / "submission.csv").write_text(
        "image_id,predicted_mask_path\nimg_a,predictions/img_a_label.tiff\n"
    )
    assert check_submission(out) == []
    problems = check_submission(out, case.test_dir)
    assert problems == [
        "img_b: test image has no row in submission.csv",
        "img_c: test image has no row in submission.csv",
    ]
    assert check_submission(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere' / 'submission.csv'}: missing"
    ]


def test_crash_mid_write_keeps_the_old_submission(case, monkeypatch):
    (case.out / "eval").mkdir(parents=True)
    (case.out / "eval" / "summary.json").write_text("{}")  # not ours: carried over
    write_submission(case.pred_dir, case.test_dir, case.out)
    before = snapshot(case.out)
    assert "eval/summary.json" in before

    calls = []

    def crashing_write(path, labels):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")  # not an Exception: nothing may swallow it
        return real_write(path, labels)

    real_write = sub.write_labels
    monkeypatch.setattr(sub, "write_labels", crashing_write)
    new_pred = case.root / "pred2"
    new_pred.mkdir()
    for key, m in case.masks.items():
        tifffile.imwrite(new_pred / f"{key}_label.tiff", (m > 0).astype(np.uint8))
    with pytest.raises(KeyboardInterrupt):
        write_submission(new_pred, case.test_dir, case.out)
    assert snapshot(case.out) == before
    assert no_temp_dirs(case.root)


def test_crash_during_swap_restores_the_old_folder(case, monkeypatch):
    write_submission(case.pred_dir, case.test_dir, case.out)
    before = snapshot(case.out)
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst) == case.out and ".tmp-" in Path(src).name:
            raise OSError("disk full")
        return real_replace(src, dst)

    import cellfuse.durable

    # where renameat2 cannot exchange the folders: two renames, the second one fails
    monkeypatch.setattr(cellfuse.durable, "exchange", lambda a, b: False)
    monkeypatch.setattr(sub.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_submission(case.pred_dir, case.test_dir, case.out)
    monkeypatch.undo()
    assert snapshot(case.out) == before
    assert no_temp_dirs(case.root)


def test_rewrite_replaces_the_old_submission(case):
    write_submission(case.pred_dir, case.test_dir, case.out)
    (case.out / "predictions" / "stale_label.tiff").write_bytes(b"old")
    write_submission(case.pred_dir, case.test_dir, case.out)
    assert not (case.out / "predictions" / "stale_label.tiff").exists()
    assert check_submission(case.out, case.test_dir) == []
    assert no_temp_dirs(case.root)


def test_cli(case, capsys):
    args = ["submit", str(case.pred_dir), str(case.test_dir), str(case.out)]
    assert main(args) == 0
    assert main(["check", "--submission", str(case.out), "--test-images", str(case.test_dir)]) == 0
    assert "valid" in capsys.readouterr().out
    (case.out / "predictions" / "img_a_label.tiff").unlink()
    assert main(["check", "--submission", str(case.out)]) == 1
    assert "img_a: mask predictions/img_a_label.tiff does not exist" in capsys.readouterr().out
    (case.pred_dir / "img_a_label.tiff").unlink()
    assert main(args) == 2  # a CellfuseError: reported, exit 2
    assert main(["submit", str(case.pred_dir)]) == 2  # usage error


def test_swap_has_no_window_and_a_killed_swap_is_recovered(case, monkeypatch):
    import cellfuse.durable

    write_submission(case.pred_dir, case.test_dir, case.out)
    before = snapshot(case.out)
    real_replace, seen = os.replace, []

    def watching_replace(src, dst):  # the submission folder exists at every rename
        seen.append(case.out.is_dir())
        return real_replace(src, dst)

    monkeypatch.setattr(sub.os, "replace", watching_replace)
    write_submission(case.pred_dir, case.test_dir, case.out)
    assert seen and all(seen) and snapshot(case.out) == before
    monkeypatch.undo()
    # without renameat2, a kill between the two renames leaves only <out>.old-XXXXXXXX ...
    monkeypatch.setattr(cellfuse.durable, "exchange", lambda a, b: False)

    def killed(src, dst):
        if Path(dst) == case.out:
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(sub.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cellfuse.durable.swap_dirs(
            case.root / "new", case.out, case.root / "submission.old-0123abcd"
        )
    monkeypatch.undo()
    assert not case.out.exists() and (case.root / "submission.old-0123abcd").is_dir()
    (case.root / "submission.tmp-89abcdef").mkdir()  # and a half-built one
    # ... which the next run restores before anything else, and cleans up
    assert cellfuse.durable.clean_stale(case.root) == [case.root / "submission.tmp-89abcdef"]
    assert snapshot(case.out) == before and no_temp_dirs(case.root)
