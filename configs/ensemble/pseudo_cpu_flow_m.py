# The CPU ensemble (pseudo_cpu.py) plus the big long-trained flow teacher
# (configs/student/flow_m_teacher_cpu.py), which votes in 4 test-time views.
_base_ = ["./pseudo_cpu.py"]

extra_teachers = [
    dict(
        name="flow_m",
        cfg=dict(type="student", device="cpu", threads=1),
        checkpoint="work/teachers/flow_m_teacher",
        weight="val_f1",
        views=["hflip", "vflip", "rot180"],
    ),
]
