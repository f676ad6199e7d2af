# Ensemble of the scarce-label profile: the run's trained teachers (weights = F1 on the
# held-out labeled images), each voting in 4 test-time views.
_base_ = ["./_base_ensemble.py"]
views = ["hflip", "vflip", "rot180"]
pseudo = dict(num_workers=2)
