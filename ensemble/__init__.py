"""Ensemble: fuse the teachers' predictions into pseudo-labels.

- :mod:`cellfuse.fusion` (in the core, so the student can vote over its own views too) —
  weighted mask voting on one image (pure numpy/scipy, no I/O), re-exported here.
- :mod:`ensemble.pseudolabel` — a folder of images, teachers loaded once per Ray worker,
  outputs written atomically with a resumable manifest (imports Ray only when used).
- :mod:`ensemble.quality` — scores of pseudo-labels against held-out truth.
"""

from cellfuse.fusion import FusionParams, FusionResult, cluster_instances, fuse, merge_for_prompts

__all__ = ["FusionParams", "FusionResult", "cluster_instances", "fuse", "merge_for_prompts"]
