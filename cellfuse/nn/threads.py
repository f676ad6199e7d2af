"""Torch thread count for training steps on a small shared CPU."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class ThreadChooser:
    """Sets torch's thread count: fixed, or (``n = 0``) the faster of 1 and 2 by timing."""

    PLAN = (1, 1, 2, 2)  # the first step after a switch warms up; the second is timed

    def __init__(self, n: int) -> None:
        self.auto = n <= 0
        self.best = 1 if self.auto else n
        self.plan: list[int] = list(self.PLAN) if self.auto else []
        self.times: dict[int, float] = {}
        self.current = 0
        torch.set_num_threads(self.best)

    def reprobe(self) -> None:
        if self.auto:
            self.plan, self.times = list(self.PLAN), {}

    def before_step(self) -> None:
        self.current = self.plan[0] if self.plan else self.best
        if torch.get_num_threads() != self.current:
            torch.set_num_threads(self.current)

    def after_step(self, dt: float) -> None:
        if not self.plan:
            return
        self.plan.pop(0)
        self.times[self.current] = dt
        if not self.plan:
            self.best = min(self.times, key=self.times.get)
            log.info(
                "threads: %s s/step -> %d",
                {k: round(v, 2) for k, v in self.times.items()},
                self.best,
            )


__all__ = ["ThreadChooser"]
