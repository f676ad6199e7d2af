# Demo ensemble on the embedded demo set: three classical Otsu+watershed variants (no
# checkpoints needed). Runs in seconds; shows the pipeline, not the gain of a real ensemble.
_base_ = ["./pseudo_classical.py"]

data = dict(root="data/demo")  # the demo set has the same layout (unlabeled/images)
