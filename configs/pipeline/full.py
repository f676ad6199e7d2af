# `cellfuse run --profile full`: GPU-sized teachers and student, best accuracy.
_base_ = ["./demo.py"]
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_full.py"),
    dict(name="maskrcnn", config="configs/teachers/maskrcnn_r50_fpn_full.py"),
    dict(name="sam", config="configs/teachers/sam_vit_b_finetune.py"),
]
student = "configs/student/distill_full.py"
# Every model trains on this device; `cellfuse check --profile full` and the start of
# `cellfuse run` refuse a machine without it (cellfuse/nn/preflight.py).
device = "cuda"
# Official checkpoints, local files (nothing is downloaded): the SAM ViT-B weights
# (sam_vit_b_01ec64.pth; without them the tiny SAM trains from scratch instead, see
# configs/teachers/sam_vit_b_finetune.py) and an optional MMDetection model-zoo Mask R-CNN
# R50-FPN checkpoint to fine-tune from. Set with --cfg-options checkpoints.sam=PATH.
checkpoints = dict(sam=None, maskrcnn=None)
