"""The teacher registry, the train tool and the classical baseline (no heavy stack needed)."""

import json

import numpy as np
import pytest
from conftest import DEMO, ROOT
from helpers import disc_labels

from cellfuse.errors import ConfigError, LayoutError
from cellfuse.layout import list_samples
from cellfuse.model_api import validate
from teachers import TEACHER_REGISTRY, build_teacher, load_teacher
from teachers.classical import ClassicalTeacher, segment
from teachers.train import load_config, resolve_splits, train_teacher


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown teacher type 'nope'"):
        build_teacher({"type": "nope"})
    with pytest.raises(ConfigError, match="no 'type'"):
        build_teacher({})
    assert {"flowunet", "sam", "maskrcnn", "classical"} <= set(TEACHER_REGISTRY)


def test_otsu_watershed_finds_separate_discs():
    truth = disc_labels((256, 256), 30, rmin=6, rmax=10, seed=5)
    gray = (truth > 0).astype(np.float32) * 0.8 + 0.1
    pred = segment(np.repeat(gray[..., None], 3, axis=-1)).labels
    from cellfuse.metric import evaluate_image

    assert evaluate_image(truth, pred, [0.5])["scores"][0.5]["f1"] > 0.9


def test_classical_predict_on_empty_and_constant_images():
    t = ClassicalTeacher()
    for img in (np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 1), 7, np.uint16)):
        inst = t.predict(img)
        assert inst.n == 0 and inst.shape == (64, 64)


def test_resolve_splits_holds_out_without_val():
    train, val = resolve_splits({"root": str(DEMO), "train": "train", "val": "val"})
    assert len(val) == 6 and len(train) == 24
    assert not {s.id for s in train} & {s.id for s in val}
    with pytest.raises(ConfigError):
        resolve_splits({"root": str(DEMO)})
    with pytest.raises(LayoutError):
        resolve_splits({"root": str(DEMO), "train": "nope"})


def test_train_tool_end_to_end_with_classical(tmp_path):
    cfg_file = tmp_path / "classical.py"
    cfg_file.write_text(
        f"_base_ = ['{ROOT}/configs/_base_/data_demo.py']\n"
        "teacher = dict(type='classical', min_size=10, grid_sigma=(1.0,), grid_min_distance=(5,), fit_images=4)\n"
    )
    cfg = load_config(cfg_file, {"data.root": str(DEMO)})
    ckpt = train_teacher(cfg, tmp_path / "work")
    result = json.loads((tmp_path / "work" / "result.json").read_text())
    assert (
        result["checkpoint"] == str(ckpt)
        and 0.3 < result["val_metrics"]["f1_50"] <= 1.0
        and "f1_75" in result["val_metrics"]
    )
    t = load_teacher({"type": "classical"}, ckpt)
    assert t.params["min_size"] == 10 and t.val_metrics == result["val_metrics"]


def test_validate_perfect_predictor():
    val = list_samples(DEMO / "train", require_labels=True)[:3]
    from cellfuse.instances import Instances
    from cellfuse.io import read_labels

    truth = {s.image.name: read_labels(s.label) for s in val}
    it = iter(val)

    def oracle(image):
        return Instances.from_labels(truth[next(it).image.name])

    assert validate(oracle, val) == {"f1_50": 1.0, "f1_75": 1.0}


def test_the_run_seed_moves_every_trained_teachers_seed(monkeypatch, tmp_path):
    """``cellfuse run`` writes its ``seed`` at the top of every stage config: a teacher's own
    seed moves by it (a repeat is another training), and seed 0 changes nothing."""
    from mmengine.config import Config

    from teachers import teacher_class

    t = {"type": "flowunet", "seed": 1}
    teacher_class("flowunet").offset_seed(t, None, 2)
    assert t["seed"] == 3
    t = {"type": "sam", "train": {"mask_prob": 0.5}}
    teacher_class("sam").offset_seed(t, None, 2)
    assert t["train"] == {"mask_prob": 0.5, "seed": 2}
    cfg = Config(dict(randomness=dict(seed=2022)))
    teacher_class("maskrcnn").offset_seed({}, cfg, 2)
    assert cfg.randomness["seed"] == 2024

    seen = []

    def capture(tcfg):
        seen.append(tcfg)
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr("teachers.train.build_teacher", capture)
    for seed in (0, 5):
        cfg = Config(dict(seed=seed, teacher=dict(type="flowunet", seed=1), data=dict(root=".")))
        with pytest.raises(KeyboardInterrupt):
            train_teacher(cfg, tmp_path / f"w{seed}")
    assert [s["seed"] for s in seen] == [1, 6]
