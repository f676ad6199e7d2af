# SAM teacher on the embedded demo set: vit_tiny for a few minutes on 2 CPU cores.
_base_ = ["../_base_/data_demo.py"]

teacher = dict(
    type="sam",
    variant="vit_tiny",
    nominal_diameter=20.0,
    tile_overlap=48,
    iou_thresh=0.3,  # the tiny IoU head is shy early in training
    # Steps, not minutes: the demo trains the same on a busy or a quiet machine (~3 min quiet).
    # Masks appear after ~600 steps (focal loss learns the background first): 1000 steps.
    train=dict(
        max_steps=1000,
        val_every_steps=500,
        lr=6e-4,
        warmup_steps=200,
        time_budget_min=20.0,  # safety cap only
        val_max_images=6,
        calibrate_images=10,
        num_threads=2,
    ),
)
