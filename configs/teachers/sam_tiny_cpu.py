# SAM teacher, CPU profile: vit_tiny (~1.6 M parameters) trained from scratch, ~30 min on
# 2 CPU cores (DSB2018). Prompted by the other teachers' centroids at inference.
_base_ = ["../_base_/data_dsb2018.py"]

teacher = dict(
    type="sam",
    variant="vit_tiny",  # 128 px input, 8 px patches, 6 blocks; see teachers/sam_build.py
    checkpoint=None,
    nominal_diameter=20.0,  # images are zoomed so the median prompt cell is this wide (px)
    tile_overlap=48,  # encoder tiles overlap (zoomed px); must exceed the largest cell
    multimask=False,  # one mask per prompt (the single-mask token)
    neg_points=0,  # nearest other prompts as negative points at inference
    iou_thresh=0.3,  # drop masks whose predicted IoU is lower (the tiny IoU head is shy)
    min_area=8,
    merge_radius=3.0,
    prompt_batch=64,
    # prompt_teacher=dict(cfg="configs/teachers/flowunet_cpu.py",
    #                     checkpoint="work/teachers/flowunet_cpu/best.pth"),
    train=dict(
        time_budget_min=27.0,  # wall clock, validations included
        lr=6e-4,
        weight_decay=0.01,
        warmup_steps=200,
        crops_per_step=4,
        prompts_per_crop=16,
        jitter=0.2,
        neg_points=2,
        neg_prob=0.5,
        box_prob=0.0,
        scale_jitter=0.3,
        val_every_min=9.0,
        val_max_images=None,
        num_threads=2,
    ),
)
