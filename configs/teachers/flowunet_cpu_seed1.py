# A second flow U-Net teacher for the ensemble: flowunet_cpu.py with another seed (other
# initial weights, crops and augmentations), the same 1050 steps the first one reached in its
# 24 min, on 2 threads. Members of a deep ensemble err in different places.
_base_ = ["./flowunet_cpu.py"]

teacher = dict(seed=1, max_steps=1050, val_every_steps=350, num_threads=2)
