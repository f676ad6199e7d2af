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
