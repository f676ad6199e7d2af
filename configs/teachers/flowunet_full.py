# Flow U-Net teacher, GPU-sized profile: a wider residual U-Net trained longer.
_base_ = ["./flowunet_cpu.py"]

teacher = dict(
    net=dict(widths=(32, 64, 128, 256), depth=2, norm="batch", act="relu", residual=True),
    nominal_diameter=24.0,
    crop=224,
    batch_size=16,
    lr=1e-3,
    train_minutes=240.0,
    val_every_minutes=20.0,
    flow_iters=200,
    tile=1024,
    overlap=128,
    num_threads=16,  # CPU threads (flow-following, augmentation)
    device="auto",  # CUDA when available
)
