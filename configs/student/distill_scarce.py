# Student of the scarce-label profile: flow_s, labels + the teachers' pseudo-labels of the
# unlabeled pool. The labeled-only ablation is the same config with student.pseudo=None
# (the pipeline trains both side by side, one thread each). 3000 steps as in the 166-label
# runs (~25 min on one core): the pool is 430-460 images, so the distilled student needs at
# least this budget to see it, and both students get the same one.
_base_ = ["../_base_/data_scarce.py", "./_base_student.py"]

# Both students see a quarter of their crops rendered as stained images, as the flow U-Net
# teacher does (configs/teachers/flowunet_scarce.py).
student = dict(max_steps=3000, val_every_steps=750, num_threads=1, color=dict(stain=0.25))
