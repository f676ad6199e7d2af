# `cellfuse run --profile scarce`: few labels (or one labeled modality) and many unlabeled
# images (tools/make_scarce.py writes such inputs). Sized for 2 CPU cores, ~1 h a run:
# - teachers: the flow U-Net (1200 steps) and the classical teacher fitted on the labels; no
#   SAM or Mask R-CNN: on 166 labels they cost ~30 min each here and added < 0.01 to the
#   vote, and on a handful of labels they are weaker still;
# - the ensemble: every teacher votes in 4 test-time views (itself, h/v flips, rot180), the
#   one ensemble change measured to help on DSB (flow U-Net 0.856 -> 0.869 alone);
# - students: distilled and labeled-only side by side, 3000 steps each.
_base_ = ["./demo.py"]
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_scarce.py"),
    dict(name="classical", config="configs/teachers/classical_scarce.py"),
]
classical_teacher = None
refiner = None
ensemble = "configs/ensemble/scarce.py"
student = "configs/student/distill_scarce.py"
