# Shared student defaults (student/distill.py: StudentTrainer; student/postprocess.py: PostProcess).
student = dict(
    variant="flow_s",  # student/model.py VARIANTS: flow_xs, flow_s, flow_m
    pseudo=None,  # pseudo-label folder written by tools/pseudo_label.py (manifest.jsonl inside)
    labeled_weight=2.0,  # loss weight of labeled pixels (pseudo: confidence, 1 bg, 0 ignored)
    pseudo_weight=1.0,
    labeled_fraction=0.5,  # share of crops drawn from labeled images
    nominal_diameter=17.0,  # cells are resized to this diameter (px) before the network
    crop=160,
    batch_size=8,
    lr=3e-3,
    weight_decay=1e-4,
    postprocess=dict(
        prob_threshold=0.5, flow_iters=100, flow_threshold=0.4, min_size=15, follow_scale=0.5
    ),
    tile=512,
    overlap=64,  # > the largest cell at the network scale (cells are ~17 px there)
    batch=4,  # tiles per network call at inference
    num_threads=0,  # 0 = choose 1 or 2 threads by timing (the machine is shared)
)
