"""Checkpoints are read with ``weights_only=True``: a pickle that would run code is refused
with a ConfigError naming the file, and so are missing and foreign files."""

import pickle

import pytest
import torch

from cellfuse.errors import ConfigError
from cellfuse.nn.checkpoints import load_checkpoint, save_checkpoint

RAN = []


class Payload:
    """Unpickling this calls RAN.append: code execution."""

    def __reduce__(self):
        return (RAN.append, ("ran",))


def test_plain_checkpoint_round_trips(tmp_path):
    ck = dict(state_dict={"w": torch.ones(2)}, net={"widths": [4, 8]}, metrics={"f1_50": 0.5})
    save_checkpoint(ck, tmp_path / "best.pth")
    back = load_checkpoint(tmp_path / "best.pth")
    assert back["net"] == ck["net"] and torch.equal(back["state_dict"]["w"], torch.ones(2))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(ConfigError, match=r"evil.pth: .*it would run getattr, refused"):
        load_checkpoint(path)
    assert RAN == []
    plain = tmp_path / "evil.pkl.pth"
    plain.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ConfigError, match="evil.pkl.pth"):
        load_checkpoint(plain)
    assert RAN == []


def test_missing_and_foreign_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="nope.pth: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="text.pth"):
        load_checkpoint(tmp_path / "text.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="list.pth: checkpoint holds a list"):
        load_checkpoint(tmp_path / "list.pth")


@pytest.mark.parametrize("loader", ["student", "flow_network", "flowunet"])
def test_model_loaders_refuse_code(loader, tmp_path):
    path = tmp_path / "best.pth"
    torch.save({"net": {}, "state_dict": {}, "nominal_diameter": 17.0, "x": Payload()}, path)
    with pytest.raises(ConfigError, match="best.pth"):
        if loader == "student":
            from student.model import load_student

            load_student(path)
        elif loader == "flow_network":
            from student.distill import load_flow_network

            load_flow_network(path)
        else:
            from teachers.flowunet import FlowUNetTeacher

            FlowUNetTeacher(device="cpu").load(path)
    assert RAN == []
