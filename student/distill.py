"""Distillation: train the student on labeled images plus fused pseudo-labels.

The training machinery (scale normalisation by the nominal diameter, cached flow targets,
augmented crops, AdamW with a time-based schedule, validation with the challenge F1,
atomic ``best.pth``/``last.pth``, ``--resume``) is the flow teacher's, shared from
:class:`cellfuse.nn.flow_training.FlowTrainer`; :class:`StudentTrainer` changes only what
differs:

- the network (:class:`student.model.StudentNet`, a registry variant);
- the data: pseudo-labeled images (``<id>_label.tiff``, ``<id>_conf.json``,
  ``<id>_ignore.tiff`` and ``manifest.jsonl``, :mod:`cellfuse.manifest`) are
  added to the labeled ones. Every target gets a 4th channel, the per-pixel loss weight:
  ``labeled_weight`` on labeled images; on pseudo-labeled ones the cell's fused confidence
  inside a cell, 1 on background, 0 on the ignore mask (times ``pseudo_weight``); 0 outside
  the image in crops that reach past it;
- the sampling: a crop comes from a labeled image with probability ``labeled_fraction``
  (within each group, the teacher's modality oversampling and size weighting); with
  ``finetune_fraction`` the last part of the budget draws labeled crops only;
- the loss: the teacher's (flow MSE / 2 + BCE) weighted per pixel, normalised by the pixel
  count so that weights keep their meaning across batches; with ``soft_teacher`` (a trained
  flow network: a big long-trained student-family one, or the flow U-Net teacher) its output
  maps on the same augmented crop are soft targets as well (:func:`soft_loss`, times
  ``soft_weight``), on every pixel of every crop, ignore mask included: knowledge
  distillation proper;
- validation and inference go through :class:`student.predictor.StudentPredictor`, the
  same code path as deployment, so the selected checkpoint is the best *deployed* model.

With ``pseudo=None`` the same command trains the labeled-only student (the ablation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cellfuse.config import load_config, start_work_dir
from cellfuse.errors import ConfigError
from cellfuse.files import atomic_write
from cellfuse.flow_instances import PostProcess
from cellfuse.flows import FLOW_SCALE
from cellfuse.instances import Instances
from cellfuse.io import read_image, read_labels
from cellfuse.layout import Sample
from cellfuse.manifest import list_pseudo
from cellfuse.nn.augment import check_color, check_scale_range, sample_crop
from cellfuse.nn.checkpoints import load_checkpoint
from cellfuse.nn.flow_data import load_npz_cached
from cellfuse.nn.flow_training import FlowTrainer, flow_loss
from cellfuse.nn.unet import UNet
from cellfuse.splits import resolve_splits
from student.model import VARIANTS, StudentNet, load_student

log = logging.getLogger(__name__)

PSEUDO_CACHE_VERSION = 1


def pseudo_weight_map(
    labels: np.ndarray, scores: np.ndarray, ignore: np.ndarray | None
) -> np.ndarray:
    """Per-pixel loss weight of a pseudo-labeled image.

    Args:
        labels: HxW integer pseudo-labels 1..N.
        scores: N float fused confidences (``scores[i]`` for label ``i + 1``).
        ignore: HxW bool/uint8 ignore mask (1 = do not learn), or None.

    Returns:
        HxW float32: confidence inside cells, 1 on background, 0 where ignored.
    """
    n = int(labels.max()) if labels.size else 0
    scores = np.asarray(scores, np.float32).reshape(-1)
    if scores.size < n:
        raise ConfigError(f"pseudo-label has {n} cells but {scores.size} confidences")
    lut = np.r_[np.float32(1.0), np.clip(scores[:n], 0.0, 1.0)].astype(np.float32)
    w = lut[labels]
    if ignore is not None:
        w[np.asarray(ignore) > 0] = 0.0
    return w


class StudentTrainer(FlowTrainer):
    """Trains a student (see module doc). Keyword arguments come from ``cfg.student``.

    Args:
        variant: name in :data:`student.model.VARIANTS`.
        net: architecture overrides of the variant (widths, blocks, full_ch, norm, act).
        pseudo: pseudo-label folder (with ``manifest.jsonl``), or None for labeled-only.
        labeled_weight: loss weight of labeled pixels.
        pseudo_weight: multiplier of the pseudo-label weight map.
        labeled_fraction: probability that a crop comes from a labeled image.
        finetune_fraction: the last fraction of the budget draws labeled crops only: the
            pseudo-labels pre-train, the labels fine-tune (the student ends on the truth's
            conventions, not the teachers'). 0 = mix throughout.
        max_pseudo: use at most this many pseudo-labeled images (None: all).
        soft_teacher: a trained flow network whose output maps are soft targets: a student's
            or the flow U-Net teacher's ``best.pth`` (or its work dir); it must share
            ``nominal_diameter``.
        soft_weight: weight of the soft-target loss.
        pseudo_noise: colour/noise probabilities (:func:`cellfuse.nn.augment.color_jitter`
            keys) merged over ``color`` for crops of pseudo-labeled images only: the
            student sees those images harder than the teachers did (noisy student, Xie et
            al. 2020). None: the same augmentation as labeled crops.
        pseudo_scale_jitter: the crop scale range of pseudo-labeled crops (None: the
            labeled crops' ``scale_jitter``).
        postprocess: :class:`cellfuse.flow_instances.PostProcess` fields.
        batch: tiles per network call at inference.
        **kwargs: :class:`~cellfuse.nn.flow_training.FlowTrainer` arguments (nominal_diameter, crop, batch_size, lr,
            train_minutes, val_every_minutes, tile, overlap, color, oversample, num_threads,
            device, seed, ...).
    """

    name = "student"

    def __init__(
        self,
        variant: str = "flow_s",
        net: dict[str, Any] | None = None,
        pseudo: str | None = None,
        labeled_weight: float = 2.0,
        pseudo_weight: float = 1.0,
        labeled_fraction: float = 0.5,
        finetune_fraction: float = 0.0,
        max_pseudo: int | None = None,
        soft_teacher: str | None = None,
        soft_weight: float = 1.0,
        pseudo_noise: dict[str, float] | None = None,
        pseudo_scale_jitter: tuple[float, float] | None = None,
        postprocess: dict[str, Any] | None = None,
        batch: int = 4,
        overlap: int = 64,
        **kwargs: Any,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown student variant {variant!r}; known: {sorted(VARIANTS)}")
        if not 0.0 < labeled_fraction <= 1.0:
            raise ConfigError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
        if not 0.0 <= finetune_fraction < 1.0:
            raise ConfigError(f"finetune_fraction must be in [0, 1), got {finetune_fraction}")
        self.pp = PostProcess.from_dict(postprocess)
        super().__init__(
            prob_threshold=self.pp.prob_threshold,
            flow_threshold=self.pp.flow_threshold,
            flow_iters=self.pp.flow_iters,
            min_size=self.pp.min_size,
            overlap=overlap,
            **kwargs,
        )
        self.variant = variant
        self.net_cfg = {**VARIANTS[variant], **(net or {})}
        self.pseudo = pseudo
        self.labeled_weight = float(labeled_weight)
        self.pseudo_weight = float(pseudo_weight)
        self.labeled_fraction = float(labeled_fraction)
        self.finetune_fraction = float(finetune_fraction)
        self.max_pseudo = max_pseudo
        self.infer_batch = int(batch)
        self.soft_weight = float(soft_weight)
        self.pseudo_color = (
            {**self.color, **check_color(pseudo_noise, "pseudo_noise")}
            if pseudo_noise
            else self.color
        )
        self.pseudo_scale_jitter = (
            check_scale_range(pseudo_scale_jitter, "pseudo_scale_jitter")
            if pseudo_scale_jitter
            else self.scale_jitter
        )
        self.soft_net = self._load_soft_teacher(soft_teacher) if soft_teacher else None

    def _load_soft_teacher(self, checkpoint: str | Path) -> torch.nn.Module:
        net, d = load_flow_network(checkpoint)
        if abs(d - self.nominal_diameter) > 1e-6:
            raise ConfigError(
                f"{checkpoint}: soft teacher works at cell diameter {d} px, the student at "
                f"{self.nominal_diameter}; soft targets need the same scale"
            )
        for p in net.parameters():
            p.requires_grad_(False)
        return net.to(self.device).eval()

    # ------------------------------------------------------------------ network

    def build_net(self) -> StudentNet:  # type: ignore[override]
        return StudentNet(3, 3, **self.net_cfg)

    @property
    def net_stride(self) -> int:
        return 2 ** len(self.net_cfg["widths"])

    def predictor(self):
        """A :class:`StudentPredictor` over the current weights (validation and inference)."""
        from student.predictor import StudentPredictor

        return StudentPredictor(
            self._require_net(),
            nominal_diameter=self.nominal_diameter,
            diameter=self.diameter,
            postprocess=self.pp,
            tile=self.tile,
            overlap=self.overlap,
            batch=self.infer_batch,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            rescale_tolerance=self.rescale_tolerance,
            estimate_window=self.estimate_window,
            device=str(self.device),
        )

    def predict(self, image: np.ndarray) -> Instances:
        return self.predictor().predict(image)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_meta(self) -> dict[str, Any]:
        return dict(
            net=self._require_net().config(),
            variant=self.variant,
            nominal_diameter=self.nominal_diameter,
            postprocess=self.pp.to_dict(),
            predictor=dict(tile=self.tile, overlap=self.overlap),
        )

    def load(self, checkpoint: Path) -> None:
        net, meta = load_student(checkpoint)
        self.net_cfg = {k: v for k, v in net.config().items() if k not in ("in_ch", "out_ch")}
        self.nominal_diameter = float(meta["nominal_diameter"])
        self.pp = PostProcess.from_dict(meta.get("postprocess"))
        self.net = net.to(self.device).eval()
        self.val_metrics = dict(meta.get("metrics") or {})

    # ------------------------------------------------------------------ data

    def _pseudo_key(self, item: dict[str, Path]) -> str:
        stamp = ":".join(
            f"{p}:{p.stat().st_mtime_ns}" for k, p in item.items() if k != "id" and p.is_file()
        )
        key = f"{PSEUDO_CACHE_VERSION}:{stamp}:{self.nominal_diameter}:{self.min_scale}:{self.max_scale}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def prepare_pseudo_sample(self, item: dict[str, Path]) -> dict[str, Any]:
        """Like :meth:`prepare_sample`, with the weight map as a 4th target channel."""
        import tifffile

        raw = read_image(item["image"])
        labels = read_labels(item["label"], shape=raw.shape[:2])
        scores = json.loads(Path(item["conf"]).read_text())["scores"]
        ignore = tifffile.imread(item["ignore"]) if item["ignore"].is_file() else None
        weight = pseudo_weight_map(labels, scores, ignore) * self.pseudo_weight
        return self.prepare_targets(raw, labels, weight)

    def prepare_data(self, samples: list[Sample], cache_dir: Path | None) -> list[dict[str, Any]]:
        """Labeled samples (the teacher's targets, source "labeled") + pseudo-labeled ones."""
        data = super().prepare_data(samples, cache_dir)
        for d in data:
            d["source"] = "labeled"
        if not self.pseudo:
            return data
        items = list_pseudo(self.pseudo)
        if self.max_pseudo is not None:
            items = items[: int(self.max_pseudo)]
        if not items:
            raise ConfigError(
                f"{self.pseudo}: no usable pseudo-labels (manifest has no 'ok' image)"
            )
        pdir = cache_dir / "pseudo" if cache_dir is not None else None
        if pdir is not None:
            pdir.mkdir(parents=True, exist_ok=True)
        from tqdm.auto import tqdm

        for item in tqdm(items, desc="pseudo targets", unit="img", leave=False):
            path = pdir / f"{item['id']}-{self._pseudo_key(item)}.npz" if pdir else None
            d = load_npz_cached(path, lambda item=item: self.prepare_pseudo_sample(item))
            d["source"] = "pseudo"
            data.append(d)
        log.info("student: %d labeled + %d pseudo-labeled images", len(samples), len(items))
        return data

    def sampling_weights(
        self, data: list[dict[str, Any]], labeled_fraction: float | None = None
    ) -> np.ndarray:
        """The teacher's per-image weights within each source, mixed by ``labeled_fraction``
        (default: the trainer's)."""
        frac = self.labeled_fraction if labeled_fraction is None else labeled_fraction
        w = np.zeros(len(data), np.float64)
        groups = {"labeled": frac, "pseudo": 1.0 - frac}
        present = {s for s in groups if any(d["source"] == s for d in data)}
        for src in present:
            idx = [i for i, d in enumerate(data) if d["source"] == src]
            share = groups[src] if len(present) > 1 else 1.0
            w[idx] = super().sampling_weights([data[i] for i in idx]) * share
        return w / w.sum()

    def sampling_schedule(self, data: list[dict[str, Any]]) -> list[tuple[float, np.ndarray]]:
        """Mixed crops, then (``finetune_fraction``) labeled crops only."""
        mixed = [(0.0, self.sampling_weights(data))]
        if self.finetune_fraction <= 0 or not any(d["source"] == "labeled" for d in data):
            return mixed
        return mixed + [(1.0 - self.finetune_fraction, self.sampling_weights(data, 1.0))]

    def make_batch(
        self, data: list[dict[str, Any]], weights: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bx3xSxS images and Bx4xSxS targets (cell, dy, dx, loss weight)."""
        imgs, tgts = [], []
        for i in rng.choice(len(data), size=self.batch_size, p=weights):
            tgt = data[i]["target"].astype(np.float32)
            if tgt.shape[0] == 3:  # labeled: a constant weight channel
                tgt = np.concatenate([tgt, np.full_like(tgt[:1], self.labeled_weight)])
            pseudo = data[i].get("source") == "pseudo"
            img, t = sample_crop(
                data[i]["image"].astype(np.float32),
                tgt,
                rng,
                self.crop,
                self.pseudo_scale_jitter if pseudo else self.scale_jitter,
                self.pseudo_color if pseudo else self.color,
            )
            imgs.append(img)
            tgts.append(t)
        return torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(tgts))

    def train_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The weighted hard-target loss, plus the soft teacher's when there is one."""
        out = self.net(x)
        loss = self.loss(out, y)
        if self.soft_net is None:
            return loss
        with torch.no_grad():
            soft = self.soft_net(x)
        return loss + self.soft_weight * soft_loss(out, soft)

    @staticmethod
    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel weighted cellpose loss; ``target[:, 3]`` is the weight (1 when absent)."""
        out = out.float()  # in fp32 under bf16 autocast (a no-op on fp32 outputs)
        if target.shape[1] < 4:
            return flow_loss(out, target)
        w = target[:, 3]
        flow_se = ((out[:, 1:3] - FLOW_SCALE * target[:, 1:3]) ** 2).mean(dim=1)
        bce = F.binary_cross_entropy_with_logits(out[:, 0], target[:, 0], reduction="none")
        return (w * (flow_se / 2.0 + bce)).mean()


def load_flow_network(checkpoint: str | Path) -> tuple[torch.nn.Module, float]:
    """The network and nominal cell diameter of a trained flow model: a student's or the flow
    U-Net teacher's training checkpoint (``best.pth``), or the work dir that holds it. Both
    output (cell logit, scaled flows) from the same prepared image at that diameter."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "best.pth"
    ck = load_checkpoint(path, what="flow network checkpoint")
    if not {"net", "state_dict", "nominal_diameter"} <= set(ck):
        raise ConfigError(f"{path}: not a student or flow U-Net training checkpoint")
    if "variant" in ck:
        net, _ = load_student(path)
        return net, float(ck["nominal_diameter"])
    net = UNet(**ck["net"])  # the flow U-Net teacher's network, rebuilt from its own config
    net.load_state_dict(ck["state_dict"])
    return net.eval(), float(ck["nominal_diameter"])


def soft_loss(out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """Distillation loss against a teacher's raw output maps (cell logit, 2 scaled flows):
    the cellpose loss (:func:`~cellfuse.nn.flow_training.flow_loss`) with the teacher's cell probability and
    unit flows as the targets."""
    target = torch.cat([torch.sigmoid(teacher_out[:, :1]), teacher_out[:, 1:] / FLOW_SCALE], 1)
    return flow_loss(out, target)


def _n_pseudo(trainer: StudentTrainer) -> int:
    if not trainer.pseudo:
        return 0
    n = len(list_pseudo(trainer.pseudo))
    return n if trainer.max_pseudo is None else min(n, int(trainer.max_pseudo))


def student_kwargs(cfg: Any) -> dict[str, Any]:
    """:class:`StudentTrainer` arguments of a config: ``cfg.student``, with the config's
    top-level ``seed`` (the one ``cellfuse run`` writes into every stage config) when
    ``student.seed`` is not set."""
    scfg = cfg.student.to_dict() if hasattr(cfg.student, "to_dict") else dict(cfg.student)
    scfg.setdefault("seed", int(cfg.get("seed", 0)))
    return scfg


def distill(cfg: Any, work_dir: str | Path, *, resume: bool = False) -> Path:
    """Build ``cfg.student``, train it on ``cfg.data`` (+ pseudo-labels), record the result.

    Returns:
        The best checkpoint; ``work_dir/result.json`` records it with the val scores, the
        number of pseudo-labeled images and the wall time.
    """
    if "student" not in cfg:
        raise ConfigError("config has no 'student' dict (student = dict(variant='flow_s', ...))")
    work_dir = start_work_dir(cfg, work_dir)
    trainer = StudentTrainer(**student_kwargs(cfg))
    train, val = resolve_splits(cfg.data)
    log.info(
        "distilling %s on %d labeled images (val %d), pseudo-labels: %s",
        trainer.variant,
        len(train),
        len(val),
        trainer.pseudo,
    )
    t0 = time.time()
    ckpt = Path(trainer.fit(train, val, work_dir, resume=resume))
    result = dict(
        checkpoint=str(ckpt),
        config=str(work_dir / "config.py"),
        variant=trainer.variant,
        pseudo=trainer.pseudo,
        n_pseudo=_n_pseudo(trainer),
        val_metrics=trainer.val_metrics,
        train_seconds=round(time.time() - t0, 1),
    )
    with atomic_write(work_dir / "result.json", "w") as fh:
        json.dump(result, fh, indent=2)
    log.info("done: %s", result)
    return ckpt


def distill_file(config: str, work_dir: str, resume: str = "0") -> None:
    """:func:`distill` of a config file; the entry point of a child process
    (:func:`cellfuse.child_process.run_in_child`), whose arguments are strings."""
    distill(load_config(config), work_dir, resume=resume == "1")


__all__ = [
    "StudentTrainer",
    "distill",
    "distill_file",
    "student_kwargs",
    "list_pseudo",
    "load_flow_network",
    "pseudo_weight_map",
    "soft_loss",
]
