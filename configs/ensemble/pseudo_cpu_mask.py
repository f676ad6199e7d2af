# pseudo_cpu.py with the mask-prompt SAM as the refiner (configs/teachers/sam_tiny_mask_cpu.py):
# SAM gets each merged cell's centroid, box and mask, and answers with a corrected mask.
# Measured on val (README): it does not help here, fused predictor 0.849 / 0.722 vs 0.854 / 0.728
# with the point-prompt SAM: the merged prompt of a cluster is the union of its members' masks
# and includes cells only one teacher saw, while alone on the flow U-Net's cells this SAM gains.
_base_ = ["./pseudo_cpu.py"]

teachers = [
    dict(
        name="flowunet",
        cfg="configs/teachers/flowunet_cpu.py",
        checkpoint="work/teachers/flowunet_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="maskrcnn",
        cfg="configs/teachers/maskrcnn_r18_gn_cpu.py",
        checkpoint="work/teachers/maskrcnn_r18_gn_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="sam",
        cfg="configs/teachers/sam_tiny_mask_cpu.py",
        checkpoint="work/teachers/sam_tiny_mask_cpu",
        weight="val_f1",
        optional=True,
    ),
    dict(
        name="classical",
        cfg=dict(type="classical", sigma=1.0, min_distance=7),
        checkpoint=None,
        weight=0.77,
    ),
]
