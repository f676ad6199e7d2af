# Flow U-Net teacher, CPU profile: ~0.48 M parameters, ~28 min wall on 2 CPU cores (DSB2018).
_base_ = ["../_base_/data_dsb2018.py"]

teacher = dict(
    type="flowunet",
    net=dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu"),
    nominal_diameter=17.0,  # cells are resized to this diameter (px) before the network
    crop=160,
    batch_size=8,
    lr=2e-3,
    weight_decay=1e-4,
    train_minutes=24.0,  # training-step time; validation and flow targets come on top
    val_every_minutes=8.0,
    flow_iters=100,
    flow_threshold=0.4,
    prob_threshold=0.5,
    min_size=15,
    tile=512,
    overlap=96,
    num_threads=0,  # 0 = choose 1 or 2 threads by timing (the machine is shared)
)
