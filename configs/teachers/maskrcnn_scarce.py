# Mask R-CNN teacher for the scarce-label profile with a third model family
# (configs/pipeline/scarce_maskrcnn.py): the CPU R18-GN-FPN model on the run's labeled
# images (6-26 after the hold-out). 1200 iterations, the flow U-Net teacher's budget
# (flowunet_scarce.py: a few hundred cells saturate early), validated at 400/800/1200 on the
# held-out images, best kept; ~20-25 min on 2 cores.
_base_ = ["./_base_maskrcnn.py", "../_base_/data_scarce.py"]

max_iters = 1200
train_cfg = dict(max_iters=max_iters, val_interval=400)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type="CosineAnnealingLR",
        T_max=max_iters - 100,
        eta_min=1e-5,
        by_epoch=False,
        begin=100,
        end=max_iters,
    ),
]
