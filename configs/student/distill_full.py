# Full profile (GPU): the larger variant, bigger crops and batches, longer schedule.
# Two students (distilled and labeled-only) train side by side on the one GPU: batch 32 of
# 256 px crops each under bf16 autocast; preflight estimates ~15 GiB for both in fp32.
# Expected wall time (an estimate, not measured): 90 min of training steps + validation
# every 10 min (~1 min each) + pseudo-label targets (~5 min): ~1.8 h, both students at once.
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
    amp="bf16",
)
