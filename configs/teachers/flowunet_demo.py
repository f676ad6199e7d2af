# Flow U-Net teacher on the embedded demo set: a few minutes on 2 CPU cores.
_base_ = ["../_base_/data_demo.py"]

teacher = dict(
    type="flowunet",
    net=dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu"),
    nominal_diameter=17.0,
    crop=128,
    batch_size=8,
    lr=2e-3,
    train_minutes=3.0,
    val_every_minutes=1.5,
    flow_iters=100,
    num_threads=0,  # 0 = choose 1 or 2 threads by timing (the machine is shared)
)
