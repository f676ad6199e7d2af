# Noisy-student ablation: the same student and budget as distill_cpu.py, with the pseudo-labels
# of the labeled-only student alone
# (tools/pseudo_label.py configs/ensemble/pseudo_student_only.py --out work/pseudo/pseudo_student_only).
_base_ = ["./distill_cpu.py"]

student = dict(pseudo="work/pseudo/pseudo_student_only")
