# Self-training, round 2: the CPU ensemble plus the labeled-only student of round 1
# (configs/student/labeled_only_cpu.py, val F1@0.5 0.864, better than every teacher), whose
# pseudo-labels train the next student (configs/student/distill_selftrain_cpu.py).
_base_ = ["./pseudo_cpu.py"]

teachers = [
    dict(
        name="flowunet",
        cfg="configs/teachers/flowunet_cpu.py",
        checkpoint="work/teachers/flowunet_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="maskrcnn",
        cfg="configs/teachers/maskrcnn_r18_gn_cpu.py",
        checkpoint="work/teachers/maskrcnn_r18_gn_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="sam",
        cfg="configs/teachers/sam_tiny_cpu.py",
        checkpoint="work/teachers/sam_tiny_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="classical",
        cfg=dict(type="classical", sigma=1.0, min_distance=7),
        checkpoint=None,
        weight=0.77,
    ),
    dict(
        name="student",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/student/labeled_only_cpu",
        weight="val_f1",
    ),
]
