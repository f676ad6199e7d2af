"""Self-training round at N: the run's flow U-Net (cached outputs reused) + the run's
labeled-only student, each in 4 views, no classical teacher; the scarce ensemble's fusion."""
import json, sys
from pathlib import Path
from cellfuse.config import load_config
from cellfuse.layout import list_images
from ensemble.pseudolabel import run_pseudo_label
run, out = Path(sys.argv[1]), Path(sys.argv[2])
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
inp = Path(json.loads((run / "run.json").read_text())["input"]) if (run / "run.json").is_file() else None
rec = json.loads((run / "stages" / "teacher_flowunet.json").read_text())
cfg = load_config("configs/ensemble/scarce.py")
cfg.teachers = [
    dict(name="flowunet", cfg=rec["config"], checkpoint=rec["checkpoint"], weight="val_f1"),
    dict(name="student", cfg=dict(type="student", device="cpu", threads=1),
         checkpoint=str(run / "student_labeled_only"), weight="val_f1"),
]
cfg.refiner = None
images = list_images(Path(sys.argv[4]) if len(sys.argv) > 4 else inp / "unlabeled" / "images")
if limit:
    images = images[:limit]
print(run_pseudo_label(cfg, images, out, num_workers=2))
