"""tools/setup.sh's CUDA_HOME wrapper for the CUDA mmcv build, on a fake toolkit.

`nvcc` on PATH is often not the toolkit's own binary: here it is a shell shim in
/usr/local/bin (`exec /usr/local/cuda-13.0/bin/nvcc "$@"`). Resolving it by readlink gave
/usr/local as the toolkit, so the host compile of mmcv's info.cpp found no CUDA headers on its
-I path (issue 22's failed build). The wrapper now asks nvcc for its TOP.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _functions() -> str:
    text = (ROOT / "tools" / "setup.sh").read_text()
    start = text.index("write_cuda_home() {")
    return text[start : text.index("\n}\n", start) + 3]


def _fake_toolkit(tmp_path: Path, headers: bool = True) -> tuple[Path, Path]:
    kit = tmp_path / "cuda-13.0"
    (kit / "bin").mkdir(parents=True)
    (kit / "include").mkdir()
    if headers:
        (kit / "include" / "cuda_runtime_api.h").write_text("/* fake */\n")
    real = kit / "bin" / "nvcc"
    # like nvcc --dryrun: the toolkit's TOP on stderr; otherwise echo the arguments
    real.write_text(
        '#!/bin/sh\ncase "$*" in *--dryrun*) echo "#\\$ TOP=$(dirname "$0")/.." >&2;; '
        '*) echo "real nvcc $*";; esac\n'
    )
    real.chmod(0o755)
    shim_dir = tmp_path / "usr_local_bin"
    shim_dir.mkdir()
    (shim_dir / "nvcc").write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    (shim_dir / "nvcc").chmod(0o755)
    return kit, shim_dir


def _write_cuda_home(tmp_path: Path, shim_dir: Path) -> subprocess.CompletedProcess:
    script = 'log() { echo "$*"; }\n' + _functions() + f'write_cuda_home "{tmp_path}/home"\n'
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "NVCC")}
    env["PATH"] = f"{shim_dir}:{env['PATH']}"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


def test_cuda_home_behind_a_shell_shim_is_the_toolkit(tmp_path):
    kit, shim_dir = _fake_toolkit(tmp_path)
    res = _write_cuda_home(tmp_path, shim_dir)
    assert res.returncode == 0, res.stderr
    home = tmp_path / "home"
    assert (home / "include").resolve() == kit / "include"
    assert (home / "include" / "cuda_runtime_api.h").is_file()
    # the wrapper rewrites -std=c++17 and runs the toolkit's own nvcc
    out = subprocess.run(
        [home / "bin" / "nvcc", "-std=c++17", "-c", "x.cu"], capture_output=True, text=True
    ).stdout
    assert out.strip() == "real nvcc -std=c++20 -c x.cu"


def test_a_toolkit_without_headers_is_one_line(tmp_path):
    kit, shim_dir = _fake_toolkit(tmp_path, headers=False)
    res = _write_cuda_home(tmp_path, shim_dir)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: no CUDA toolkit headers in {kit}/include (from {shim_dir}/nvcc); "
        "set CUDA_HOME to the toolkit"
    ]


def _check_wheel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "check_mmcv_wheel.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_mmcv_wheel_without_a_wheel_is_one_line(tmp_path):
    res = _check_wheel(str(tmp_path / "missing.whl"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: no wheel at {tmp_path / 'missing.whl'} "
        "(build one: CELLFUSE_MMCV_CUDA=1 bash tools/setup.sh --mmcv-wheel)"
    ]


def test_check_mmcv_wheel_reads_the_cached_cpu_wheel_as_cpu():
    """setup.sh caches the CPU wheel it installed; the check must read it as CPU-only and
    still import mmcv.ops from it and run an op."""
    wheels = Path(os.environ.get("CELLFUSE_WHEELS", Path.home() / ".cache/cellfuse/wheels"))
    cached = sorted(wheels.glob("onedl_mmcv-*.whl"))
    if not cached:
        pytest.skip(f"no CPU mmcv wheel cached in {wheels} (tools/setup.sh puts it there)")
    res = _check_wheel(str(cached[0]))
    assert res.returncode == 0, res.stderr
    assert "section: no CUDA fat binary" in res.stdout
    assert "has_cuda_kernels: False" in res.stdout
    assert "nms on CPU tensors keeps [0, 2]" in res.stdout
