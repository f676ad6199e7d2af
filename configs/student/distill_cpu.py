# Student distilled from DSB2018 labels + the CPU ensemble's pseudo-labels, on 2 CPU cores.
# Labeled-only ablation: --cfg-options student.pseudo=None (or configs/student/labeled_only_cpu.py).
_base_ = ["../_base_/data_dsb2018.py", "./_base_student.py"]

student = dict(
    pseudo="work/pseudo/pseudo_cpu",  # tools/pseudo_label.py configs/ensemble/pseudo_cpu.py
    train_minutes=24.0,
    val_every_minutes=6.0,
)
