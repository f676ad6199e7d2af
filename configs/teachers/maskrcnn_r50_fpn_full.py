# Full GPU profile: ResNet-50-FPN(256) Mask R-CNN, the architecture of MMDetection's
# mask-rcnn_r50_fpn (so a model-zoo checkpoint fine-tunes with --cfg-options load_from=PATH;
# the 81-class COCO heads are dropped and re-initialised, see teachers.maskrcnn.adapt_checkpoint).
# From scratch (load_from=None) the BatchNorm layers train (norm_eval=False, batch 8).
# GPU: fp16 AMP (AmpOptimWrapper, dynamic loss scale), MMDetection's tested mixed-precision
# path; not bf16, whose support in mmcv's CUDA RoI ops is not established. Batch 8 of 768 px
# crops: ~10 GB by MMDetection's model-zoo memory scaled by pixels (preflight's estimate).
# Expected wall time (an estimate, not measured): 8000 iterations at ~0.5 s on an A100/H100
# + 8 validations: ~1.3 h.
#   python tools/train_teacher.py configs/teachers/maskrcnn_r50_fpn_full.py
_base_ = ["./_base_maskrcnn.py", "../_base_/data_dsb2018.py"]

teacher = dict(overlap=160)

model = dict(
    backbone=dict(
        depth=50,
        base_channels=64,  # the base config's half width would feed the FPN 128..1024 channels
        frozen_stages=-1,
        norm_cfg=dict(_delete_=True, type="BN", requires_grad=True),
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=256, norm_cfg=None),
    rpn_head=dict(in_channels=256, feat_channels=256),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=256),
        bbox_head=dict(
            _delete_=True,
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=1,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        mask_roi_extractor=dict(out_channels=256),
        mask_head=dict(in_channels=256, conv_out_channels=256, norm_cfg=None),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000),
        rcnn=dict(sampler=dict(num=512, pos_fraction=0.25)),
    ),
)

scale = 2.0
crop = (768, 768)
train_pipeline = [
    dict(type="LoadCellImage"),
    dict(type="LoadCellLabels"),
    dict(type="RandomRescale", scale=scale, ratio_range=(0.6, 1.6)),
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
train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(oversample=dict(stained=3, brightfield=6), pipeline=train_pipeline),
)
val_dataloader = dict(num_workers=4, persistent_workers=True)
test_dataloader = val_dataloader

max_iters = 8000
train_cfg = dict(max_iters=max_iters, val_interval=1000)
optim_wrapper = dict(
    type="AmpOptimWrapper",
    loss_scale="dynamic",
    optimizer=dict(type="AdamW", lr=4e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type="CosineAnnealingLR",
        T_max=max_iters - 500,
        eta_min=1e-6,
        by_epoch=False,
        begin=500,
        end=max_iters,
    ),
]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1000))
env_cfg = dict(cudnn_benchmark=True)
