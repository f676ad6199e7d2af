# Three classical Otsu+watershed variants (no checkpoints): a cheap, weak ensemble that runs
# anywhere, on DSB2018. Exercises the pipeline at full scale; a baseline for the real one.
_base_ = ["../_base_/data_dsb2018.py", "./_base_ensemble.py"]

teachers = [
    dict(
        name="otsu_s1",
        cfg=dict(type="classical", sigma=1.0, min_distance=7),
        checkpoint=None,
        weight=1.0,
    ),
    dict(
        name="otsu_s2",
        cfg=dict(type="classical", sigma=2.0, min_distance=5),
        checkpoint=None,
        weight=1.0,
    ),
    dict(
        name="otsu_s05",
        cfg=dict(type="classical", sigma=0.5, min_distance=10),
        checkpoint=None,
        weight=1.0,
    ),
]
