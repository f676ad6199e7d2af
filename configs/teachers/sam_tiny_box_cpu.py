# SAM teacher, CPU profile, prompted by each detected cell's centroid *and* its box.
# The same vit_tiny and budget as sam_tiny_cpu.py; half the training steps add a noisy box
# (std 10 % of the cell's side) to the point prompt, so the model works with and without boxes.
# At inference the prompting teacher's boxes tell SAM each cell's extent, and SAM's job is the
# boundary inside it.
_base_ = ["./sam_tiny_cpu.py"]

teacher = dict(
    use_boxes=True,
    train=dict(box_prob=0.5),
)
