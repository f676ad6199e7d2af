"""Ensemble: fuse the teachers' predictions into pseudo-labels.

- :mod:`ensemble.fusion` — weighted mask voting on one image (pure numpy/scipy, no I/O).
- :mod:`ensemble.pseudolabel` — a folder of images, teachers loaded once per Ray worker,
  outputs written atomically with a resumable manifest (imports Ray only when used).
- :mod:`ensemble.quality` — scores of pseudo-labels against held-out truth.
"""

from ensemble.fusion import FusionParams, FusionResult, cluster_instances, fuse, merge_for_prompts

__all__ = ["FusionParams", "FusionResult", "cluster_instances", "fuse", "merge_for_prompts"]
