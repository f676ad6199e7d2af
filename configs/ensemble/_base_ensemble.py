# Shared defaults of every pseudo-label config (tools/pseudo_label.py).
# fusion: see cellfuse/fusion.py (FusionParams); pseudo: see ensemble/pseudolabel.py (RunOptions).
fusion = dict(
    iou_thr=0.5,  # same cell across teachers at IoU >= 0.5
    tau=0.5,  # pixel vote needed for the fused mask
    lo=0.25,  # clusters below: background
    hi=0.6,  # clusters at or above: pseudo-labels; between lo and hi: ignored
    disagree=(0.2, 0.8),  # foreground vote strictly inside: ignored
    min_size=10,
    fill_holes=True,
)
# The ensemble as a predictor (F1 rows of the evaluate stage and of tools/eval_pseudo.py
# --config): every cluster with a third of the weighted vote is a cell, none is ignored.
fusion_predict = dict(tau=0.3, lo=0.3, hi=0.3)
# A teacher weighted by its val F1 that scores below this fraction of the best weight does
# not vote (a teacher that failed to train must not lower every other cell's vote).
min_weight_fraction = 0.5
refiner = None  # name of a teacher (SAM) prompted with the other teachers' merged cells
# Test-time views every teacher but the refiner also votes in (cellfuse/views.py), e.g.
# ["hflip", "vflip", "rot180"]; a teacher entry's own views=[...] wins. Off: on DSB val the
# flow U-Net gains from them alone (0.856 -> 0.869) but the multi-teacher vote does not.
views = None
pseudo = dict(
    num_workers=2,
    retries=2,
    max_restarts=2,
    max_task_retries=2,
    cache_teachers=True,
    save_votes=False,
)
