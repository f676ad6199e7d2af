# A big, long-trained flow network used as a *teacher*: the student's code with the largest
# variant (flow_m, 0.40 M parameters) on the labeled images only, for 8000 steps on 2 threads
# (86 min measured; val 0.870 / 0.758). Distillation can only beat the labeled-only student
# (labeled_only_cpu.py, 3000 steps of flow_s) with a teacher clearly better than it; this is
# the best such teacher measured here, in the ensemble as a `type="student"` entry
# (configs/ensemble/pseudo_flow_m.py) and a soft teacher (configs/student/distill_soft_cpu.py).
_base_ = ["./labeled_only_cpu.py"]

student = dict(variant="flow_m", max_steps=8000, val_every_steps=2000, num_threads=2)
