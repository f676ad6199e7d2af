# Full profile (GPU): the larger variant, bigger crops and batches, longer schedule.
_base_ = ["./distill_cpu.py"]

student = dict(
    variant="flow_m",
    crop=256,
    batch_size=32,
    lr=4e-3,
    train_minutes=90.0,
    val_every_minutes=10.0,
    batch=16,
    num_threads=4,
    device="auto",
)
