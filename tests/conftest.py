import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
DEMO = ROOT / "data" / "demo"
SHARED_DATA = ROOT.parent / "shared" / "data"
