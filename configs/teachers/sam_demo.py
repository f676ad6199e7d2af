# SAM teacher on the embedded demo set: vit_tiny for a few minutes on 2 CPU cores.
_base_ = ["../_base_/data_demo.py"]

teacher = dict(
    type="sam",
    variant="vit_tiny",
    nominal_diameter=20.0,
    tile_overlap=48,
    iou_thresh=0.5,
    train=dict(time_budget_min=3.0, val_every_min=1.5, val_max_images=6, num_threads=2),
)
