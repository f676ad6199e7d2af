"""The flow-network training loop shared by the flow U-Net teacher and the student.

Scale: every training image is resized so its median cell diameter becomes
``nominal_diameter`` (from its labels, :func:`cellfuse.preprocess.median_diameter`); crops
get a further log-uniform scale jitter (:func:`cellfuse.nn.augment.sample_crop`).
Loss: ``MSE(flow_out, 5 * flow) / 2 + BCE(logit, cell)``, cellpose's loss (:func:`flow_loss`).

Training: random crops, AdamW, a time-based schedule (linear warm-up then cosine to 0 over
``train_minutes`` of training-step time, or ``max_steps`` steps), validation with the
challenge F1 every ``val_every_minutes`` through the model's real :meth:`predict` path,
``best.pth`` (highest val F1@0.5) and ``last.pth`` (for ``resume``) written atomically.
Flow targets are cached per training image under ``work_dir/cache``.

A model is a subclass that says what differs: :meth:`FlowTrainer.build_net`,
:meth:`~FlowTrainer.net_stride`, :meth:`~FlowTrainer.predict`,
:meth:`~FlowTrainer.load` and :meth:`~FlowTrainer.checkpoint_meta`; the student also
changes the data and the sampling (the hooks of :class:`cellfuse.nn.flow_data.FlowTrainingData`)
and the loss (:meth:`~FlowTrainer.train_loss`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cellfuse.errors import ConfigError
from cellfuse.flows import FLOW_SCALE
from cellfuse.instances import Instances
from cellfuse.layout import Sample
from cellfuse.model_api import validate
from cellfuse.nn.augment import check_color, check_scale_range
from cellfuse.nn.checkpoints import load_checkpoint, save_checkpoint
from cellfuse.nn.flow_data import FlowTrainingData
from cellfuse.nn.layers import count_parameters
from cellfuse.nn.threads import ThreadChooser

log = logging.getLogger(__name__)

DEFAULT_NET: dict[str, Any] = dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu")
DEFAULT_COLOR: dict[str, float] = dict(
    hsv=0.5, shuffle=0.3, gray=0.2, contrast=0.5, invert=0.1, noise=0.2
)
DEFAULT_OVERSAMPLE: dict[str, float] = dict(fluorescence=1.0, stained=3.0, brightfield=4.0)


def flow_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cellpose's loss: ``MSE(out[:, 1:], 5 * flows) / 2 + BCE(out[:, 0], cell)``.

    Args:
        out: Bx3xHxW network output (cell logit, scaled flows).
        target: Bx3xHxW (cell probability, unit flows dy, dx).
    """
    out, target = out.float(), target.float()  # fp32 under bf16 autocast (no-op on fp32)
    flow = F.mse_loss(out[:, 1:], FLOW_SCALE * target[:, 1:]) / 2.0
    cell = F.binary_cross_entropy_with_logits(out[:, 0], target[:, 0])
    return flow + cell


class FlowTrainer(FlowTrainingData):
    """Trains a network that outputs (cell logit, 5 x flows); see module doc.

    Args:
        net: network keyword arguments (the subclass's :meth:`build_net` reads them).
        nominal_diameter: cell diameter (px) at the network scale.
        diameter: fixed cell diameter (px) of inference images; None = estimate per image.
        min_scale, max_scale: bounds of the inference/training rescale factor.
        rescale_tolerance: skip the second pass when the scale is within this of 1.
        estimate_window: side (px) of the central window of the diameter-estimating pass.
        prob_threshold: cell probability above which pixels are followed.
        flow_threshold: maximum flow error of a kept mask (None/0: keep all).
        flow_iters: Euler steps of flow-following.
        min_size: smallest mask (px) at the network scale.
        tile, overlap: tiling at the network scale (px).
        crop: training crop side (px, network scale).
        batch_size, lr, weight_decay, warmup_fraction: optimisation.
        train_minutes: budget of training-step time (validation not counted).
        val_every_minutes: validation period (training-step time).
        max_steps: budget in optimiser steps instead of minutes (reproducible on any
            machine: with a fixed ``num_threads`` and ``seed`` the run is deterministic).
        val_every_steps: validation period when ``max_steps`` is set (default: 4 per run).
        scale_jitter: log-uniform range of the crop scale jitter.
        color: probabilities of the colour augmentations, over :data:`DEFAULT_COLOR`
            (``dict(stain=0.25)`` adds the stain simulation to the defaults).
        oversample: sampling weight per modality (fluorescence, stained, brightfield).
        num_threads: torch threads; 0 = pick 1 or 2 by timing training steps with each, at
            the start and after every validation (on a shared 2-core machine, two threads
            under contention are often several times slower than one).
        device: "auto" (CUDA when available), "cpu" or "cuda[:i]"; flow-following stays on CPU.
        amp: "bf16": training steps run under bfloat16 autocast on a CUDA device that
            supports it (the loss in fp32, no gradient scaler needed); ignored on the CPU,
            whose training stays bit-identical fp32. Validation and inference stay fp32.
        seed: random seed.
    """

    #: shown in logs and progress bars
    name = "flow"

    def __init__(
        self,
        net: dict[str, Any] | None = None,
        nominal_diameter: float = 17.0,
        diameter: float | None = None,
        min_scale: float = 0.25,
        max_scale: float = 4.0,
        rescale_tolerance: float = 0.1,
        estimate_window: int = 512,
        prob_threshold: float = 0.5,
        flow_threshold: float | None = 0.4,
        flow_iters: int = 100,
        min_size: int = 15,
        tile: int = 512,
        overlap: int = 96,
        crop: int = 160,
        batch_size: int = 8,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.03,
        train_minutes: float = 20.0,
        val_every_minutes: float = 5.0,
        max_steps: int | None = None,
        val_every_steps: int | None = None,
        scale_jitter: tuple[float, float] = (0.7, 1.4),
        color: dict[str, float] | None = None,
        oversample: dict[str, float] | None = None,
        num_threads: int = 2,
        device: str = "auto",
        amp: str | None = None,
        seed: int = 0,
    ) -> None:
        #: validation scores of the selected checkpoint, e.g. {"f1_50": 0.84}
        self.val_metrics: dict[str, float] = {}
        if nominal_diameter <= 0:
            raise ConfigError(f"nominal_diameter must be > 0, got {nominal_diameter}")
        if overlap >= tile:
            raise ConfigError(f"overlap ({overlap}) must be smaller than tile ({tile})")
        self.net_cfg = {**DEFAULT_NET, **(net or {})}
        self.nominal_diameter = float(nominal_diameter)
        self.diameter = diameter
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.rescale_tolerance = float(rescale_tolerance)
        self.estimate_window = int(estimate_window)
        self.prob_threshold = float(prob_threshold)
        self.flow_threshold = flow_threshold
        self.flow_iters = int(flow_iters)
        self.min_size = int(min_size)
        self.tile, self.overlap = int(tile), int(overlap)
        self.crop = int(crop)
        self.batch_size = int(batch_size)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.warmup_fraction = float(warmup_fraction)
        self.train_minutes = float(train_minutes)
        self.val_every_minutes = float(val_every_minutes)
        if max_steps is not None and int(max_steps) < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        if val_every_steps is not None and int(val_every_steps) < 1:
            raise ConfigError(f"val_every_steps must be >= 1, got {val_every_steps}")
        self.max_steps = None if max_steps is None else int(max_steps)
        self.val_every_steps = (
            max(1, self.max_steps // 4)
            if val_every_steps is None and self.max_steps
            else val_every_steps
        )
        self.scale_jitter = check_scale_range(scale_jitter, "scale_jitter")
        self.color = {**DEFAULT_COLOR, **check_color(color)}
        self.oversample = {**DEFAULT_OVERSAMPLE, **(oversample or {})}
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if amp not in (None, "bf16"):
            raise ConfigError(f"amp must be None or 'bf16', got {amp!r}")
        self.amp = amp
        self.net: torch.nn.Module | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for a training step when ``amp="bf16"`` on a CUDA device that has
        it; otherwise nothing at all (the CPU path is the plain fp32 one)."""
        if self.amp == "bf16" and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ what a model defines

    def build_net(self) -> torch.nn.Module:
        """A freshly initialised network from ``self.net_cfg``."""
        raise NotImplementedError

    @property
    def net_stride(self) -> int:
        """Input sides must be multiples of this."""
        raise NotImplementedError

    def predict(self, image: np.ndarray) -> Instances:
        """Segment one image through the deployed inference path (used by validation)."""
        raise NotImplementedError

    def load(self, checkpoint: Path) -> None:
        """Rebuild the network from a checkpoint this trainer wrote."""
        raise NotImplementedError

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint holds beside ``state_dict`` and ``metrics`` (plain types only:
        checkpoints are read with ``weights_only=True``)."""
        raise NotImplementedError

    def _require_net(self) -> torch.nn.Module:
        if self.net is None:
            raise ConfigError(f"{self.name}: no weights; call fit() or load(checkpoint) first")
        return self.net

    def _checkpoint(self, **extra: Any) -> dict[str, Any]:
        net = self._require_net()
        return dict(
            state_dict=net.state_dict(),
            **self.checkpoint_meta(),
            metrics=dict(self.val_metrics),
            **extra,
        )

    def _clamp_scale(self, s: float) -> float:
        return float(np.clip(s, self.min_scale, self.max_scale))

    @staticmethod
    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (:func:`flow_loss`; the student weights it)."""
        return flow_loss(out, target)

    def train_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of one training batch (a hook: the student adds soft targets)."""
        return self.loss(self.net(x), y)

    def lr_at(self, frac: float) -> float:
        """Linear warm-up for ``warmup_fraction``, then cosine to 0 at ``frac = 1``."""
        if frac < self.warmup_fraction:
            return self.lr * max(frac / self.warmup_fraction, 0.01)
        t = (frac - self.warmup_fraction) / max(1.0 - self.warmup_fraction, 1e-9)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    # ------------------------------------------------------------------ training

    def fit(
        self, train: list[Sample], val: list[Sample], work_dir: Path, *, resume: bool = False
    ) -> Path:
        """Train for ``max_steps`` steps (or ``train_minutes`` of step time); keep the best
        checkpoint by val F1@0.5."""
        if not train:
            raise ConfigError(f"{self.name}: no training images")
        threads = ThreadChooser(self.num_threads)
        torch.manual_seed(self.seed)
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        best_path, last_path = work_dir / "best.pth", work_dir / "last.pth"
        t_start = time.time()
        data = self.prepare_data(train, work_dir / "cache")
        schedule = self.sampling_schedule(data)
        mods = {m: sum(d["modality"] == m for d in data) for m in DEFAULT_OVERSAMPLE}
        log.info(
            "%s: %d training images %s, targets ready in %.0f s",
            self.name,
            len(data),
            mods,
            time.time() - t_start,
        )
        self.net = self.build_net().to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        state: dict[str, Any] = dict(step=0, train_seconds=0.0, best_f1=-1.0, history=[])
        rng = np.random.default_rng(self.seed)
        if resume and last_path.is_file():
            ck = load_checkpoint(last_path, what="training checkpoint")
            self.net.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            state = ck["state"]
            rng = np.random.default_rng([self.seed, state["step"]])
            if best_path.is_file():
                self.val_metrics = dict(load_checkpoint(best_path)["metrics"])
            log.info("resumed from %s at step %d", last_path, state["step"])
        by_steps = self.max_steps is not None
        log.info(
            "%s: %d parameters, crop %d, batch %d, budget %s",
            self.name,
            count_parameters(self.net),
            self.crop,
            self.batch_size,
            f"{self.max_steps} steps" if by_steps else f"{self.train_minutes:.1f} min",
        )
        budget = self.train_minutes * 60.0
        val_every = self.val_every_minutes * 60.0
        next_val = (math.floor(state["train_seconds"] / val_every) + 1) * val_every

        def progress() -> float:
            if by_steps:
                return state["step"] / self.max_steps
            return state["train_seconds"] / budget

        running = None
        bar = tqdm(
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            total=self.max_steps if by_steps else round(budget),
            initial=state["step"] if by_steps else round(state["train_seconds"]),
            unit="step" if by_steps else "s",
            desc=self.name,
        )
        with logging_redirect_tqdm():
            while progress() < 1.0:
                threads.before_step()
                t0 = time.time()
                self.net.train()
                lr = self.lr_at(progress())
                for g in opt.param_groups:
                    g["lr"] = lr
                weights = next(w for start, w in reversed(schedule) if progress() >= start)
                x, y = self.make_batch(data, weights, rng)
                x, y = x.to(self.device), y.to(self.device)
                with self.autocast():
                    loss = self.train_loss(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                dt = time.time() - t0
                threads.after_step(dt)
                state["step"] += 1
                state["train_seconds"] += dt
                running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
                bar.update((state["step"] if by_steps else round(state["train_seconds"])) - bar.n)
                bar.set_postfix(loss=f"{running:.3f}", step=state["step"], refresh=False)
                done = progress() >= 1.0
                if by_steps:
                    due = state["step"] % self.val_every_steps == 0
                else:
                    due = state["train_seconds"] >= next_val
                if due or done:
                    next_val += val_every
                    self._validate_and_save(val, state, opt, running, best_path, last_path)
                    threads.reprobe()
        bar.close()
        log.info(
            "%s: %d steps, %.1f min of training steps, %.1f min wall (with targets and val)",
            self.name,
            state["step"],
            state["train_seconds"] / 60,
            (time.time() - t_start) / 60,
        )
        if not best_path.is_file():  # no val set: the last weights are the result
            save_checkpoint(self._checkpoint(), best_path)
        self.load(best_path)
        return best_path

    def _validate_and_save(
        self,
        val: list[Sample],
        state: dict[str, Any],
        opt: torch.optim.Optimizer,
        running_loss: float | None,
        best_path: Path,
        last_path: Path,
    ) -> None:
        t0 = time.time()
        metrics = validate(self.predict, val) if val else {}
        f1 = metrics.get("f1_50", -1.0)
        entry = dict(
            step=state["step"],
            train_minutes=round(state["train_seconds"] / 60, 2),
            loss=running_loss,
            **metrics,
        )
        state["history"].append(entry)
        log.info(
            "step %d (%.1f min): loss %.4f val F1@0.5 %.4f F1@0.75 %.4f (val %.0f s)",
            state["step"],
            state["train_seconds"] / 60,
            running_loss or float("nan"),
            f1,
            metrics.get("f1_75", float("nan")),
            time.time() - t0,
        )
        if val and f1 > state["best_f1"]:
            state["best_f1"] = f1
            self.val_metrics = metrics
            save_checkpoint(
                self._checkpoint(step=state["step"], history=state["history"]), best_path
            )
            log.info("new best F1@0.5 %.4f -> %s", f1, best_path)
        save_checkpoint(self._checkpoint(optimizer=opt.state_dict(), state=state), last_path)


__all__ = [
    "FlowTrainer",
    "flow_loss",
    "DEFAULT_NET",
    "DEFAULT_COLOR",
    "DEFAULT_OVERSAMPLE",
]
