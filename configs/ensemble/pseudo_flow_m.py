# Pseudo-labels from one strong teacher: the big long-trained flow network
# (configs/student/flow_m_teacher_cpu.py -> work/teachers/flow_m_teacher) voting in 4 test-time
# views (itself, h/v flips, rot180). For the distillation of configs/student/distill_soft_cpu.py.
_base_ = ["../_base_/data_dsb2018.py", "./_base_ensemble.py"]

teachers = [
    dict(
        name="flow_m",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/teachers/flow_m_teacher",
        weight="val_f1",
    ),
]
views = ["hflip", "vflip", "rot180"]
pseudo = dict(num_workers=2)
