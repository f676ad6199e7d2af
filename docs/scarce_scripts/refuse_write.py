"""Write flow-U-Net-only re-fused pseudo-labels of a run (all manifest images), same format."""
import json, sys
from pathlib import Path
from cellfuse.config import load_config
from cellfuse.fusion import FusionParams
from ensemble.manifest import Manifest
from ensemble.outputs import output_hashes
from ensemble.quality import keeps_teacher, refuse_from_cache
from ensemble.worker import write_pseudo_outputs
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
params = FusionParams.from_config(load_config("configs/ensemble/scarce.py"))
keep = ["flowunet"]
lines = []
for iid, e in sorted(Manifest(src / "manifest.jsonl").latest().items()):
    if e.get("status") != "ok":
        continue
    r = refuse_from_cache(src, e, params, keep)
    write_pseudo_outputs(out, iid, e.get("config_hash", ""), r)
    teachers = {k: v for k, v in e["teachers"].items() if keeps_teacher(k, keep)}
    lines.append(json.dumps({**e, "teachers": teachers, "outputs": output_hashes(out, iid)}))
(out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
print(len(lines))
