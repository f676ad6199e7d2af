"""The command line and the pipeline's stages.

Part of the core: like the rest of ``cellfuse`` it imports no model package (``teachers``,
``student``, ``ensemble``) and no torch. Where a stage needs one (train a teacher, fuse the
votes, distill or run the student), it asks for the function by role name through
:mod:`cellfuse.plugins`; the packages declare their roles in ``pyproject.toml``.
"""
