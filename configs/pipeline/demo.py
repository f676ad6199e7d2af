# `cellfuse run --profile demo`: the whole pipeline on the embedded demo set in minutes on
# 2 CPU cores. Each stage names its own config; the run overrides data.root with --input.
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_demo.py"),
    dict(name="maskrcnn", config="configs/teachers/maskrcnn_demo.py"),
    dict(name="sam", config="configs/teachers/sam_demo.py"),
]
# The classical Otsu + watershed baseline joins the vote (no training, weight = its val F1).
classical_teacher = dict(name="classical", cfg=dict(type="classical"), weight=0.77)
# SAM refines the other teachers' cells (their merged centroids are its prompts).
refiner = "sam"
ensemble = "configs/ensemble/_base_ensemble.py"
student = "configs/student/distill_demo.py"
# Unlabeled pool: <input>/unlabeled/images when present; the test images too when
# transductive is True, or when no unlabeled folder exists and it is "auto".
unlabeled = dict(folders=["unlabeled/images"], transductive="auto")
num_workers = 2
seed = 0
