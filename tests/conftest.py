import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
DEMO = ROOT / "data" / "demo"


def _shared_data() -> Path:
    """The project's shared data: $CELLFUSE_SHARED_DATA, else ../shared/data beside the repo."""
    if os.environ.get("CELLFUSE_SHARED_DATA"):
        return Path(os.environ["CELLFUSE_SHARED_DATA"])
    for cand in (ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    return ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data()


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray with 2 CPUs whose workers import the repo and this folder (helpers)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix="cfray", dir="/tmp")  # short: Ray's socket paths are limited
    path = os.pathsep.join([str(ROOT), str(Path(__file__).parent)])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}},
        logging_level="WARNING",
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A flow_xs student trained for 150 steps on 8 demo images (enough to find some cells;
    the cell diameter is fixed at 12 px, so every image is resized by 17/12), and its ONNX
    export."""
    from cellfuse.layout import list_samples
    from student.distill import StudentTrainer
    from student.export import export_student

    root = tmp_path_factory.mktemp("student")
    trainer = StudentTrainer(
        variant="flow_xs",
        max_steps=150,
        crop=128,
        batch_size=4,
        lr=3e-3,
        num_threads=1,
        device="cpu",
        postprocess=dict(min_size=4),
        seed=0,
    )
    samples = list_samples(DEMO / "train", require_labels=True)[:8]
    ckpt = trainer.fit(samples, [], root / "work")
    res = export_student(ckpt, root / "export", program=False)
    return ckpt, res["onnx"]
