# The embedded demo data set (a CC0 subset of DSB2018, see data/demo/README.md).
data = dict(
    root="data/demo",
    train="train",
    val="val",
    unlabeled="unlabeled/images",
)
