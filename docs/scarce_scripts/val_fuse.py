"""Fused predictors of a run on DSB val, with and without the labeled-only student as a voter
(self-training round) and the classical teacher. Measurement only: nothing is chosen here."""
import json, sys
from pathlib import Path
import numpy as np
from cellfuse.config import load_config
from cellfuse.io import read_image, read_labels
from cellfuse.layout import find_label, image_id, list_images
from cellfuse.metric import evaluate_image
from cellfuse.modality import modality
from cellfuse.fusion import fuse
from ensemble.worker import PseudoLabeler
run = Path(sys.argv[1])
truth = Path("/work/shared/data/dsb2018/val/labels")
st = lambda n: json.loads((run / "stages" / f"{n}.json").read_text())
f, c = st("teacher_flowunet"), st("teacher_classical")
cfg = load_config("configs/ensemble/scarce.py")
cfg.teachers = [
    dict(name="flowunet", cfg=f["config"], checkpoint=f["checkpoint"], weight="val_f1"),
    dict(name="classical", cfg=c["config"], checkpoint=c["checkpoint"], weight="val_f1"),
    dict(name="student", cfg=dict(type="student", device="cpu", threads=2),
         checkpoint=str(run / "student_labeled_only"), weight="val_f1"),
]
cfg.refiner = None
lab = PseudoLabeler.from_config(cfg, "/tmp/unused", threads=2)
specs = lab.specs
print({s.name: round(s.weight, 4) for s in specs})
subsets = {
    "flow(4 views)": ["flowunet"],
    "flow+classical (run)": ["flowunet", "classical"],
    "flow+student": ["flowunet", "student"],
    "flow+classical+student": ["flowunet", "classical", "student"],
    "student(4 views)": ["student"],
}
rows = []
for p in list_images(Path("/work/shared/data/dsb2018/val/images")):
    img = read_image(p, allow_constant=True)
    t = read_labels(find_label(truth, image_id(p)), shape=img.shape[:2])
    preds = lab.predict_teachers(img, image_id(p), "-")
    r = {"id": image_id(p), "modality": modality(img)}
    for s, q in zip(specs, preds):
        if "@" not in s.name:
            r[s.name] = evaluate_image(t, q.labels, (0.5, 0.75))["scores"][0.5]["f1"]
    for name, members in subsets.items():
        idx = [i for i, s in enumerate(specs) if s.name.split("@")[0] in members]
        res = fuse([preds[i] for i in idx], [specs[i].weight for i in idx], lab.fusion_predict)
        sc = evaluate_image(t, res.instances.labels, (0.5, 0.75))["scores"]
        r[name] = sc[0.5]["f1"]; r[name + "@0.75"] = sc[0.75]["f1"]
    rows.append(r)
out = {}
for k in [k for k in rows[0] if k not in ("id", "modality")]:
    out[k] = {"all": round(float(np.mean([r[k] for r in rows])), 4)}
    for m in sorted({r["modality"] for r in rows}):
        out[k][m] = round(float(np.mean([r[k] for r in rows if r["modality"] == m])), 4)
print(json.dumps(out, indent=1))
Path(sys.argv[2]).write_text(json.dumps({"run": str(run), "scores": out, "per_image": rows}, indent=1))
