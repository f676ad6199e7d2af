# distill_cpu.py with a fine-tuning phase: the first half of the 3000 steps mixes labeled and
# pseudo-labeled crops (half each), the second half draws labeled crops only. The same budget
# as the labeled-only ablation (labeled_only_cpu.py).
_base_ = ["./distill_cpu.py"]

student = dict(finetune_fraction=0.5)
