# `cellfuse run --profile full`: GPU-sized teachers and student, best accuracy.
_base_ = ["./demo.py"]
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_full.py"),
    dict(name="maskrcnn", config="configs/teachers/maskrcnn_r50_fpn_full.py"),
    dict(name="sam", config="configs/teachers/sam_vit_b_finetune.py"),
]
student = "configs/student/distill_full.py"
