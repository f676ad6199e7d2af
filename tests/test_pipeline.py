"""`cellfuse run` end to end on a small copy of the demo set with tiny training budgets."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO

from cellfuse.app.cli import main
from cellfuse.app.pipeline import run
from cellfuse.errors import LayoutError
from cellfuse.io import read_labels
from cellfuse.metric import evaluate_image


def _small_input(dst, n_train=8, n_unlabeled=4, n_test=3, unlabeled=True):
    for sub in ("train/images", "train/labels", "test/images", "test_labels", "unlabeled/images"):
        (dst / sub).mkdir(parents=True)
    for p in sorted((DEMO / "train/images").iterdir())[:n_train]:
        shutil.copy(p, dst / "train/images")
        shutil.copy(DEMO / "train/labels" / f"{p.stem}_label.tiff", dst / "train/labels")
    for p in sorted((DEMO / "test/images").iterdir())[:n_test]:
        shutil.copy(p, dst / "test/images")
        shutil.copy(DEMO / "test_labels" / f"{p.stem}_label.tiff", dst / "test_labels")
    if unlabeled:
        for p in sorted((DEMO / "unlabeled/images").iterdir())[:n_unlabeled]:
            shutil.copy(p, dst / "unlabeled/images")
    else:
        shutil.rmtree(dst / "unlabeled")
    return dst


TINY = {
    "teachers": [
        dict(
            name="flowunet",
            config="configs/teachers/flowunet_demo.py",
            options={
                "teacher.max_steps": 4,
                "teacher.val_every_steps": 2,
                "teacher.num_threads": 1,
            },
        )
    ],
    "refiner": None,
    "ablation": True,  # two students: they train side by side in child processes
    "num_workers": 0,
    "student_options": {"student.max_steps": 4, "student.val_every_steps": 2},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    inp = _small_input(root / "input", unlabeled=False)
    summary = run(inp, root / "work", profile="demo", cfg_options=TINY)
    return inp, root / "work", summary


def test_run_writes_a_valid_submission_and_report(finished_run):
    inp, work, summary = finished_run
    assert (
        main(
            [
                "check",
                "--submission",
                str(work / "submission"),
                "--test-images",
                str(inp / "test/images"),
            ]
        )
        == 0
    )
    report = (work / "report" / "index.html").read_text()
    assert "flowunet" in report and "examples.png" in report and "disagreement.png" in report
    ev = summary["stages"]["evaluate"]["models"]
    assert set(ev) == {"flowunet", "classical", "ensemble", "student", "student_labeled_only"}
    for name in ("student", "student_labeled_only"):  # trained in their own processes
        assert "distilling" in (work / name / "train.log").read_text()
        assert summary["stages"][name]["checkpoint"] == str(work / name / "best.pth")
    assert all(r["s_per_mpx"] > 0 for r in ev.values())
    # the shipped model's score is the submission's, recomputed here from the files
    shipped = summary["stages"]["export"]["student"]
    f1 = [
        evaluate_image(
            read_labels(inp / "test_labels" / f"{p.stem}_label.tiff"),
            read_labels(work / "submission" / "predictions" / f"{p.stem}_label.tiff"),
            (0.5,),
        )["scores"][0.5]["f1"]
        for p in sorted((inp / "test/images").iterdir())
    ]
    assert len(f1) == 3 and ev[shipped]["f1_50"] == pytest.approx(float(np.mean(f1)))
    # no unlabeled folder: the test images were the unlabeled pool (transductive)
    assert summary["stages"]["pseudo"]["transductive"] is True


def test_rerun_skips_every_stage(finished_run, caplog):
    inp, work, _ = finished_run
    before = (work / "submission" / "submission.csv").read_text()
    with caplog.at_level("INFO"):
        run(inp, work, profile="demo", cfg_options=TINY)
    assert "stage" in caplog.text and "running" not in caplog.text
    assert (work / "submission" / "submission.csv").read_text() == before
    assert json.loads((work / "run.json").read_text())["submission"].endswith("submission.csv")


def test_bad_input_and_profile(tmp_path):
    with pytest.raises(LayoutError, match="train/images"):
        run(tmp_path, tmp_path / "w")
    inp = _small_input(tmp_path / "in", n_train=2, n_unlabeled=1, n_test=1)
    from cellfuse.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown profile"):
        run(inp, tmp_path / "w", profile="nope")


# Runs the pipeline and kills its own process (SIGKILL, nothing cleaned up) when the second
# image's pseudo-labelling starts, the first one done and recorded: "killed half-way".
_KILLED_RUN = """
import json, os, signal, sys
from ensemble.worker import PseudoLabeler
from cellfuse.app.pipeline import run

process, calls = PseudoLabeler.process, []

def die_on_the_second_image(self, job):
    calls.append(job["id"])
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return process(self, job)

PseudoLabeler.process = die_on_the_second_image
run(sys.argv[1], sys.argv[2], profile="demo", cfg_options=json.loads(sys.argv[3]))
"""


def test_killed_during_pseudo_labelling_resumes_to_the_same_submission(finished_run, tmp_path):
    inp, ref_work, _ = finished_run
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(inp), str(work), json.dumps(TINY)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    manifest = (work / "pseudo" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 1 and not (work / "stages" / "pseudo.json").exists()
    assert (work / "stages" / "teacher_flowunet.json").exists()  # teachers were done
    run(inp, work, profile="demo", cfg_options=TINY)  # resumes
    entries = [json.loads(x) for x in (work / "pseudo" / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 3 and len({e["id"] for e in entries}) == 3  # nothing done twice
    # same seed, step budgets, one thread: bit-identical to the uninterrupted run
    assert (work / "submission" / "submission.csv").read_text() == (
        ref_work / "submission" / "submission.csv"
    ).read_text()
    for ref in sorted((ref_work / "submission" / "predictions").iterdir()):
        assert (work / "submission" / "predictions" / ref.name).read_bytes() == ref.read_bytes()


def test_the_student_with_the_higher_val_f1_is_shipped():
    from cellfuse.app.pipeline import choose_student

    distilled = {"val_metrics": {"f1_50": 0.85}}
    assert choose_student(
        {"student": distilled, "student_labeled_only": {"val_metrics": {"f1_50": 0.86}}}
    ) == ("student_labeled_only")
    assert choose_student(
        {"student": distilled, "student_labeled_only": {"val_metrics": {"f1_50": 0.85}}}
    ) == ("student")  # a tie goes to the distilled student
    assert choose_student({"student": {}, "student_labeled_only": {}}) == "student"
    assert choose_student({"student": distilled}) == "student"


def test_a_stage_resumes_only_its_own_interrupted_work(tmp_path):
    from cellfuse.stages import Run

    r = Run(tmp_path / "in", tmp_path / "work", "demo", {})
    work = tmp_path / "work" / "student"
    seen = []

    def crash():
        seen.append((work / "last.pth").exists())
        work.mkdir(parents=True, exist_ok=True)
        (work / "last.pth").write_text("half-trained")
        raise RuntimeError("killed")

    def finish():
        seen.append((work / "last.pth").exists())
        return {"done": True}

    with pytest.raises(RuntimeError):
        r.stage("student", ["config A"], crash, work=work)
    assert r.stage("student", ["config A"], finish, work=work)["done"]  # same key: resumes
    assert seen == [False, True]
    # A changed config trains afresh: the old folder is moved aside, not resumed.
    assert r.stage("student", ["config B"], finish, work=work)["done"]
    assert seen == [False, True, False]
    assert (tmp_path / "work" / "student.stale" / "last.pth").read_text() == "half-trained"
