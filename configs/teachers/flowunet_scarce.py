# Flow U-Net teacher for the scarce-label profile (configs/pipeline/scarce.py). 8-33 labeled
# images (6-26 after the hold-out) are a few hundred cells: the CPU profile's 1050 steps
# already see each crop position many times, so 1200 steps (validated at 400/800/1200, best
# kept) is the budget; ~16 min on 2 quiet cores.
# A quarter of the crops are rendered as stained brightfield images (cellfuse/nn/augment.py
# simulate_stain): with one labeled modality (the shift input) nothing else shows the
# network a coloured, textured image; fixed a priori, not tuned on any labels.
_base_ = ["../_base_/data_scarce.py"]

teacher = dict(
    type="flowunet",
    net=dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu"),
    nominal_diameter=17.0,
    crop=160,
    batch_size=8,
    lr=2e-3,
    weight_decay=1e-4,
    max_steps=1200,  # steps, not minutes: the same teacher on a busy or a quiet machine
    val_every_steps=400,
    flow_iters=100,
    flow_threshold=0.4,
    prob_threshold=0.5,
    min_size=15,
    tile=512,
    overlap=96,
    num_threads=2,
    color=dict(stain=0.25),
)
