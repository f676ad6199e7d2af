import subprocess
import sys

from conftest import ROOT

from cellfuse.cli import main


def test_import_cellfuse_is_light():
    code = (
        "import sys, cellfuse, cellfuse.instances, cellfuse.tiling, cellfuse.metric, cellfuse.io, teachers; "
        "heavy = [m for m in ('torch', 'mmdet', 'mmcv', 'ray', 'segment_anything') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2
    assert "cellfuse run" in capsys.readouterr().out


def test_run_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "nope"), "--work", str(tmp_path / "w")]) == 2
    assert "nope: input folder does not exist" in capsys.readouterr().err
