# Self-training, round 2: the CPU ensemble plus the labeled-only student of round 1
# (configs/student/labeled_only_cpu.py, val F1@0.5 0.864, better than every teacher), whose
# pseudo-labels train the next student (configs/student/distill_selftrain_cpu.py).
_base_ = ["./pseudo_cpu.py"]

extra_teachers = [
    dict(
        name="student",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/student/labeled_only_cpu",
        weight="val_f1",
    ),
]
