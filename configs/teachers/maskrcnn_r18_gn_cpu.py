# CPU profile: ResNet-18-FPN(128) Mask R-CNN with GroupNorm, from scratch, ~30 min on 2 cores.
#   python tools/train_teacher.py configs/teachers/maskrcnn_r18_gn_cpu.py
_base_ = ["./_base_maskrcnn.py", "../_base_/data_dsb2018.py"]
