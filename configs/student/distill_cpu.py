# Student distilled from DSB2018 labels + the CPU ensemble's pseudo-labels, on 2 CPU cores.
# Labeled-only ablation: --cfg-options student.pseudo=None (or configs/student/labeled_only_cpu.py).
# The budget is in steps (not minutes) so both runs of the ablation get the same training on a
# shared machine and a re-run with the same seed gives the same student: 3000 steps of 8 crops
# take ~25 min on one core (~0.5 s/step), so the two ablation runs fit side by side in ~30 min.
_base_ = ["../_base_/data_dsb2018.py", "./_base_student.py"]

student = dict(
    pseudo="work/pseudo/pseudo_cpu",  # tools/pseudo_label.py configs/ensemble/pseudo_cpu.py
    max_steps=3000,
    val_every_steps=750,
    num_threads=1,
)
