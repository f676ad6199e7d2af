"""Teacher 3: Segment Anything (SAM) prompted by the centroids of detected cells.

SAM answers a point prompt with a mask and a predicted IoU. Here it refines the other
teachers' detections: each detected cell's centroid becomes a positive point, its nearest
neighbours' centroids optional negative points, optionally its box and its mask (SAM's
dense mask prompt: SAM then corrects the prompting teacher's mask, ``mask_prompts``), and
the masks are resolved into one label image by predicted IoU. Built from segment-anything's
own classes (``Sam``, ``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``,
``TwoWayTransformer``).

Variants (``sam_registry``): the official ``vit_b``/``vit_l``/``vit_h`` (exact official
architecture, so the released ``.pth`` files load; their mask decoder is fine-tuned) and
``vit_tiny`` (128 px input, 8 px patches, 6 windowed blocks) that trains from scratch on a CPU.

Resolution: nuclei are 8-60 px across, while SAM sees ``img_size`` squares. Each image is
rescaled so the median prompt cell is ``nominal_diameter`` px across, then the encoder runs
on overlapping ``img_size`` tiles; a prompt is answered by the tile whose core holds it and
its mask is sampled back onto the original pixel grid. Cells must be smaller than the tile
overlap (in rescaled px), as for :func:`cellfuse.tiling.predict_tiled`.

Builders: :mod:`teachers.sam_build`; prompt/mask helpers: :mod:`teachers.sam_prompts`;
training: :mod:`teachers.sam_train`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cellfuse.errors import ConfigError
from cellfuse.instances import Instances
from cellfuse.model_api import Teacher
from cellfuse.tiling import tile_centroid_owner, tile_grid
from teachers.sam_build import (
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    build_sam_vit_tiny,
    load_sam_weights,
    sam_registry,
)
from teachers.sam_prompts import (
    component_at,
    decode,
    encode,
    equivalent_diameters,
    mask_prompt_input,
    merge_prompt_points,
    neighbour_negatives,
    paint_masks,
    point_prompts,
    prepare_image,
    prompt_scale,
    sample_window,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- teacher


class SAMTeacher(Teacher):
    """SAM prompted by cell centroids; trains ``vit_tiny`` or fine-tunes an official one.

    Args:
        variant: key of :data:`sam_registry`.
        checkpoint: local weights to start from (official ``.pth``), or None.
        freeze_encoder: train only prompt encoder + mask decoder (default: True when
            ``checkpoint`` is given, else False).
        nominal_diameter: median cell diameter (px) the encoder sees after rescaling, in
            training.
        infer_diameter: the same at inference; None = the value calibrated on the training
            images and stored in the checkpoint (:func:`teachers.sam_train.calibrate_zoom`),
            else ``nominal_diameter``. A larger zoom gives finer masks (2 px per mask pixel
            for ``vit_tiny``) and costs time.
        scale_limits: bounds of the rescaling factor.
        tile_overlap: overlap of encoder tiles, in rescaled px (> the largest cell).
        multimask: predict three masks and keep the one with the best predicted IoU
            (SAM's single-point mode) instead of the single-mask token.
        neg_points: nearest other prompts used as negative points (0 = none).
        neg_radius: largest distance of a negative point, in nominal diameters.
        use_boxes: also prompt with each detection's bounding box (only when the prompts
            come as one Instances, whose boxes belong to its centroids).
        mask_prompts: also prompt with each detection's mask, as SAM's dense mask prompt
            (only when the prompts come as one Instances): SAM then corrects the prompting
            teacher's masks. Train with ``train=dict(mask_prob=...)``.
        iou_thresh: drop masks whose predicted IoU is lower.
        mask_threshold: logit above which a pixel is in the mask; None = the value stored
            in the checkpoint by :func:`teachers.sam_train.calibrate_mask_threshold` (0.0,
            SAM's own, for official checkpoints).
        min_area: drop masks smaller than this (original px).
        merge_radius: prompts closer than this (px) are merged.
        prompt_batch: prompts decoded at once.
        invert_bright: invert bright-background images (see :func:`prepare_image`).
        prompt_teacher: ``dict(cfg=<teacher dict or config path>, checkpoint=...)`` whose
            detections prompt :meth:`predict`; without it ``predict`` returns nothing.
        train: training hyper-parameters for :func:`teachers.sam_train.train_sam`.
        device: torch device for inference and training.
        require_checkpoint: raise unless ``checkpoint`` is given (fine-tuning configs).
    """

    name = "sam"

    @classmethod
    def offset_seed(cls, tcfg: dict[str, Any], cfg: Any, offset: int) -> None:
        train = dict(tcfg.get("train") or {})
        train["seed"] = int(train.get("seed", 0)) + offset
        tcfg["train"] = train

    def __init__(
        self,
        variant: str = "vit_tiny",
        checkpoint: str | None = None,
        freeze_encoder: bool | None = None,
        nominal_diameter: float = 20.0,
        infer_diameter: float | None = None,
        scale_limits: tuple[float, float] = (0.25, 4.0),
        tile_overlap: int = 48,
        multimask: bool = False,
        neg_points: int = 0,
        neg_radius: float = 1.5,
        use_boxes: bool = False,
        mask_prompts: bool = False,
        iou_thresh: float = 0.5,
        mask_threshold: float | None = None,
        min_area: int = 8,
        merge_radius: float = 3.0,
        prompt_batch: int = 64,
        invert_bright: bool = True,
        prompt_teacher: dict | None = None,
        train: dict | None = None,
        device: str = "cpu",
        require_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if require_checkpoint and not checkpoint:
            raise ConfigError(
                f"SAM {variant} needs its official weights: pass "
                "--cfg-options teacher.checkpoint=/path/to/sam_vit_b_01ec64.pth (a local file)"
            )
        if variant not in sam_registry:
            raise ConfigError(f"unknown SAM variant {variant!r}; known: {sorted(sam_registry)}")
        self.variant = variant
        self.checkpoint = checkpoint
        self.freeze_encoder = checkpoint is not None if freeze_encoder is None else freeze_encoder
        self.nominal_diameter = float(nominal_diameter)
        self.infer_diameter_cfg = infer_diameter
        self.infer_diameter = float(nominal_diameter if infer_diameter is None else infer_diameter)
        self.scale_limits = (float(scale_limits[0]), float(scale_limits[1]))
        self.tile_overlap = int(tile_overlap)
        self.multimask = bool(multimask)
        self.neg_points = int(neg_points)
        self.neg_radius = float(neg_radius)
        self.use_boxes = bool(use_boxes)
        self.mask_prompts = bool(mask_prompts)
        self.iou_thresh = float(iou_thresh)
        self.mask_threshold = mask_threshold
        self.min_area = int(min_area)
        self.merge_radius = float(merge_radius)
        self.prompt_batch = int(prompt_batch)
        self.invert_bright = bool(invert_bright)
        self.prompt_teacher_cfg = prompt_teacher
        self.train_cfg = dict(train or {})
        self.device = torch.device(device)
        self.sam = sam_registry[variant](checkpoint).to(self.device)
        if mask_threshold is not None:
            self.sam.mask_threshold = float(mask_threshold)
        self.img_size = int(self.sam.image_encoder.img_size)
        if self.tile_overlap >= self.img_size:
            raise ConfigError(f"tile_overlap {tile_overlap} must be < img_size {self.img_size}")
        self._prompt_teacher: Teacher | None = None
        self._warned_merge = False

    # -- Teacher interface

    def fit(self, train: list, val: list, work_dir: Path, *, resume: bool = False) -> Path:
        from teachers.sam_train import train_sam

        return train_sam(self, train, val, Path(work_dir), resume=resume, **self.train_cfg)

    def load(self, checkpoint: Path) -> None:
        """Load weights; calibrated settings stored with them apply unless the config sets them."""
        stored = load_sam_weights(self.sam, checkpoint)
        if self.mask_threshold is not None:
            self.sam.mask_threshold = float(self.mask_threshold)
        elif "mask_threshold" in stored:
            self.sam.mask_threshold = stored["mask_threshold"]
        if self.infer_diameter_cfg is None:
            self.infer_diameter = stored.get("infer_diameter", self.nominal_diameter)
        self.sam.eval()

    def predict(self, image: np.ndarray) -> Instances:
        """Segment with prompts from ``prompt_teacher``; empty Instances without one."""
        teacher = self.prompt_teacher()
        if teacher is None:
            log.debug("no prompt_teacher configured: SAM predicts nothing without prompts")
            return Instances.empty(image.shape[:2])
        return self.predict_with_prompts(image, teacher.predict(image))

    def prompt_teacher(self) -> Teacher | None:
        """The teacher named by ``prompt_teacher``, loaded on first use."""
        if self._prompt_teacher is None and self.prompt_teacher_cfg:
            from teachers import load_teacher

            pcfg = self.prompt_teacher_cfg
            if "cfg" not in pcfg or "checkpoint" not in pcfg:
                raise ConfigError("prompt_teacher needs dict(cfg=..., checkpoint=...)")
            tcfg = pcfg["cfg"]
            if isinstance(tcfg, (str, Path)):
                from mmengine.config import Config

                from cellfuse.config import resolve_config_path

                tcfg = Config.fromfile(str(resolve_config_path(tcfg))).teacher
            self._prompt_teacher = load_teacher(tcfg, pcfg["checkpoint"])
        return self._prompt_teacher

    @torch.no_grad()
    def predict_with_prompts(
        self, image: np.ndarray, prompts: Instances | Sequence[Instances] | None
    ) -> Instances:
        """One mask per (de-duplicated) prompt centroid, resolved by predicted IoU.

        Args:
            image: HxWxC image of any dtype.
            prompts: detections (one Instances, or one per teacher: their centroids are
                merged within ``merge_radius`` px); their median size sets the zoom.

        Returns:
            Instances over HxW; score = predicted IoU clipped to [0, 1].
        """
        if prompts is None:
            return self.predict(image)
        plist = [prompts] if isinstance(prompts, Instances) else list(prompts)
        diam = np.concatenate([equivalent_diameters(p.labels) for p in plist] + [np.zeros(0)])
        scale = prompt_scale(diam, self.infer_diameter, self.scale_limits)
        if (self.use_boxes or self.mask_prompts) and len(plist) == 1:
            p = plist[0]
            boxes = p.bboxes() if self.use_boxes else None
            prior = p.labels if self.mask_prompts else None
            return self.predict_points(image, p.centroids(), scale, boxes, prior)
        if self.mask_prompts and len(plist) > 1 and not self._warned_merge:
            self._warned_merge = True
            log.warning(
                "SAM mask_prompts needs the prompts as one Instances; got %d: prompting with "
                "their merged centroids only (cellfuse.fusion.merge_for_prompts makes one)",
                len(plist),
            )
        points = merge_prompt_points([p.centroids() for p in plist], self.merge_radius)
        return self.predict_points(image, points, scale)

    @torch.no_grad()
    def predict_points(
        self,
        image: np.ndarray,
        points: np.ndarray,
        scale: float,
        boxes: np.ndarray | None = None,
        prior: np.ndarray | None = None,
    ) -> Instances:
        """Masks for prompt points, the image zoomed by ``scale`` for the encoder.

        Args:
            image: HxWxC image of any dtype.
            points: Nx2 (y, x) prompt points in image px (NaN rows are skipped).
            scale: zoom factor from image px to encoder px.
            boxes: optional Nx4 (y0, x0, y1, x1) half-open boxes, one per point.
            prior: optional HxW labels whose cell ``i + 1`` is the mask prompt of point ``i``.

        Returns:
            Instances over HxW; score = predicted IoU clipped to [0, 1].
        """
        h, w = image.shape[:2]
        points = np.asarray(points, np.float64).reshape(-1, 2)
        ok = np.isfinite(points).all(1)
        points = points[ok]
        if boxes is not None:
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[ok]
        prior_ids = np.flatnonzero(ok) + 1
        if len(points) == 0:
            return Instances.empty((h, w))
        self.sam.eval()
        img = torch.from_numpy(np.ascontiguousarray(prepare_image(image, self.invert_bright)))
        img = img.permute(2, 0, 1)[None].to(self.device)
        h2, w2 = max(1, round(h * scale)), max(1, round(w * scale))
        if (h2, w2) != (h, w):
            img = F.interpolate(
                img, (h2, w2), mode="bilinear", align_corners=False, antialias=scale < 1
            )
        sy, sx = h2 / h, w2 / w
        if prior is not None:
            if prior.shape != (h, w):
                raise ValueError(f"prior labels {prior.shape} do not match the image {(h, w)}")
            prior_t = torch.from_numpy(prior.astype(np.float32))[None, None]
            if (h2, w2) != (h, w):
                prior_t = F.interpolate(prior_t, (h2, w2), mode="nearest-exact")
            prior_t = prior_t[0, 0]
        pts = (points + 0.5) * np.array([sy, sx]) - 0.5
        tiles = tile_grid((h2, w2), self.img_size, self.tile_overlap)
        owner = tile_centroid_owner(pts, tiles)
        neg_r = self.neg_radius * self.infer_diameter
        masks: list[tuple[int, int, np.ndarray]] = []
        scores: list[float] = []
        for ti, tile in enumerate(tiles):
            sel = np.flatnonzero(owner == ti)
            if sel.size == 0:
                continue
            ys, xs = tile.read
            emb = encode(self.sam, img[:, :, ys, xs])
            origin = np.array([ys.start, xs.start], np.float64)
            inside = (
                (pts[:, 0] >= ys.start)
                & (pts[:, 0] < ys.stop)
                & (pts[:, 1] >= xs.start)
                & (pts[:, 1] < xs.stop)
            )
            cand = np.flatnonzero(inside)
            # original-pixel extent of this tile's valid region
            ext = (
                max(0, int(np.floor((ys.start + 0.5) / sy - 0.5))),
                min(h, int(np.ceil((ys.stop - 0.5) / sy + 0.5))),
                max(0, int(np.floor((xs.start + 0.5) / sx - 0.5))),
                min(w, int(np.ceil((xs.stop - 0.5) / sx + 0.5))),
            )
            if prior is not None:  # the tile's prompting cells in the (padded) encoder frame
                frame = torch.zeros((self.img_size, self.img_size))
                frame[: ys.stop - ys.start, : xs.stop - xs.start] = prior_t[ys, xs]
            for b0 in range(0, sel.size, self.prompt_batch):
                batch = sel[b0 : b0 + self.prompt_batch]
                neg_idx = None
                if self.neg_points > 0 and cand.size > 1:
                    nn_all = neighbour_negatives(pts[cand], self.neg_points, neg_r)
                    rows = np.searchsorted(cand, batch)
                    neg_idx = nn_all[rows]
                coords, labels = point_prompts(pts[batch] - origin, pts[cand] - origin, neg_idx)
                box_t = None
                if boxes is not None:
                    b = boxes[batch] * np.array([sy, sx, sy, sx]) - np.tile(origin, 2)
                    box_t = torch.from_numpy(b[:, [1, 0, 3, 2]].astype(np.float32)).to(self.device)
                mask_t = None
                if prior is not None:
                    ids = torch.from_numpy(prior_ids[batch].astype(np.float32))
                    mask_t = mask_prompt_input(frame[None] == ids[:, None, None], self.sam)
                    mask_t = mask_t.to(self.device)
                logits, iou = decode(
                    self.sam,
                    emb,
                    torch.from_numpy(coords).to(self.device),
                    torch.from_numpy(labels).to(self.device),
                    boxes=box_t,
                    multimask=self.multimask,
                    masks=mask_t,
                )
                best = iou.argmax(dim=1)
                ar = torch.arange(len(batch), device=iou.device)
                logits, iou = logits[ar, best].float().cpu(), iou[ar, best].float().cpu().numpy()
                for j, pi in enumerate(batch):
                    if iou[j] < self.iou_thresh:
                        continue
                    m = self._mask_window(logits[j], ys.start, xs.start, sy, sx, ext, points[pi])
                    if m is not None:
                        masks.append(m)
                        scores.append(float(np.clip(iou[j], 0.0, 1.0)))
        if not masks:
            return Instances.empty((h, w))
        return paint_masks((h, w), masks, np.asarray(scores, np.float32))

    def _mask_window(
        self,
        logits: torch.Tensor,
        y0: int,
        x0: int,
        sy: float,
        sx: float,
        ext: tuple[int, int, int, int],
        point: np.ndarray,
    ) -> tuple[int, int, np.ndarray] | None:
        """One low-res logit map -> (oy0, ox0, bool window) on original pixels, or None."""
        pos = (logits > self.sam.mask_threshold).numpy()
        if not pos.any():
            return None
        f = self.img_size / logits.shape[-1]  # encoder-frame px per low-res px
        r = np.flatnonzero(pos.any(1))
        c = np.flatnonzero(pos.any(0))
        # low-res box (1 px margin) -> encoder frame -> original px
        fy0, fy1 = (r[0] - 1) * f + y0, (r[-1] + 2) * f + y0
        fx0, fx1 = (c[0] - 1) * f + x0, (c[-1] + 2) * f + x0
        win = (
            max(ext[0], int(np.floor((fy0 + 0.5) / sy - 0.5))),
            min(ext[1], int(np.ceil((fy1 + 0.5) / sy))),
            max(ext[2], int(np.floor((fx0 + 0.5) / sx - 0.5))),
            min(ext[3], int(np.ceil((fx1 + 0.5) / sx))),
        )
        if win[1] <= win[0] or win[3] <= win[2]:
            return None
        m = sample_window(logits, self.img_size, y0, x0, sy, sx, win) > self.sam.mask_threshold
        m = component_at(m, int(round(point[0])) - win[0], int(round(point[1])) - win[2])
        if m.sum() < self.min_area:
            return None
        return win[0], win[2], m


__all__ = [
    "SAMTeacher",
    "decode",
    "encode",
    "equivalent_diameters",
    "point_prompts",
    "sam_registry",
    "build_sam_vit_b",
    "build_sam_vit_l",
    "build_sam_vit_h",
    "build_sam_vit_tiny",
    "load_sam_weights",
    "merge_prompt_points",
    "neighbour_negatives",
    "paint_masks",
    "prepare_image",
    "prompt_scale",
]
