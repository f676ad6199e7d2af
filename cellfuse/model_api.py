"""The interface every ensemble member implements (the teachers, and a trained student
taking part in the next round), and :func:`validate`, the F1 that selects checkpoints.

Torch-free and in the core so that both ``teachers/`` and ``student/`` implement it without
importing each other."""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.instances import Instances
from cellfuse.layout import Sample


class Teacher(abc.ABC):
    """A segmentation model behind one interface: fit, load, predict.

    Subclasses take their hyper-parameters as keyword arguments (the config's ``teacher``
    dict minus ``type``) and keep any inference state (the loaded network) on ``self``.
    """

    #: registry name, e.g. "flowunet"
    name: str = ""
    #: True for teachers trained by an MMEngine Runner: they get the whole Config as ``cfg``
    wants_full_config: bool = False

    def __init__(self) -> None:
        #: validation scores of the selected checkpoint, e.g. {"f1_50": 0.84, "f1_75": 0.62}
        self.val_metrics: dict[str, float] = {}

    @abc.abstractmethod
    def fit(
        self, train: list[Sample], val: list[Sample], work_dir: Path, *, resume: bool = False
    ) -> Path:
        """Train on labeled ``train`` samples, select the checkpoint by F1@0.5 on ``val``.

        Sets ``self.val_metrics`` to the selected checkpoint's validation scores.

        Args:
            train: labeled training samples.
            val: labeled validation samples (checkpoint selection only).
            work_dir: where checkpoints and logs go.
            resume: continue from the last checkpoint in ``work_dir`` instead of starting over.

        Returns:
            Path of the best checkpoint written under ``work_dir``.
        """

    @abc.abstractmethod
    def load(self, checkpoint: Path) -> None:
        """Load weights from a local checkpoint file."""

    @abc.abstractmethod
    def predict(self, image: np.ndarray) -> Instances:
        """Segment one image.

        Args:
            image: HxWxC array of any dtype as read by ``cellfuse.io.read_image``.

        Returns:
            Instances: HxW labels + per-instance score in [0, 1].
        """

    def predict_with_prompts(self, image: np.ndarray, prompts: Instances | None) -> Instances:
        """Teachers that refine other teachers' detections (SAM) override this."""
        return self.predict(image)

    @classmethod
    def offset_seed(cls, tcfg: dict[str, Any], cfg: Any, offset: int) -> None:
        """Move this teacher's training seed by ``offset`` (the run's top-level ``seed``,
        which ``cellfuse run`` writes into every stage config), in place: in ``tcfg`` (the
        config's ``teacher`` dict) or ``cfg`` (the whole config). Seed 0 leaves the
        teacher's own seed as it is, so a repeat with another run seed is a different
        training, not a replay. Default: nothing is random in training (classical)."""
        return None


def validate(
    predict: Callable[[np.ndarray], Instances],
    samples: list[Sample],
    thresholds: tuple[float, ...] = (0.5, 0.75),
    *,
    progress: bool = False,
) -> dict[str, float]:
    """Mean per-image challenge F1 of ``predict`` on labeled ``samples``.

    Returns:
        ``{"f1_50": ..., "f1_75": ...}`` (key ``f1_XX`` for threshold 0.XX).
    """
    from cellfuse.io import read_image, read_labels
    from cellfuse.metric import evaluate_image

    f1s: dict[float, list[float]] = {t: [] for t in thresholds}
    it = samples
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(samples, desc="validate", unit="img", leave=False)
    for s in it:
        image = read_image(s.image)
        truth = read_labels(s.label, shape=image.shape[:2])
        scores = evaluate_image(truth, predict(image).labels, thresholds)["scores"]
        for t in thresholds:
            f1s[t].append(scores[t]["f1"])
    return {f"f1_{round(t * 100):02d}": float(np.mean(v)) if v else 0.0 for t, v in f1s.items()}
