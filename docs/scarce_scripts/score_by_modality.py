import csv, sys
from pathlib import Path
from cellfuse.io import read_image
from cellfuse.modality import modality
rows = list(csv.DictReader(open(sys.argv[1])))
img = Path("/work/shared/data/dsb2018/val/images")
mods = {}
for r in rows:
    p = next(img.glob(r["image_id"] + ".*"))
    mods.setdefault(modality(read_image(p)), []).append(float(r["f1@0.5"]))
allv = [float(r["f1@0.5"]) for r in rows]
print("all", round(sum(allv) / len(allv), 4), {m: (len(v), round(sum(v) / len(v), 4)) for m, v in mods.items()})
