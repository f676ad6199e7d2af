# Self-training round 2: the same student and budget as distill_cpu.py, with the pseudo-labels
# of the ensemble that includes the round-1 labeled-only student
# (tools/pseudo_label.py configs/ensemble/pseudo_cpu_selftrain.py --out work/pseudo/pseudo_selftrain).
_base_ = ["./distill_cpu.py"]

student = dict(pseudo="work/pseudo/pseudo_selftrain")
