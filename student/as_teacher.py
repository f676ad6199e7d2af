"""A trained student as an ensemble member: the teacher interface over a
:class:`~student.predictor.StudentPredictor` (self-training rounds).

Implements :class:`cellfuse.model_api.Teacher` from the core; the teacher registry names it
as a string (``"student.as_teacher:StudentAsTeacher"``), so ``teachers/`` never imports
``student/`` and ``student/`` never imports ``teachers/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellfuse.errors import ConfigError
from cellfuse.instances import Instances
from cellfuse.model_api import Teacher
from student.predictor import StudentPredictor


class StudentAsTeacher(Teacher):
    """A trained student as a member of the ensemble (self-training: the student of one round
    pseudo-labels with the teachers for the next). Trained by ``cellfuse distill``, not here; registered as teacher type ``"student"``.

    Args:
        device: "auto", "cpu" or "cuda[:i]".
        threads: CPU threads (0: the library default).
    """

    name = "student"

    def __init__(self, device: str = "cpu", threads: int = 0) -> None:
        super().__init__()
        self.device, self.threads = device, int(threads)
        self.predictor: StudentPredictor | None = None

    def fit(self, train, val, work_dir, *, resume=False):
        raise ConfigError("a student is trained with `cellfuse distill`, not as a teacher")

    def load(self, checkpoint: Path) -> None:
        self.predictor = StudentPredictor.from_checkpoint(
            checkpoint, device=self.device, threads=self.threads
        )

    def predict(self, image: np.ndarray) -> Instances:
        if self.predictor is None:
            raise ConfigError("StudentAsTeacher.predict before load(checkpoint)")
        return self.predictor.predict(image)


__all__ = ["StudentAsTeacher"]
