"""The GPU profile preflight (cellfuse/nn/preflight.py): one line per problem, exit 2,
before any training. There is no GPU where these tests run: the device, memory and mmcv
library queries are replaced (monkeypatch), the checkpoint checks are real."""

from __future__ import annotations

import pytest
import torch
from conftest import DEMO

from cellfuse.app.cli import main
from cellfuse.config import load_config, profile_path
from cellfuse.nn import preflight as pf
from cellfuse.nn.preflight import GPU, PreflightError, preflight, require_preflight

GIB = 2**30
H100 = GPU("NVIDIA H100 80GB HBM3", 80 * GIB)


def _ext(tmp_path, cuda: bool):
    lib = tmp_path / ("cuda" if cuda else "cpu") / "_ext.cpython-311-x86_64-linux-gnu.so"
    lib.parent.mkdir(exist_ok=True)
    lib.write_bytes(b"\x7fELF...mmcv ops..." + (pf.CUDA_SYMBOL if cuda else b"") + b"...")
    return lib


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A GPU machine with CUDA mmcv ops; tests change what they need."""

    def set_(gpus=(H100,), cuda_ops=True):
        lib = _ext(tmp_path, cuda_ops)
        monkeypatch.setattr(pf, "visible_gpus", lambda: list(gpus))
        monkeypatch.setattr(pf, "mmcv_ext_library", lambda: lib)
        return lib

    set_()
    return set_


def _full(**options):
    return load_config(profile_path("full"), options or None)


def _lines(problems, level="error"):
    return [p.line for p in problems if p.level == level]


def test_a_good_gpu_machine_passes_with_one_note_on_sam(machine):
    problems = preflight(_full(), "full")
    assert _lines(problems) == []
    assert _lines(problems, "warning") == [
        "warning: profile full: sam: no official checkpoint (checkpoints.sam=PATH): training "
        "sam vit_tiny from scratch instead, 60 min budget"
    ]


def test_no_gpu(machine, monkeypatch):
    machine(gpus=())
    monkeypatch.setattr(pf, "torch_cuda_build", lambda: "13.0")
    assert _lines(preflight(_full(), "full")) == [
        'error: profile full: device "cuda": no CUDA GPU visible (torch built with CUDA 13.0, '
        "torch.cuda.is_available() is False); run it on a GPU machine, or choose a CPU profile "
        "(--profile bench)"
    ]


@pytest.fixture
def no_estimates(monkeypatch):
    """Skip the memory estimates (tests of other lines; each costs seconds)."""
    monkeypatch.setattr(pf, "estimate_bytes", lambda kind, cfg: 0)


def test_cpu_only_mmcv_on_a_gpu_profile(machine, no_estimates):
    lib = machine(cuda_ops=False)
    assert _lines(preflight(_full(), "full")) == [
        f"error: profile full: mmcv's ops ({lib}) were built without CUDA, so Mask R-CNN fails "
        "on the GPU: rebuild with CELLFUSE_MMCV_CUDA=1 bash tools/setup.sh (FORCE_CUDA=1)"
    ]


def test_the_real_mmcv_library_is_read_not_imported():
    lib = pf.mmcv_ext_library()
    if lib is None:
        pytest.skip("mmcv is not installed")
    # this checkout's setup builds the CPU wheel unless it finds a GPU (tools/setup.sh)
    assert pf.has_cuda_kernels(lib) == (torch.cuda.is_available() or pf.has_cuda_kernels(lib))


def test_missing_and_mismatched_sam_checkpoints(machine, tmp_path, no_estimates):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    assert _lines(preflight(_full(**{"checkpoints.sam": str(missing)}), "full")) == [
        f"error: profile full: checkpoints.sam={missing}: file not found (nothing is downloaded)"
    ]
    from teachers.sam_build import build_sam_vit_tiny

    wrong = tmp_path / "tiny.pth"
    torch.save(build_sam_vit_tiny().state_dict(), wrong)  # not the ViT-B the profile names
    [line] = _lines(preflight(_full(**{"checkpoints.sam": str(wrong)}), "full"))
    assert line.startswith(
        f"error: profile full: checkpoints.sam={wrong}: does not fit the sam architecture"
    )
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    [line] = _lines(preflight(_full(**{"checkpoints.sam": str(junk)}), "full"))
    assert line.startswith(
        f"error: profile full: checkpoints.sam={junk}: cannot be read as weights"
    )


def test_a_fitting_sam_checkpoint_loads_by_shape(machine, tmp_path, monkeypatch):
    """Shapes only: a ViT-B state dict with the official shapes fits; and every stage of the
    full profile, ViT-B included, fits one 40 GB GPU by the memory estimate."""
    machine(gpus=(GPU("NVIDIA A100-SXM4-40GB", 40 * GIB),))
    from teachers.sam_build import build_sam_vit_b

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_sam_vit_b().state_dict().items()}
    fake = tmp_path / "sam_vit_b.pth"
    fake.write_bytes(b"360 MB of weights")  # read through _load_state below
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    monkeypatch.setattr(pf, "_load_state", lambda path: state)
    problems = preflight(_full(**{"checkpoints.sam": str(fake)}), "full")
    assert _lines(problems) == [] and _lines(problems, "warning") == []


def test_too_large_batch(machine):
    machine(gpus=(GPU("NVIDIA A10", 4 * GIB),))
    lines = _lines(preflight(_full(), "full"))
    assert lines and all(
        line.startswith("error: profile full: ")
        and "of GPU memory (estimate), the GPU has 4.0 GiB; lower its batch size" in line
        for line in lines
    )
    assert any(
        line.startswith("error: profile full: flowunet: the configured batch needs ~")
        for line in lines
    )


def test_memory_estimate_grows_with_the_batch():
    cfg = load_config("configs/teachers/flowunet_full.py")
    one = pf.estimate_bytes("flowunet", cfg)
    cfg.teacher.batch_size *= 2
    two = pf.estimate_bytes("flowunet", cfg)
    assert 1.6 < two / one < 2.0  # activations double, parameters do not


def test_cpu_profiles_have_no_preflight(monkeypatch):
    monkeypatch.setattr(pf, "visible_gpus", lambda: pytest.fail("a CPU profile asked for GPUs"))
    for profile in ("demo", "bench", "scarce"):
        assert preflight(load_config(profile_path(profile)), profile) == []


def test_cli_and_run_stop_before_training(machine, tmp_path, capsys):
    machine(gpus=(), cuda_ops=False)
    assert main(["check", "--profile", "full"]) == 2
    captured = capsys.readouterr()
    err = [x for x in captured.err.splitlines() if x.startswith(("error:", "warning:"))]
    assert [x.split(":")[0] for x in err] == ["warning", "error", "error"]
    assert "profile full: 2 errors, 1 warnings on this machine" in captured.out
    with pytest.raises(PreflightError) as info:
        require_preflight(_full(), "full")
    assert len(str(info.value).splitlines()) == 2
    assert (
        main(["run", "--input", str(DEMO), "--work", str(tmp_path / "w"), "--profile", "full"]) == 2
    )
    assert not (tmp_path / "w" / "teachers").exists()
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: profile full: mmcv's ops")
