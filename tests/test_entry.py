"""One-line errors of every entry point: `error: <file>: <what>`, exit 2; --debug traces."""

import pytest

from cellfuse.app.cli import main
from cellfuse.entry import error_line, pop_debug, run_tool
from cellfuse.errors import ImageReadError


def test_error_lines():
    assert error_line(ImageReadError("a.tif: empty file (0 bytes)")) == (
        "error: a.tif: empty file (0 bytes)"
    )
    assert error_line(FileNotFoundError(2, "No such file or directory", "/x/sam.pth")) == (
        "error: /x/sam.pth: No such file or directory"
    )
    assert error_line(KeyError("state_dict")) == "error: KeyError: 'state_dict'"
    assert (
        error_line(RuntimeError("line one\n  line two")) == "error: RuntimeError: line one line two"
    )


def test_pop_debug(monkeypatch):
    monkeypatch.delenv("CELLFUSE_DEBUG", raising=False)
    assert pop_debug(["a", "--debug", "b"]) == (["a", "b"], True)
    assert pop_debug(["a"]) == (["a"], False)
    monkeypatch.setenv("CELLFUSE_DEBUG", "1")
    assert pop_debug(["a"]) == (["a"], True)


def _boom(argv):
    raise FileNotFoundError(2, "No such file or directory", "/ckpt/sam_vit_b.pth")


def test_run_tool_one_line_or_traceback(capsys, monkeypatch):
    monkeypatch.delenv("CELLFUSE_DEBUG", raising=False)
    assert run_tool(_boom, ["x"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: /ckpt/sam_vit_b.pth: No such file or directory"
    assert "Traceback" not in err
    assert run_tool(_boom, ["x", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert run_tool(lambda argv: 1, []) == 1 and run_tool(lambda argv: None, []) == 0

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_tool(interrupted, []) == 130
    with pytest.raises(SystemExit):  # argparse usage errors keep their own exit
        run_tool(lambda argv: __import__("argparse").ArgumentParser().parse_args(["--nope"]), [])


def test_cli_unexpected_error_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CELLFUSE_DEBUG", raising=False)
    import cellfuse.scoring

    monkeypatch.setattr(cellfuse.scoring, "evaluate_dirs", lambda *a, **k: _boom(a))
    assert main(["evaluate", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert "error: /ckpt/sam_vit_b.pth: No such file or directory" in err and "Traceback" not in err
    assert main(["evaluate", "a", "b", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
