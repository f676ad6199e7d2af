# Knowledge distillation from the big flow teacher (configs/student/flow_m_teacher_cpu.py):
# the same student and 3000-step budget as distill_cpu.py / labeled_only_cpu.py, with
# - its fused pseudo-labels of the 299 unlabeled images (hard targets, confidence-weighted;
#   tools/pseudo_label.py configs/ensemble/pseudo_flow_m.py --out work/pseudo/pseudo_flow_m),
# - its output maps on every training crop as soft targets (student.soft_teacher).
_base_ = ["./distill_cpu.py"]

student = dict(
    pseudo="work/pseudo/pseudo_flow_m",
    soft_teacher="work/teachers/flow_m_teacher",
    soft_weight=1.0,
)
