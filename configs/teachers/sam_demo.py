# SAM teacher on the embedded demo set: vit_tiny for a few minutes on 2 CPU cores.
_base_ = ["../_base_/data_demo.py"]

teacher = dict(
    type="sam",
    variant="vit_tiny",
    nominal_diameter=20.0,
    tile_overlap=48,
    iou_thresh=0.5,
    # Steps, not minutes: the demo trains the same on a busy or a quiet machine (~3 min quiet).
    train=dict(
        max_steps=500,
        val_every_steps=250,
        time_budget_min=20.0,  # safety cap only
        val_max_images=6,
        calibrate_images=10,
        num_threads=2,
    ),
)
