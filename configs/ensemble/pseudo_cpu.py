# The CPU ensemble on DSB2018: the teachers trained by configs/teachers/*_cpu.py plus the
# classical baseline. `checkpoint` may be a training work dir: its result.json names the
# checkpoint and holds the val F1 used as the weight. Teachers marked optional are left out
# (with a warning) until they are trained.
_base_ = ["../_base_/data_dsb2018.py", "./_base_ensemble.py"]

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
        cfg="configs/teachers/sam_tiny_cpu.py",
        checkpoint="work/teachers/sam_tiny_cpu",
        weight="val_f1",
        optional=True,
    ),
    # The classical teacher needs no checkpoint; weight = its val F1@0.5 (0.77, measured).
    dict(
        name="classical",
        cfg=dict(type="classical", sigma=1.0, min_distance=7),
        checkpoint=None,
        weight=0.77,
    ),
]
# SAM refines the other teachers' cells: their merged centroids are its prompts.
refiner = "sam"
pseudo = dict(num_workers=2)
