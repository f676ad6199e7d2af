import os
import sys
from pathlib import Path

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
