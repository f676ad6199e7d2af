# Noisy-student ablation: the labeled-only student (configs/student/labeled_only_cpu.py, val
# F1@0.5 0.864, better than every teacher) pseudo-labels the unlabeled pool alone; its
# confident cells (score >= fusion.hi) train the next student (configs/student/distill_noisy_cpu.py).
_base_ = ["../_base_/data_dsb2018.py", "./_base_ensemble.py"]

teachers = [
    dict(
        name="student",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/student/labeled_only_cpu",
        weight="val_f1",
    ),
]
pseudo = dict(num_workers=1)
