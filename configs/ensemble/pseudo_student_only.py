# Noisy-student ablation: the labeled-only student (configs/student/labeled_only_cpu.py, val
# F1@0.5 0.864, better than every teacher) pseudo-labels the unlabeled pool alone; its
# confident cells (score >= fusion.hi) train the next student (configs/student/distill_noisy_cpu.py).
_base_ = ["./pseudo_cpu_selftrain.py"]

teachers = []  # only the inherited extra teacher, the student
refiner = None
pseudo = dict(num_workers=1)
