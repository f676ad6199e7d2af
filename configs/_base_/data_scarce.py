# Scarce-label inputs (tools/make_scarce.py): `cellfuse run` sets data.root to the input.
# No val folder: the pipeline holds out a fifth of the labeled images per modality, never the
# only image of a modality (teachers/train.py stratified_holdout), for checkpoint selection
# and teacher weights. The 67 DSB val images are the test set, scored only at the end.
data = dict(root="work/scarce/scarce_8", train="train", val=None, holdout="stratified")
