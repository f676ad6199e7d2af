# SAM teacher, CPU profile, as a mask refiner: each detected cell prompts with its centroid,
# its box *and its mask* (SAM's dense mask prompt, as SAM feeds back its previous answer).
# The same vit_tiny and budget as sam_tiny_cpu.py. In training, 70 % of the steps add a mask
# prompt: the prompted cell from an imperfect copy of the true labels (boundaries moved and
# wobbled by ~8 % of the radius, cells shifted, 10 % of touching pairs merged; see
# teachers/sam_prompts.py perturb_labels), so SAM learns to correct another teacher's masks.
# Validation and the mask-threshold calibration prompt with such copies of the true cells.
_base_ = ["./sam_tiny_box_cpu.py"]

teacher = dict(
    mask_prompts=True,
    train=dict(mask_prob=0.7, mask_noise=0.08, mask_merge_prob=0.1),
)
