"""The student: a compact flow network distilled from labels and fused pseudo-labels.

- :mod:`student.model`: the network and its registry (``student_registry["flow_s"]``),
- :mod:`student.postprocess`: network outputs -> instances (flow-following),
- :mod:`student.predictor`: numpy in/out inference, batched tiles, whole slides,
- :mod:`student.distill`: training on labeled + pseudo-labeled images,
- :mod:`student.export`: ONNX / ``torch.export`` export and the onnxruntime backend.

Heavy imports (torch, onnxruntime) happen in those modules, not here.
"""
