# Demo profile: the CPU model for a few minutes on the embedded demo set (checks the wiring, not accuracy).
_base_ = ["./_base_maskrcnn.py", "../_base_/data_demo.py"]

max_iters = 40
train_dataloader = dict(dataset=dict(data_root="data/demo"))
val_dataloader = dict(dataset=dict(data_root="data/demo", split="train"))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(
        type="CosineAnnealingLR",
        T_max=max_iters - 10,
        eta_min=1e-5,
        by_epoch=False,
        begin=10,
        end=max_iters,
    ),
]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters))
