import subprocess
import sys

import pytest
from conftest import ROOT

from cellfuse.app.cli import main


def test_import_cellfuse_is_light():
    code = (
        "import sys, cellfuse, cellfuse.instances, cellfuse.tiling, cellfuse.metric, cellfuse.io, teachers; "
        "heavy = [m for m in ('torch', 'mmdet', 'mmcv', 'ray', 'segment_anything') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "cellfuse run" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


COMMANDS = (
    "check",
    "train-teacher",
    "pseudo-label",
    "distill",
    "export",
    "predict",
    "evaluate",
    "submit",
    "run",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert f"cellfuse {command}" in capsys.readouterr().out


def test_cfg_options_are_parsed_once():
    from cellfuse.app.cli import parse_cfg_options

    assert parse_cfg_options(["a.b=1", "c=[1,2]", "d=None"]) == {"a.b": 1, "c": [1, 2], "d": None}
    assert parse_cfg_options(None) is None


def test_installed_layout_finds_the_shipped_configs(tmp_path, monkeypatch):
    """From any folder, the profiles' relative config names resolve inside the package."""
    from cellfuse.config import config_root, load_config, profile_path, resolve_config_path

    monkeypatch.chdir(tmp_path)
    assert profile_path("demo") == config_root() / "pipeline" / "demo.py"
    cfg = load_config(profile_path("demo"))
    for entry in cfg.teachers:
        assert resolve_config_path(entry["config"]).is_file()
    assert resolve_config_path(cfg.student).is_file()


def test_run_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "nope"), "--work", str(tmp_path / "w")]) == 2
    assert "nope: input folder does not exist" in capsys.readouterr().err


def test_predict_two_kinds_of_test_time_views_is_a_clear_error(tmp_path, capsys):
    import numpy as np
    import tifffile

    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((16, 16), np.uint8))
    args = ["predict", "--onnx", str(tmp_path / "m.onnx"), "--input", str(img)]
    assert main([*args, "--out", str(tmp_path / "o"), "--flip-average", "--view-vote"]) == 2
    assert "choose one kind of test-time views" in capsys.readouterr().err
