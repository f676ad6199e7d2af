"""The student: a compact flow network distilled from labels and fused pseudo-labels.

- :mod:`student.model`: the network and its registry (``student_registry["flow_s"]``),
- :mod:`student.predictor`: numpy in/out inference, batched tiles, whole slides (no torch),
- :mod:`student.onnx_backend`: the onnxruntime backend and the exported model's sidecar,
- :mod:`student.model`: the network and its registry (``student_registry["flow_s"]``),
- :mod:`student.distill`: training on labeled + pseudo-labeled images,
- :mod:`student.export`: ONNX / ``torch.export`` export with a parity check,
- :mod:`student.as_teacher`: a trained student as an ensemble member.

Network outputs become instances in :mod:`cellfuse.flow_instances`, shared with the flow
U-Net teacher. ``student/`` imports nothing from ``teachers/``. Heavy imports (torch,
onnxruntime) happen in those modules, not here.
"""
