"""cellfuse: cell instance segmentation when labels are scarce.

Importing this package is cheap: it pulls in no torch, mmdet or ray. The heavy stacks are
imported by the modules that use them.
"""

__version__ = "0.1.0"
