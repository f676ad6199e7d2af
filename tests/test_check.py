"""`cellfuse check` and the pipeline's first stage: every bad input found at once, one line
each, before any training (the inputs: tools/make_bad_inputs.py)."""

import sys

import pytest
from conftest import ROOT

from cellfuse.app.cli import main
from cellfuse.check import InputCheckError, check_input

sys.path.insert(0, str(ROOT / "tools"))
from make_bad_inputs import CASES, make_valid  # noqa: E402


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_input_gives_its_one_line(tmp_path, case):
    make, expected = CASES[case]
    root = tmp_path / "in"
    make(make_valid(root))
    report = check_input(root, tmp_path / "work", min_free_bytes=0)
    lines = [(p.level, p.text) for p in report.problems]
    assert len(lines) == len(expected), lines
    for (level, text), (want_level, want) in zip(lines, expected, strict=True):
        assert level == want_level and text.startswith(want.format(root=root)), (text, want)
        assert "\n" not in text


def test_cli_prints_every_problem_and_exits_2(tmp_path, capsys):
    root = make_valid(tmp_path / "in")
    CASES["two problems at once"][0](root)
    (root / "test/images/te0.png").write_text("text")
    assert main(["check", str(root)]) == 2
    captured = capsys.readouterr()
    err = [x for x in captured.err.splitlines() if x.startswith(("error:", "warning:"))]
    assert len(err) == 3 and all(x.startswith(f"error: {root}/") for x in err)
    assert "3 errors, 0 warnings" in captured.out
    assert main(["check", str(make_valid(tmp_path / "ok"))]) == 0


def test_disk_space_of_the_work_folder(tmp_path):
    root = make_valid(tmp_path / "in")
    report = check_input(root, tmp_path / "not" / "yet" / "work", min_free_bytes=2**60)
    [problem] = report.errors
    assert problem.text.startswith(f"{tmp_path}/not/yet/work: only ") and "GiB free" in problem.text


def test_parallel_and_serial_find_the_same(tmp_path):
    root = make_valid(tmp_path / "in")
    for case in ("truncated TIFF", "label/image shape mismatch", "semantic mask as label"):
        CASES[case][0](root)
    one = check_input(root, threads=1).problems
    assert check_input(root, threads=8).problems == one and len(one) == 3


def test_run_refuses_bad_input_before_any_training(tmp_path, capsys):
    from cellfuse.app.pipeline import run

    root = make_valid(tmp_path / "in")
    (root / "test/images/te1.png").write_bytes(b"")
    (root / "test_labels/te0_label.tiff").unlink()
    with pytest.raises(InputCheckError) as info:
        run(root, tmp_path / "work")
    assert len(info.value.report.errors) == 2
    assert not (tmp_path / "work" / "teachers").exists()
    # the CLI: every error on its own line, exit 2
    assert main(["run", "--input", str(root), "--work", str(tmp_path / "w2")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"error: {root}/test/images/te0.png: no label file in {root}/test_labels" in err[-2]
    assert err[-1] == f"error: {root}/test/images/te1.png: empty file (0 bytes)"
