"""Write flow-U-Net-only re-fused pseudo-labels of a run (all manifest images), same format."""
import json, sys
from pathlib import Path
import numpy as np, tifffile
from cellfuse.config import load_config
from cellfuse.instances import Instances
from cellfuse.io import read_labels, write_labels
from ensemble.fusion import FusionParams, fuse
from ensemble.manifest import Manifest
from ensemble.worker import cache_files
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
params = FusionParams.from_config(load_config("configs/ensemble/scarce.py"))
lines = []
for iid, e in sorted(Manifest(src / "manifest.jsonl").latest().items()):
    if e.get("status") != "ok":
        continue
    preds, w = [], []
    for name, t in e["teachers"].items():
        if name.split("@")[0] != "flowunet":
            continue
        lab, meta = cache_files(src, name, iid)
        preds.append(Instances(read_labels(lab), np.asarray(json.loads(meta.read_text())["scores"], np.float32)))
        w.append(float(t["weight"]))
    r = fuse(preds, w, params)
    (out / f"{iid}_conf.json").write_text(json.dumps({"id": iid, "scores": [round(float(x), 5) for x in r.instances.scores], "stats": r.stats}))
    tifffile.imwrite(out / f"{iid}_ignore.tiff", r.ignore.astype(np.uint8), compression="zlib", metadata=None)
    write_labels(out / f"{iid}_label.tiff", r.instances.labels)
    lines.append(json.dumps({**e, "teachers": {k: v for k, v in e["teachers"].items() if k.startswith("flowunet")}}))
(out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
print(len(lines))
