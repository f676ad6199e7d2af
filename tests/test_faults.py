"""Fault tests on the real engine (Ray, the classical ensemble slowed to ~0.8 s per image):
a killed driver and a lost Ray node (its raylet killed) each end promptly, and the same command
re-run resumes to outputs byte-identical to an uninterrupted run. The killed worker:
``test_pseudolabel.py::test_killed_worker_is_replaced_and_its_image_rerun``.

Each run is ``tests/fault_driver.py`` in a subprocess that starts its own Ray and kills the
driver / its raylet from a thread once enough images are in the manifest.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray  # noqa: F401 - a dev install has it: missing fails, not skips
from conftest import DEMO, ROOT

from ensemble.pseudolabel import Manifest

HERE = Path(__file__).resolve().parent
N_IMAGES = 6


def _driver(images, out, *args):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        "RAY_AUTH_MODE": "disabled",
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(HERE / "fault_driver.py"), str(images), str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    return proc, time.monotonic() - t0


def _files(out: Path) -> dict[str, bytes]:
    """Every output file's bytes (the teacher cache included), manifest and run logs aside."""
    skip = {"manifest.jsonl", "last_run.json"}
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in skip and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The images and an uninterrupted run's outputs (serial, in this process: the same
    bytes as a Ray run, see test_pseudolabel.py)."""
    from fault_driver import config

    from ensemble.pseudolabel import run_pseudo_label

    root = tmp_path_factory.mktemp("faults")
    images = root / "images"
    images.mkdir()
    src = sorted((DEMO / "unlabeled/images").glob("*.png"), key=lambda p: p.stat().st_size)
    for p in src[:N_IMAGES]:
        shutil.copy(p, images / p.name)
    res = run_pseudo_label(config(), images, root / "ref", num_workers=0, progress=False)
    assert res["done"] == N_IMAGES
    return images, _files(root / "ref")


def test_killed_driver_resumes_to_identical_outputs(reference, tmp_path):
    images, ref = reference
    out = tmp_path / "out"
    killed, _ = _driver(images, out, "--kill", "driver", "--after", "2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    before = len(Manifest(out / "manifest.jsonl").latest())
    assert 2 <= before < N_IMAGES
    resumed, _ = _driver(images, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert summary["skipped"] == before and summary["done"] == N_IMAGES - before
    assert _files(out) == ref


@pytest.mark.parametrize("what", ["raylet", pytest.param("agent", marks=pytest.mark.slow)])
def test_lost_node_stops_promptly_and_resumes_to_identical_outputs(reference, tmp_path, what):
    images, ref = reference
    out = tmp_path / "out"
    stopped, seconds = _driver(images, out, "--kill", what, "--after", "2")
    err = stopped.stderr.strip().splitlines()
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    assert err[-1] == (
        "error: pseudo-labelling stopped: Ray node lost (the local raylet exited); "
        "re-run the same command to resume (finished images are kept)"
    )
    latency = float(next(x for x in err if x.startswith("stopped ")).split()[1])
    assert latency < 60, latency  # measured here: ~2-6 s (the check runs every 5 s)
    done = len(Manifest(out / "manifest.jsonl").latest())
    resumed, _ = _driver(images, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert summary["skipped"] == done and summary["done"] == N_IMAGES - done
    assert _files(out) == ref


class _FakeRay:
    """Just what NodeWatch calls: the node table and a wait that never gets a result."""

    def __init__(self, nodes, hang=False):
        self._nodes, self.hang = nodes, hang

    def get_runtime_context(self):
        return type("Ctx", (), {"get_node_id": lambda self: "n1" * 14})()

    def nodes(self):
        if self.hang:
            time.sleep(30)
        return self._nodes

    def wait(self, refs, num_returns, timeout):
        time.sleep(timeout)
        return [], refs


@pytest.mark.parametrize(
    "nodes, hang, why",
    [
        ([{"NodeID": "n1" * 14, "Alive": False, "Resources": {"CPU": 2}}], False, "is dead"),
        ([{"NodeID": "n1" * 14, "Alive": True, "Resources": {}}], False, "no alive node with CPUs"),
        ([], True, "did not answer a node query within 0.2 s"),
    ],
)
def test_node_watch_never_waits_on_a_lost_node(nodes, hang, why):
    from ensemble.liveness import NodeLostError, NodeWatch

    watch = NodeWatch(_FakeRay(nodes, hang), owns=False, poll=0.1, query_timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(NodeLostError, match=why) as info:
        watch.wait(["ref"])
    assert time.monotonic() - t0 < 2 and str(info.value).endswith(
        "re-run the same command to resume (finished images are kept)"
    )


def test_node_watch_passes_a_live_cluster():
    from ensemble.liveness import NodeWatch

    alive = [
        {"NodeID": "n1" * 14, "Alive": True, "Resources": {"CPU": 2}},
        {"NodeID": "n2" * 14, "Alive": False, "Resources": {"CPU": 8}},  # another node died
    ]
    NodeWatch(_FakeRay(alive), owns=False).check()
