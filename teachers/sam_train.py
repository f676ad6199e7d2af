"""Training of :class:`teachers.sam.SAMTeacher`: prompts sampled from labeled cells.

One step: ``crops_per_step`` random crops, each rescaled so its median cell is the
teacher's ``nominal_diameter`` (with a random zoom jitter) and augmented; each crop is
encoded once and answers ``prompts_per_crop`` prompts (centroid + jitter, optional nearest
neighbours as negative points, optionally a noisy box and, for a refiner, a mask prompt:
the prompted cell in an imperfect copy of the labels, as another teacher would have drawn
it). Loss as in the SAM paper:
20 * focal + dice on the mask (upsampled to the encoder frame), plus MSE between the
IoU head and the mask's actual IoU. With ``multimask`` the mask loss is the minimum over
the three outputs (the IoU loss covers all three).

The run is bounded by ``max_steps`` (reproducible; ``time_budget_min`` is then a cap) or by
minutes (``time_budget_min``); validation is
the challenge F1 with the ground-truth centroids as prompts, the best checkpoint by
F1@0.5 is kept, ``last.pth`` (model + optimizer + RNG) makes ``--resume`` continue.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cellfuse.errors import ConfigError
from cellfuse.instances import centroids
from cellfuse.nn.checkpoints import save_checkpoint
from teachers.sam import SAMTeacher
from teachers.sam_calibration import (  # noqa: F401  (re-exported)
    MASK_THRESHOLDS,
    ZOOMS,
    _pick,
    calibrate_and_store,
    calibrate_mask_threshold,
    calibrate_zoom,
    evaluate_sam,
    prompt_noise,
    store_calibration,
    truth_prompts,
)
from teachers.sam_prompts import (
    MASK_MERGE_PROB,
    MASK_NOISE,
    decode,
    encode,
    equivalent_diameters,
    mask_prompt_input,
    neighbour_negatives,
    perturb_labels,
    point_prompts,
    prepare_image,
)

log = logging.getLogger(__name__)

DEFAULT_MODALITY_WEIGHTS = {"fluorescence": 1.0, "stained": 3.0, "brightfield": 3.0}


@dataclass
class TrainImage:
    """One labeled image prepared for crop sampling."""

    image: np.ndarray  # HxWx3 float32 in [0, 255] (prepare_image)
    labels: np.ndarray  # HxW uint16/uint32
    diameter: float  # median equivalent diameter of its cells, px
    weight: float  # sampling weight (modality oversampling)


def load_train_images(
    samples: list, invert_bright: bool, modality_weights: dict[str, float] | None = None
) -> list[TrainImage]:
    """Read and prepare labeled samples (``Sample.image`` / ``Sample.label`` paths)."""
    from cellfuse.io import read_image, read_labels
    from cellfuse.modality import modality

    weights = DEFAULT_MODALITY_WEIGHTS if modality_weights is None else modality_weights
    out = []
    for s in samples:
        raw = read_image(s.image)
        lab = read_labels(s.label, shape=raw.shape[:2])
        d = equivalent_diameters(lab)
        if d.size == 0:
            continue
        w = float(weights.get(modality(raw), 1.0))
        out.append(TrainImage(prepare_image(raw, invert_bright), lab, float(np.median(d)), w))
    return out


# ----------------------------------------------------------------------------- sampling


def sample_crop(
    item: TrainImage,
    img_size: int,
    nominal: float,
    rng: np.random.Generator,
    scale_jitter: float = 0.3,
    limits: tuple[float, float] = (0.25, 4.0),
) -> tuple[torch.Tensor, np.ndarray]:
    """A random window rescaled so cells are ~``nominal`` px, at most ``img_size`` a side.

    Returns:
        (3xhxw float32 image in [0, 255], hxw int64 labels), h, w <= img_size.
    """
    s = float(
        np.clip(nominal / item.diameter * 2 ** rng.uniform(-scale_jitter, scale_jitter), *limits)
    )
    H, W = item.labels.shape
    ch, cw = min(H, int(img_size / s)), min(W, int(img_size / s))
    y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    img = torch.from_numpy(np.ascontiguousarray(item.image[y0 : y0 + ch, x0 : x0 + cw])).permute(
        2, 0, 1
    )
    lab = torch.from_numpy(item.labels[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32))
    size = (min(img_size, max(1, round(ch * s))), min(img_size, max(1, round(cw * s))))
    img = F.interpolate(img[None], size, mode="bilinear", align_corners=False, antialias=s < 1)[0]
    lab = F.interpolate(lab[None, None], size, mode="nearest-exact")[0, 0]
    return img, lab.numpy().astype(np.int64)


def augment(
    img: torch.Tensor, lab: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray]:
    """Random flips / 90-degree turns and colour jitter (gain, gamma, channel mix, grey, noise)."""
    k = int(rng.integers(4))
    img, lab = torch.rot90(img, k, (1, 2)), np.rot90(lab, k)
    if rng.random() < 0.5:
        img, lab = img.flip(2), lab[:, ::-1]
    x = img / 255.0
    if rng.random() < 0.3:
        x = x[torch.from_numpy(rng.permutation(3))]
    if rng.random() < 0.2:
        x = x.mean(0, keepdim=True).expand(3, -1, -1)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (3, 1, 1)).astype(np.float32))
    x = (x * gain).clamp(0, 1) ** float(np.exp(rng.uniform(-0.4, 0.4)))
    if rng.random() < 0.3:
        x = x + float(rng.uniform(0, 0.05)) * torch.randn_like(x)
    return (x.clamp(0, 1) * 255.0).contiguous(), np.ascontiguousarray(lab)


def sample_prompts(
    lab: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    img_size: int,
    jitter: float = 0.2,
    neg_points: int = 2,
    neg_radius: float = 30.0,
    use_neg: bool = True,
    box: bool = False,
    prior: np.ndarray | None = None,
    min_area: int = 6,
) -> dict[str, torch.Tensor] | None:
    """Prompts and targets for up to ``n`` cells of an hxw label crop.

    Args:
        lab: hxw int labels of the crop (h, w <= img_size).
        n: most prompts.
        rng: random generator.
        img_size: encoder frame; targets are padded to it.
        jitter: std of the point's offset from the centroid, in cell radii.
        neg_points: negative-point slots per prompt (filled with the nearest other cells'
            centroids within ``neg_radius`` px when ``use_neg``, else padding).
        box: add each cell's box with noise (std 10% of its side) as a prompt.
        prior: an imperfect copy of ``lab`` (:func:`perturb_labels`): each prompt also gets,
            as a mask prompt, the prior's cell under its point (else the prior's copy of
            the prompted cell).
        min_area: cells smaller than this (px) are not prompted.

    Returns:
        ``coords`` Bx(1+K)x2 (x, y), ``labels`` Bx(1+K), ``boxes`` Bx4 or absent,
        ``masks`` BxSxS float targets, ``mask_in`` BxSxS float mask prompts (with
        ``prior``); None when the crop holds no cell.
    """
    area = np.bincount(lab.ravel())
    ids = np.flatnonzero(area >= min_area)
    ids = ids[ids > 0]
    if ids.size == 0:
        return None
    cen = centroids(lab, int(lab.max()))
    all_c = cen[ids - 1]
    pick = rng.choice(ids.size, size=min(n, ids.size), replace=False)
    chosen = ids[pick]
    pos = np.empty((chosen.size, 2))
    for j, i in enumerate(chosen):
        r = math.sqrt(area[i] / math.pi)
        p = all_c[pick[j]] + rng.normal(0, jitter * r, 2)
        yi, xi = int(round(p[0])), int(round(p[1]))
        if not (0 <= yi < lab.shape[0] and 0 <= xi < lab.shape[1] and lab[yi, xi] == i):
            yy, xx = np.nonzero(lab == i)
            k = int(np.argmin((yy - all_c[pick[j], 0]) ** 2 + (xx - all_c[pick[j], 1]) ** 2))
            p = np.array([yy[k], xx[k]], np.float64)
        pos[j] = p
    neg_idx = None
    if neg_points > 0:
        neg_idx = neighbour_negatives(all_c, neg_points, neg_radius)[pick]
        if not use_neg:
            neg_idx[:] = -1
    coords, labels = point_prompts(pos, all_c, neg_idx)
    h, w = lab.shape
    padded = np.zeros((img_size, img_size), lab.dtype)
    padded[:h, :w] = lab
    out = {
        "coords": torch.from_numpy(coords),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(padded[None] == chosen[:, None, None]).float(),
    }
    if prior is not None:
        at = prior[pos[:, 0].round().astype(int), pos[:, 1].round().astype(int)]
        at = np.where(at > 0, at, chosen)
        pp = np.zeros((img_size, img_size), prior.dtype)
        pp[:h, :w] = prior
        out["mask_in"] = torch.from_numpy(pp[None] == at[:, None, None]).float()
    if box:
        from cellfuse.instances import bboxes

        bb = bboxes(lab, int(lab.max()))[chosen - 1].astype(np.float64)  # y0 x0 y1 x1
        side = np.repeat(np.stack([bb[:, 2] - bb[:, 0], bb[:, 3] - bb[:, 1]], 1), 2, 1)[
            :, [0, 2, 1, 3]
        ]
        bb = bb + rng.normal(0, 0.1, bb.shape) * np.minimum(side, 20)
        out["boxes"] = torch.from_numpy(bb[:, [1, 0, 3, 2]].astype(np.float32))
    return out


# ----------------------------------------------------------------------------- losses


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss per mask (mean over pixels): ...xHxW -> ..."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask: ...xHxW -> ..."""
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with the target mask: ...xHxW -> ..."""
    pred = (logits > 0).float().flatten(-2)
    t = target.flatten(-2)
    inter = (pred * t).sum(-1)
    union = pred.sum(-1) + t.sum(-1) - inter
    return inter / union.clamp(min=1)


def sam_loss(
    low_res: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, img_size: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """20 * focal + dice (min over outputs) + MSE(IoU head, actual IoU).

    The loss is taken at the decoder's low resolution (L = S / patch * 4) against the
    area-averaged target: for cells of ~20 px that is 2 px per low-res pixel and 4x
    cheaper than at the encoder frame, the largest cost of a step on a CPU.

    Args:
        low_res: BxKxLxL logits; iou_pred: BxK; target: BxSxS float masks, S = img_size.
    """
    logits = low_res
    f = img_size // low_res.shape[-1]
    t = F.avg_pool2d(target[:, None], f) if f > 1 else target[:, None]
    t = t.expand_as(logits)
    focal, dice = focal_loss(logits, t), dice_loss(logits, t)
    per = 20 * focal + dice
    best = per.detach().argmin(dim=1)
    ar = torch.arange(per.shape[0], device=per.device)
    iou_true = mask_iou(logits.detach(), (t > 0.5).float())
    iou_l = F.mse_loss(iou_pred, iou_true)
    loss = per[ar, best].mean() + iou_l
    return loss, {
        "focal": float(focal.detach()[ar, best].mean()),
        "dice": float(dice.detach()[ar, best].mean()),
        "iou_mse": float(iou_l.detach()),
        "iou": float(iou_true[ar, best].mean()),
    }


# ----------------------------------------------------------------------------- checkpoints


def _save(path: Path, obj: dict) -> None:
    save_checkpoint(obj, path)


def _lr_factor(step: int, progress: float, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * 0.95 + 0.05


# ----------------------------------------------------------------------------- training


def train_sam(
    teacher: SAMTeacher,
    train: list,
    val: list,
    work_dir: Path,
    *,
    resume: bool = False,
    time_budget_min: float = 30.0,
    max_steps: int | None = None,
    calibrate_images: int = 40,
    val_every_steps: int | None = None,
    lr: float = 3e-4,
    weight_decay: float = 0.01,
    warmup_steps: int = 100,
    crops_per_step: int = 4,
    prompts_per_crop: int = 16,
    jitter: float = 0.2,
    neg_points: int = 2,
    neg_prob: float = 0.5,
    box_prob: float = 0.0,
    mask_prob: float = 0.0,
    mask_noise: float = MASK_NOISE,
    mask_merge_prob: float = MASK_MERGE_PROB,
    scale_jitter: float = 0.3,
    modality_weights: dict[str, float] | None = None,
    val_every_min: float = 6.0,
    val_max_images: int | None = None,
    seed: int = 0,
    num_threads: int = 2,
    log_every: int = 25,
    amp: str | None = None,
) -> Path:
    """Train ``teacher.sam`` on labeled samples; returns the best checkpoint (``best.pth``).

    Args:
        teacher: the teacher whose model is trained in place (left holding the best weights).
        train, val: ``cellfuse.layout.Sample`` lists.
        work_dir: checkpoints ``best.pth`` / ``last.pth`` and the log go here.
        resume: continue from ``work_dir/last.pth`` (model, optimizer, step, clock, RNG).
        time_budget_min: wall-clock budget of the whole run (resumed runs included).
        max_steps: optional step limit.
        val_every_steps: validate every this many steps instead of every ``val_every_min``.
        calibrate_images: training images used to calibrate the mask threshold and the
            inference zoom after training (0 = keep SAM's 0.0 and the training zoom), see
            :func:`calibrate_and_store`.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up, then cosine in time.
        crops_per_step, prompts_per_crop: images per step and prompts per image.
        jitter: point offset from the centroid, std in cell radii.
        neg_points, neg_prob: negative-point slots per prompt and how often they are used.
        box_prob: how often a step prompts with noisy boxes as well.
        mask_prob: how often a step also gives each prompt a mask prompt: the cell from an
            imperfect copy of the labels (:func:`perturb_labels` with ``mask_noise`` and
            ``mask_merge_prob``), as another teacher's cell would be at inference.
        scale_jitter: log2 range of the random zoom around the nominal cell size.
        modality_weights: sampling weight per modality (oversample rare ones).
        val_every_min: minutes between validations.
        val_max_images: validate on at most this many (evenly spaced) val images.
        seed: RNG seed; num_threads: torch CPU threads.
        log_every: steps between loss logs.
        amp: "bf16": encoder, decoder and loss run under bfloat16 autocast on a CUDA device
            that supports it (losses in fp32); ignored on the CPU (plain fp32 there).
    """
    torch.set_num_threads(num_threads)
    if amp not in (None, "bf16"):
        raise ConfigError(f"SAM train.amp must be None or 'bf16', got {amp!r}")
    bf16 = amp == "bf16" and teacher.device.type == "cuda" and torch.cuda.is_bf16_supported()
    # re-entered each step: autocast contexts are reusable, nullcontext too
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    work_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sam, S, dev = teacher.sam, teacher.img_size, teacher.device
    if teacher.freeze_encoder:
        sam.image_encoder.requires_grad_(False)
    params = [p for p in sam.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    log.info(
        "SAM %s: %.2fM trainable of %.2fM params, encoder %s",
        teacher.variant,
        sum(p.numel() for p in params) / 1e6,
        sum(p.numel() for p in sam.parameters()) / 1e6,
        "frozen" if teacher.freeze_encoder else "trained",
    )
    step, elapsed, best, history = 0, 0.0, -1.0, []
    last_path, best_path = work_dir / "last.pth", work_dir / "best.pth"
    if resume and last_path.is_file():
        ck = torch.load(last_path, map_location="cpu", weights_only=True)
        sam.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed, best, history = ck["step"], ck["elapsed"], ck["best"], ck["history"]
        rng.bit_generator.state = ck["rng_numpy"]
        torch.set_rng_state(ck["rng_torch"])
        log.info("resumed from %s at step %d (%.1f min)", last_path, step, elapsed / 60)
    elif resume:
        log.warning("--resume: %s not found, starting from scratch", last_path)

    items = load_train_images(train, teacher.invert_bright, modality_weights)
    prob = np.array([it.weight for it in items])
    prob /= prob.sum()
    budget = time_budget_min * 60.0
    neg_r = teacher.neg_radius * teacher.nominal_diameter
    noise = {"mask_noise": mask_noise, "mask_merge_prob": mask_merge_prob}

    def checkpoint(metrics: dict[str, Any]) -> None:
        nonlocal best
        history.append({"step": step, "minutes": round(elapsed / 60, 2), **metrics})
        meta = {"variant": teacher.variant, "step": step, "val": metrics}
        if metrics["f1_50"] > best:
            best = metrics["f1_50"]
            _save(best_path, {"model": sam.state_dict(), **meta})
            teacher.val_metrics = dict(metrics, step=step)
        _save(
            last_path,
            {
                "model": sam.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "best": best,
                "history": history,
                "rng_numpy": rng.bit_generator.state,
                "rng_torch": torch.get_rng_state(),
                **meta,
            },
        )
        log.info(
            "step %d (%.1f min): val F1@0.5 %.4f F1@0.75 %.4f (best %.4f)",
            step,
            elapsed / 60,
            metrics["f1_50"],
            metrics["f1_75"],
            best,
        )

    t_start, last_val = time.time() - elapsed, elapsed
    run = {"loss": 0.0, "iou": 0.0, "n": 0}
    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, initial=step, desc="sam", unit="step", mininterval=10, disable=None)
    while elapsed < budget and (max_steps is None or step < max_steps):
        # With max_steps the schedule depends on steps only (reproducible on any machine);
        # the time budget is then only a safety cap.
        progress = step / max_steps if max_steps else elapsed / budget
        for g in opt.param_groups:
            g["lr"] = lr * _lr_factor(step, progress, warmup_steps)
        sam.train()
        crops, prompts = [], []
        use_box = rng.random() < box_prob
        use_mask = mask_prob > 0 and rng.random() < mask_prob  # no draw: old runs replay
        while len(crops) < crops_per_step:
            it = items[int(rng.choice(len(items), p=prob))]
            img, lab = augment(
                *sample_crop(
                    it, S, teacher.nominal_diameter, rng, scale_jitter, teacher.scale_limits
                ),
                rng,
            )
            pr = sample_prompts(
                lab,
                prompts_per_crop,
                rng,
                img_size=S,
                jitter=jitter,
                neg_points=neg_points,
                neg_radius=neg_r,
                use_neg=rng.random() < neg_prob,
                box=use_box,
                prior=perturb_labels(lab, rng, mask_noise, mask_merge_prob) if use_mask else None,
            )
            if pr is not None:
                crops.append(img.to(dev))
                prompts.append({k: v.to(dev) for k, v in pr.items()})
        with autocast, torch.set_grad_enabled(not teacher.freeze_encoder):
            emb = encode(sam, crops)
        loss = torch.zeros((), device=dev)
        for k, pr in enumerate(prompts):
            mask_in = pr.get("mask_in")
            with autocast:
                low, iou = decode(
                    sam,
                    emb[k : k + 1],
                    pr["coords"],
                    pr["labels"],
                    pr.get("boxes"),
                    teacher.multimask,
                    None if mask_in is None else mask_prompt_input(mask_in, sam),
                )
            l_k, parts = sam_loss(low.float(), iou.float(), pr["masks"], S)
            loss = loss + l_k / len(prompts)
            run["iou"] += parts["iou"] / len(prompts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        run["loss"] += float(loss.detach())
        run["n"] += 1
        elapsed = time.time() - t_start
        if step % log_every == 0:
            log.info(
                "step %d %.1f min lr %.2e loss %.4f train-IoU %.3f",
                step,
                elapsed / 60,
                opt.param_groups[0]["lr"],
                run["loss"] / run["n"],
                run["iou"] / run["n"],
            )
            run = {"loss": 0.0, "iou": 0.0, "n": 0}
        if val_every_steps:
            due = step % val_every_steps == 0 and step != max_steps  # the last: below
        else:
            due = elapsed - last_val >= val_every_min * 60 and elapsed < budget
        if due:
            sam.eval()
            checkpoint(evaluate_sam(teacher, val, val_max_images, **noise))
            elapsed = time.time() - t_start
            last_val = elapsed
    bar.close()
    sam.eval()
    if not history or history[-1]["step"] != step:
        checkpoint(evaluate_sam(teacher, val, val_max_images, **noise))
    teacher.load(best_path)
    if calibrate_images:
        calibrate_and_store(teacher, train, best_path, calibrate_images, **noise)
        if val:
            teacher.val_metrics = dict(
                evaluate_sam(teacher, val, val_max_images, **noise), step=step
            )
    return best_path
