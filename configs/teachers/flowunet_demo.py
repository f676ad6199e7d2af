# Flow U-Net teacher on the embedded demo set: a few minutes on 2 CPU cores.
_base_ = ["../_base_/data_demo.py"]

teacher = dict(
    type="flowunet",
    net=dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu"),
    nominal_diameter=17.0,
    crop=128,
    batch_size=8,
    lr=2e-3,
    max_steps=300,  # steps, not minutes: the same training on any machine (~3 min here)
    val_every_steps=150,
    flow_iters=100,
    num_threads=1,  # fixed, so a re-run with the same seed gives the same weights
)
