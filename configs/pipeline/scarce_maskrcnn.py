# `cellfuse run --profile scarce_maskrcnn`: the scarce profile with a third, different model
# family voting. Its runs reuse a scarce run's flow U-Net and classical teachers when started
# in a copy of its work folder (same stage keys). Measured at N = 8 in docs/scarce.md.
_base_ = ["./scarce.py"]
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_scarce.py"),
    dict(name="classical", config="configs/teachers/classical_scarce.py"),
    dict(name="maskrcnn", config="configs/teachers/maskrcnn_scarce.py"),
]
