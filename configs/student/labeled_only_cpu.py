# The ablation of distill_cpu.py: the same student and budget, labeled images only.
_base_ = ["./distill_cpu.py"]

student = dict(pseudo=None)
