# Student on the embedded demo set with the demo ensemble's pseudo-labels: minutes on 2 CPU cores.
# python tools/pseudo_label.py configs/ensemble/pseudo_demo.py && python tools/distill.py THIS
_base_ = ["../_base_/data_demo.py", "./_base_student.py"]

student = dict(
    variant="flow_xs",
    pseudo="work/pseudo/pseudo_demo",
    crop=128,
    max_steps=600,  # steps, not minutes: the same student on any machine (~2.5 min here)
    val_every_steps=200,
    num_threads=1,
)
