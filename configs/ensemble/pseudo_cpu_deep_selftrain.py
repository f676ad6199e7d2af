# pseudo_cpu_deep.py plus the labeled-only student as a teacher (self-training, round 2).
_base_ = ["./pseudo_cpu_deep.py"]

extra_teachers = [
    dict(
        name="flowunet_s1",
        cfg="configs/teachers/flowunet_cpu_seed1.py",
        checkpoint="work/teachers/flowunet_cpu_seed1",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="student",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/student/labeled_only_cpu",
        weight="val_f1",
    ),
]
