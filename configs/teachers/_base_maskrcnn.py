# Mask R-CNN for nuclei/cells through MMDetection, sized for CPU training from scratch.
# Shared by the maskrcnn_* configs; a leaf config adds a data base and holds only what differs.
# Nothing here downloads: backbone init_cfg=None, load_from=None.
_base_ = [
    "mmdet::_base_/models/mask-rcnn_r50_fpn.py",
    "mmdet::_base_/default_runtime.py",
]
custom_imports = dict(imports=["teachers.mmdet_plugins"], allow_failed_imports=False)

# cellfuse teacher: score_thr cuts detections (None: the cut chosen on val by CellF1Metric,
# stored in the checkpoint); images above `tile` px (original resolution) go in tiles. mmdet
# pastes each detection's mask at full tile size (N x tile^2 bool), so `tile` bounds memory;
# 1536 keeps every DSB image (<= 1040x1388) whole: tiles overlap, which costs time.
teacher = dict(
    type="maskrcnn",
    score_thr=None,
    min_visible=0.5,
    min_size=4,
    tile=1536,
    overlap=128,
    num_threads=2,
)

# GroupNorm everywhere (batches of 2 crops are too small for BatchNorm when training from scratch)
norm_cfg = dict(type="GN", num_groups=16, requires_grad=True)
base_channels = 32  # half-width ResNet-18: 32-64-128-256 channels
fpn_channels = 64
model = dict(
    # images arrive RGB, percentile-normalised to 0..255 (teachers.mmdet_plugins.prepare_image)
    data_preprocessor=dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], bgr_to_rgb=False),
    backbone=dict(
        depth=18,
        base_channels=base_channels,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        zero_init_residual=False,
        init_cfg=None,
    ),
    neck=dict(
        in_channels=[base_channels * 2**i for i in range(4)],
        out_channels=fpn_channels,
        norm_cfg=norm_cfg,
    ),
    rpn_head=dict(
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        # anchors 16..256 px at 3 ratios: nuclei are 8-60 px, seen at 2x
        anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(
            type="Shared4Conv1FCBBoxHead",
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            fc_out_channels=512,
            norm_cfg=norm_cfg,
            num_classes=1,
        ),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            norm_cfg=norm_cfg,
            num_classes=1,
        ),
    ),
    # RoI heads dominate the CPU step time: 128 RoIs per crop, at most 32 positive (mask head)
    train_cfg=dict(
        rpn=dict(sampler=dict(num=256)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=128, pos_fraction=0.25)),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=3000, max_per_img=1500),
        rcnn=dict(
            score_thr=0.2,
            nms=dict(type="nms", iou_threshold=0.5),
            max_per_img=1000,
            mask_thr_binary=0.5,
        ),
    ),
)

# ---------------------------------------------------------------- data
scale = 2.0  # every image is seen at 2x: DSB nuclei (8-60 px) become 16-120 px
crop = (384, 384)
train_pipeline = [
    dict(type="LoadCellImage"),
    dict(type="LoadCellLabels"),
    dict(type="RandomRescale", scale=scale, ratio_range=(0.7, 1.4)),
    dict(type="RandomCellCrop", crop_size=crop, min_cells=1),
    dict(
        type="RandomFlip", prob=[0.25, 0.25, 0.25], direction=["horizontal", "vertical", "diagonal"]
    ),
    dict(type="RandomTranspose", prob=0.5),
    dict(
        type="PhotoMetricDistortion", brightness_delta=24, contrast_range=(0.7, 1.3), hue_delta=12
    ),
    dict(type="LabelsToInstances", min_area=8),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadCellImage"),
    dict(type="Resize", scale_factor=scale, keep_ratio=True),
    dict(
        type="PackDetInputs",
        meta_keys=(
            "img_id",
            "img_path",
            "label_path",
            "modality",
            "ori_shape",
            "img_shape",
            "scale_factor",
        ),
    ),
]
dataset_type = "CellDataset"
data_root = "../shared/data/dsb2018"
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split="train",
        oversample=dict(stained=2, brightfield=4),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split="val", test_mode=True, pipeline=test_pipeline
    ),
)
test_dataloader = val_dataloader
# Detection scores are not calibrated (a short training leaves them all below 0.5): the score
# cut is chosen on val among these candidates (>= the rcnn test score_thr above).
val_evaluator = dict(
    type="CellF1Metric",
    thresholds=(0.5, 0.75),
    score_thr=(0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7),
)
test_evaluator = val_evaluator

# ------------------------------------------------ schedule (CPU: ~1 s/iter, 1500 iters ~25-30 min)
max_iters = 1500
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=750)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type="CosineAnnealingLR",
        T_max=max_iters - 100,
        eta_min=1e-5,
        by_epoch=False,
        begin=100,
        end=max_iters,
    ),
]
auto_scale_lr = dict(enable=False, base_batch_size=2)

default_hooks = dict(
    logger=dict(type="LoggerHook", interval=10),
    checkpoint=dict(
        type="CheckpointHook",
        by_epoch=False,
        interval=100,
        max_keep_ckpts=2,
        save_best="cell/f1_50",
        rule="greater",
    ),
)
custom_hooks = [
    dict(type="BestMetricsHook", key="cell/f1_50", rule="greater"),
    # CPU cores are shared with other jobs: time 1 vs 2 threads every 200 iterations
    dict(type="AdaptiveThreadsHook", choices=(1, 2), probe_every=200, probe_iters=4),
]
log_processor = dict(by_epoch=False)
randomness = dict(seed=2022)
load_from = None
resume = False
