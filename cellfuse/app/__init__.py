"""Orchestration: the pipeline stages and the command line.

The one layer that imports every model package (``teachers``, ``student``, ``ensemble``);
the core (the rest of ``cellfuse``) never imports this package.
"""
