"""Teacher 2: a U-Net predicting cell probability and Cellpose-style flows, trained from scratch.

Network: :class:`teachers.unet.UNet` with 3 input channels (:func:`teachers.augment.prepare_image`)
and 3 outputs: cell-probability logit, and the flow ``(dy, dx)`` times 5 (cellpose's scaling).
Loss: ``MSE(flow_out, 5 * flow) / 2 + BCE(logit, cell)``, cellpose's loss.

Scale: every training image is resized so its median cell diameter becomes
``nominal_diameter`` (from its labels); crops get a further log-uniform scale jitter. At
inference, unless ``diameter`` is given, a first pass at the image's own scale (on its central
``estimate_window`` square) finds cells, their median diameter ``d`` gives the scale
``nominal_diameter / d``, and a second pass predicts the whole image at that scale (skipped
when the first pass covered the whole image and the scale is within ``rescale_tolerance``
of 1).

Masks: flow-following and mask reconstruction in :mod:`cellfuse.flows`. The score of a cell
is its mean cell probability times ``1 - flow_error`` (clipped to [0, 1]); a mask's flow
error is the mean squared difference between the flows of its own shape and the predicted
flows, and masks with an error above ``flow_threshold`` are dropped.

Large images: :func:`cellfuse.tiling.predict_tiled` (StarDist rule: each tile runs the whole
pipeline, flow-following included, and keeps the cells whose centroid lies in its core and
which do not touch its cut edges). Tiles are ``tile`` px at the network scale, overlap
``overlap`` px, which must exceed the largest cell diameter at the network scale (cells are
``nominal_diameter`` there). Tile outputs are not blended before flow-following. The input is
normalised once for the whole image, so tiles see the same intensities as the whole image.

Training: random crops, AdamW, a time-based schedule (linear warm-up then cosine to 0 over
``train_minutes`` of training-step time), validation with the challenge F1 every
``val_every_minutes`` through the real :meth:`predict` path, ``best.pth`` (highest val
F1@0.5) and ``last.pth`` (for ``resume``) written atomically. Flow targets are cached per
training image under ``work_dir/cache``.
"""

from __future__ import annotations

import hashlib
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
from cellfuse.flows import flows_to_labels, labels_to_flows
from cellfuse.instances import Instances
from cellfuse.io import atomic_write, read_image, read_labels
from cellfuse.layout import Sample
from cellfuse.modality import modality
from cellfuse.tiling import predict_tiled
from teachers.augment import (
    median_diameter,
    prepare_image,
    resize_image,
    resize_labels,
    sample_crop,
    scaled_shape,
)
from teachers.base import Teacher, validate
from teachers.unet import UNet, count_parameters, pad_to_multiple

log = logging.getLogger(__name__)

FLOW_SCALE = 5.0  # the network predicts 5 x the unit flow, as cellpose does
CACHE_VERSION = 1

DEFAULT_NET: dict[str, Any] = dict(widths=(16, 32, 64, 128), depth=2, norm="batch", act="relu")
DEFAULT_COLOR: dict[str, float] = dict(
    hsv=0.5, shuffle=0.3, gray=0.2, contrast=0.5, invert=0.1, noise=0.2
)
DEFAULT_OVERSAMPLE: dict[str, float] = dict(fluorescence=1.0, stained=3.0, brightfield=4.0)


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


class _ThreadChooser:
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


class FlowUNetTeacher(Teacher):
    """Flow U-Net teacher (see module doc). All keyword arguments come from ``cfg.teacher``.

    Args:
        net: :class:`UNet` keyword arguments (widths, depth, norm, act, residual).
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
        color: probabilities of the colour augmentations.
        oversample: sampling weight per modality (fluorescence, stained, brightfield).
        num_threads: torch threads; 0 = pick 1 or 2 by timing training steps with each, at
            the start and after every validation (on a shared 2-core machine, two threads
            under contention are often several times slower than one).
        device: "auto" (CUDA when available), "cpu" or "cuda[:i]"; flow-following stays on CPU.
        seed: random seed.
    """

    name = "flowunet"

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
        seed: int = 0,
    ) -> None:
        super().__init__()
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
        self.scale_jitter = (float(scale_jitter[0]), float(scale_jitter[1]))
        self.color = dict(DEFAULT_COLOR if color is None else color)
        self.oversample = {**DEFAULT_OVERSAMPLE, **(oversample or {})}
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.net: UNet | None = None

    # ------------------------------------------------------------------ network

    def build_net(self) -> UNet:
        return UNet(3, 3, **self.net_cfg)

    def _require_net(self) -> UNet:
        if self.net is None:
            raise ConfigError("flowunet: no weights; call fit() or load(checkpoint) first")
        return self.net

    def network_output(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on one prepared image.

        Args:
            x: HxWx3 float32 in [0, 1] (:func:`prepare_image`), at the network scale.

        Returns:
            (2xHxW float32 flows in unit scale, HxW float32 cell probability).
        """
        net = self._require_net()
        net.eval()
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        t, (h, w) = pad_to_multiple(t, net.stride)
        with torch.inference_mode():
            y = net(t)[0, :, :h, :w]
        prob = torch.sigmoid(y[0]).float().cpu().numpy()
        flows = (y[1:] / FLOW_SCALE).float().cpu().numpy()
        return flows, prob

    # ------------------------------------------------------------------ inference

    def _masks(self, x: np.ndarray) -> Instances:
        """Instances of one prepared image at the network scale."""
        flows, prob = self.network_output(x)
        labels, mean_prob, err = flows_to_labels(
            flows,
            prob,
            prob_threshold=self.prob_threshold,
            n_iter=self.flow_iters,
            flow_threshold=self.flow_threshold,
            min_size=self.min_size,
        )
        score = np.clip(mean_prob * (1.0 - err), 0.0, 1.0)
        return Instances(labels, score)

    def predict_at_scale(self, x: np.ndarray, scale: float) -> Instances:
        """Instances of a prepared HxWx3 image predicted at ``scale``, in the image's pixels.

        Tiles are cut in the image's own pixels (``tile / scale``) and each is resized to
        the network scale, so memory stays bounded by one tile whatever the scale.
        """
        h, w = x.shape[:2]

        def predict_tile(xt: np.ndarray) -> Instances:
            shape = scaled_shape(xt.shape[:2], scale)
            inst = self._masks(resize_image(xt, shape))
            if shape == tuple(xt.shape[:2]):
                return inst
            return Instances.from_labels(resize_labels(inst.labels, xt.shape[:2]), inst.scores)

        tile = max(int(self.tile / scale), 2 * self.net_stride)
        overlap = min(int(math.ceil(self.overlap / scale)), tile - 1)
        return predict_tiled(predict_tile, lambda win: x[win], (h, w), tile=tile, overlap=overlap)

    @property
    def net_stride(self) -> int:
        return 2 ** (len(self.net_cfg["widths"]) - 1)

    def _clamp_scale(self, s: float) -> float:
        return float(np.clip(s, self.min_scale, self.max_scale))

    def predict(self, image: np.ndarray) -> Instances:
        """Segment one image (any dtype, HxW or HxWxC); see the module doc for the scale passes."""
        self._require_net()
        arr = np.asarray(image)
        shape = arr.shape[:2]
        if arr.size == 0 or float(arr.max()) == float(arr.min()):
            return Instances.empty(shape)
        x = prepare_image(arr)
        if self.diameter:
            return self.predict_at_scale(
                x, self._clamp_scale(self.nominal_diameter / self.diameter)
            )
        d, first = self.estimate_diameter(x)
        if d <= 0:
            return first if first is not None else Instances.empty(shape)
        scale = self._clamp_scale(self.nominal_diameter / d)
        if first is not None and abs(scale - 1.0) <= self.rescale_tolerance:
            return first
        log.debug("median diameter %.1f px -> pass at scale %.2f", d, scale)
        return self.predict_at_scale(x, scale)

    def estimate_diameter(self, x: np.ndarray) -> tuple[float, Instances | None]:
        """Median cell diameter of a prepared image, from a pass at the image's own scale.

        The pass runs on the central ``estimate_window`` square (the whole image when it is
        smaller, or when the window holds fewer than 3 cells).

        Returns:
            (median diameter in px, 0 when no cell was found; the pass's Instances when it
            covered the whole image, else None).
        """
        h, w = x.shape[:2]
        win = self.estimate_window
        if h > win or w > win:
            y0, x0 = max(0, (h - win) // 2), max(0, (w - win) // 2)
            part = self.predict_at_scale(x[y0 : y0 + win, x0 : x0 + win], 1.0)
            if part.n >= 3:
                return median_diameter(part.labels), None
        first = self.predict_at_scale(x, 1.0)
        return median_diameter(first.labels), first

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, **extra: Any) -> dict[str, Any]:
        net = self._require_net()
        return dict(
            state_dict=net.state_dict(),
            net=net.config(),
            nominal_diameter=self.nominal_diameter,
            metrics=dict(self.val_metrics),
            **extra,
        )

    def load(self, checkpoint: Path) -> None:
        """Rebuild the network from the checkpoint's own config and load its weights."""
        ckpt = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
        cfg = dict(ckpt["net"])
        cfg.pop("in_ch", None)
        cfg.pop("out_ch", None)
        self.net_cfg = cfg
        self.nominal_diameter = float(ckpt["nominal_diameter"])
        net = self.build_net()
        net.load_state_dict(ckpt["state_dict"])
        self.net = net.to(self.device).eval()
        self.val_metrics = dict(ckpt.get("metrics", {}))

    # ------------------------------------------------------------------ training data

    def _cache_key(self, s: Sample) -> str:
        key = f"{CACHE_VERSION}:{s.image}:{s.label}:{self.nominal_diameter}:{self.min_scale}:{self.max_scale}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def prepare_sample(self, s: Sample) -> dict[str, Any]:
        """Image, targets and sampling weight of one training sample at the network scale.

        Returns:
            dict(image 3xHxW float16, target 3xHxW float16 (cell, dy, dx), modality, scale).
        """
        raw = read_image(s.image)
        labels = read_labels(s.label, shape=raw.shape[:2])
        d = median_diameter(labels)
        scale = self._clamp_scale(self.nominal_diameter / d) if d > 0 else 1.0
        shape = scaled_shape(labels.shape, scale)
        x = resize_image(prepare_image(raw), shape)
        lab = resize_labels(labels, shape)
        flows = labels_to_flows(lab)
        target = np.concatenate([(lab > 0)[None].astype(np.float32), flows])
        return dict(
            image=x.transpose(2, 0, 1).astype(np.float16),
            target=target.astype(np.float16),
            modality=modality(raw),
            scale=scale,
        )

    def prepare_data(self, samples: list[Sample], cache_dir: Path | None) -> list[dict[str, Any]]:
        """:meth:`prepare_sample` for every sample, cached as ``.npz`` under ``cache_dir``."""
        out = []
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        for s in tqdm(samples, desc="flow targets", unit="img", leave=False):
            path = cache_dir / f"{s.id}-{self._cache_key(s)}.npz" if cache_dir else None
            if path is not None and path.is_file():
                with np.load(path) as z:
                    item = {k: z[k] for k in ("image", "target")}
                    item["modality"] = str(z["modality"])
                    item["scale"] = float(z["scale"])
            else:
                item = self.prepare_sample(s)
                if path is not None:
                    with atomic_write(path, "wb") as fh:
                        np.savez(fh, **item)
            out.append(item)
        return out

    def sampling_weights(self, data: list[dict[str, Any]]) -> np.ndarray:
        """Per-image probability: modality oversampling x sqrt(area in crops), clipped to [1, 3]."""
        w = []
        for d in data:
            area = d["image"].shape[1] * d["image"].shape[2] / self.crop**2
            w.append(
                self.oversample.get(d["modality"], 1.0) * float(np.clip(math.sqrt(area), 1, 3))
            )
        w = np.asarray(w, np.float64)
        return w / w.sum()

    def sampling_schedule(self, data: list[dict[str, Any]]) -> list[tuple[float, np.ndarray]]:
        """Phases of training as ``(start progress in [0, 1), per-image probabilities)``,
        in order; the teacher samples one way throughout."""
        return [(0.0, self.sampling_weights(data))]

    def make_batch(
        self, data: list[dict[str, Any]], weights: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bx3xSxS images and Bx3xSxS targets (cell, dy, dx) of augmented random crops."""
        imgs, tgts = [], []
        for i in rng.choice(len(data), size=self.batch_size, p=weights):
            img, tgt = sample_crop(
                data[i]["image"].astype(np.float32),
                data[i]["target"].astype(np.float32),
                rng,
                self.crop,
                self.scale_jitter,
                self.color,
            )
            imgs.append(img)
            tgts.append(tgt)
        return torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(tgts))

    @staticmethod
    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cellpose's loss: ``MSE(out[:, 1:], 5 * flows) / 2 + BCE(out[:, 0], cell)``."""
        flow_loss = F.mse_loss(out[:, 1:], FLOW_SCALE * target[:, 1:]) / 2.0
        cell_loss = F.binary_cross_entropy_with_logits(out[:, 0], target[:, 0])
        return flow_loss + cell_loss

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
            raise ConfigError("flowunet: no training images")
        threads = _ThreadChooser(self.num_threads)
        torch.manual_seed(self.seed)
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        best_path, last_path = work_dir / "best.pth", work_dir / "last.pth"
        t_start = time.time()
        data = self.prepare_data(train, work_dir / "cache")
        schedule = self.sampling_schedule(data)
        mods = {m: sum(d["modality"] == m for d in data) for m in DEFAULT_OVERSAMPLE}
        log.info(
            "flowunet: %d training images %s, targets ready in %.0f s",
            len(data),
            mods,
            time.time() - t_start,
        )
        self.net = self.build_net().to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        state: dict[str, Any] = dict(step=0, train_seconds=0.0, best_f1=-1.0, history=[])
        rng = np.random.default_rng(self.seed)
        if resume and last_path.is_file():
            ck = torch.load(last_path, map_location="cpu", weights_only=False)
            self.net.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            state = ck["state"]
            rng = np.random.default_rng([self.seed, state["step"]])
            if best_path.is_file():
                self.val_metrics = dict(
                    torch.load(best_path, map_location="cpu", weights_only=False)["metrics"]
                )
            log.info("resumed from %s at step %d", last_path, state["step"])
        by_steps = self.max_steps is not None
        log.info(
            "flowunet: %d parameters, crop %d, batch %d, budget %s",
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
            "flowunet: %d steps, %.1f min of training steps, %.1f min wall (with targets and val)",
            state["step"],
            state["train_seconds"] / 60,
            (time.time() - t_start) / 60,
        )
        if not best_path.is_file():  # no val set: the last weights are the result
            _save(self._checkpoint(), best_path)
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
            _save(self._checkpoint(step=state["step"], history=state["history"]), best_path)
            log.info("new best F1@0.5 %.4f -> %s", f1, best_path)
        _save(self._checkpoint(optimizer=opt.state_dict(), state=state), last_path)


__all__ = ["FlowUNetTeacher", "FLOW_SCALE"]
