"""Torch building blocks shared by the teachers and the student: layer factories
(:mod:`~cellfuse.nn.layers`), the U-Net (:mod:`~cellfuse.nn.unet`), training-crop
augmentation (:mod:`~cellfuse.nn.augment`) and the flow-network training loop
(:mod:`~cellfuse.nn.flow_training`).

Not part of the torch-free core: nothing in ``cellfuse`` outside this package imports it.
Installed with ``cellfuse[train]``. The GPU preflight (:mod:`~cellfuse.nn.preflight`) lives
here too; the core reaches it, like the model packages, through :mod:`cellfuse.plugins`.
"""
