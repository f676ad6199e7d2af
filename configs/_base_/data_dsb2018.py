# Labeled DSB2018 splits in the NeurIPS-CellSeg layout (<split>/images, <split>/labels).
# Override the root with --cfg-options data.root=/path/to/data
data = dict(
    root="../shared/data/dsb2018",
    train="train",
    val="val",
    unlabeled="unlabeled/images",
)
