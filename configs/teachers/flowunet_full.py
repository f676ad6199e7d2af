# Flow U-Net teacher, GPU-sized profile: a wider residual U-Net trained longer.
# Sized for one 40-80 GB GPU: batch 32 of 256 px crops under bf16 autocast; preflight
# estimates ~17 GiB in fp32 (cellfuse/nn/preflight.py), so it fits a 40 GB card.
# Expected wall time (an estimate, not measured): 240 min of training steps + validation
# every 20 min (~1 min each on DSB-sized val sets) + flow targets (~2 min): ~4.3 h. The
# budget is in minutes, so a faster GPU trains more steps in the same time, not sooner.
_base_ = ["./flowunet_cpu.py"]

teacher = dict(
    net=dict(widths=(32, 64, 128, 256), depth=2, norm="batch", act="relu", residual=True),
    nominal_diameter=24.0,
    crop=256,
    batch_size=32,
    lr=1.5e-3,  # 1e-3 at batch 16, scaled by sqrt(2) for batch 32
    train_minutes=240.0,
    val_every_minutes=20.0,
    flow_iters=200,
    tile=1024,
    overlap=128,
    num_threads=16,  # CPU threads (flow-following, augmentation)
    device="auto",  # CUDA when available (the full profile's preflight requires it)
    amp="bf16",  # bf16 autocast on GPUs that have it (Ampere and later); fp32 elsewhere
)
