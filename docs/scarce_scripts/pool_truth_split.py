"""Truth folders per modality for the pool's train images of a scarce input (analysis only).

    python docs/scarce_scripts/pool_truth_split.py work/scarce/shift /work/ceil/shift
    python tools/eval_pseudo.py WORK/pseudo /work/ceil/shift/stained
"""
import json, sys
from pathlib import Path
from cellfuse.io import read_image
from cellfuse.layout import image_id, list_images
from cellfuse.modality import modality
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
labeled = set(json.loads((inp / "split.json").read_text())["labeled"])
src = Path("/work/shared/data/dsb2018/train")
for p in list_images(src / "images"):
    i = image_id(p)
    if i in labeled:
        continue
    m = modality(read_image(p))
    for d in ("all", m):
        (out / d).mkdir(parents=True, exist_ok=True)
        lab = src / "labels" / f"{i}_label.tiff"
        (out / d / lab.name).unlink(missing_ok=True)
        (out / d / lab.name).symlink_to(lab)
print({d.name: len(list(d.iterdir())) for d in out.iterdir()})
