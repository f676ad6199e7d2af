"""Atomic config dumps and the clean-up of what a killed run left (cellfuse.durable)."""

import pytest
from mmengine.config import Config

from cellfuse.durable import clean_stale, dump_config, exchange
from cellfuse.io import atomic_write_text


def test_dump_config_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "work" / "config.py"
    dump_config(Config(dict(a=1, b=dict(c="x"))), path)
    assert Config.fromfile(str(path)).b.c == "x"
    before = path.read_text()

    def torn(self, file):  # dies half-way through writing
        open(file, "w").write("a = 2\\nb = dict(")
        raise KeyboardInterrupt

    monkeypatch.setattr(Config, "dump", torn)
    with pytest.raises(KeyboardInterrupt):
        dump_config(Config(dict(a=2)), path)
    assert path.read_text() == before and [p.name for p in path.parent.iterdir()] == ["config.py"]


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from_a").touch()
    assert exchange(tmp_path / "a", tmp_path / "b")  # Linux ext4/tmpfs/overlay
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from_a"]
    assert not any((tmp_path / "a").iterdir())


def test_clean_stale_removes_only_temporaries(tmp_path):
    keep = [tmp_path / "pseudo" / "x_label.tiff", tmp_path / "stages" / "check.json"]
    for p in keep:
        atomic_write_text(p, "ok")
    stale = [
        tmp_path / "pseudo" / ".x_label.tiff.k2j3h4g5.tmp.tiff",  # atomic_write, killed
        tmp_path / "student" / ".config.py.a1b2c3d4.tmp.py",  # dump_config, killed
        tmp_path / "export" / ".tmp-student.pt2",  # torch.export, killed
        tmp_path / "predictions" / ".labels-abc123",  # predictor memmap folder
        tmp_path / "submission.tmp-0badf00d",  # half-built submission
    ]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.mkdir() if "labels-" in p.name or "submission" in p.name else p.write_text("x")
    assert sorted(clean_stale(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
