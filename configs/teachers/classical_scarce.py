# The classical Otsu + watershed teacher as a trained teacher: its (sigma, min_distance) are
# chosen on the labeled training images and its weight is its F1 on the held-out ones (no
# network; seconds). At N = 0 it runs with its defaults.
_base_ = ["../_base_/data_scarce.py"]

teacher = dict(type="classical")
