"""Teacher 2: a U-Net predicting cell probability and Cellpose-style flows, trained from scratch.

Network: :class:`cellfuse.nn.unet.UNet` with 3 input channels (:func:`cellfuse.preprocess.prepare_image`)
and 3 outputs: cell-probability logit, and the flow ``(dy, dx)`` times 5 (cellpose's scaling).
Loss: ``MSE(flow_out, 5 * flow) / 2 + BCE(logit, cell)``, cellpose's loss.

Scale: every training image is resized so its median cell diameter becomes
``nominal_diameter`` (from its labels); crops get a further log-uniform scale jitter. At
inference, unless ``diameter`` is given, a first pass at the image's own scale (on its central
``estimate_window`` square) finds cells, their median diameter ``d`` gives the scale
``nominal_diameter / d``, and a second pass predicts the whole image at that scale (skipped
when the first pass covered the whole image and the scale is within ``rescale_tolerance``
of 1).

Masks: flow-following and mask reconstruction in :mod:`cellfuse.flows`, scored by
:func:`cellfuse.flow_instances.flows_to_instances` (at full resolution). The score of a cell
is its mean cell probability times ``1 - flow_error`` (clipped to [0, 1]); a mask's flow
error is the mean squared difference between the flows of its own shape and the predicted
flows, and masks with an error above ``flow_threshold`` are dropped.

Large images: :func:`cellfuse.tiling.predict_tiled` (StarDist rule: each tile runs the whole
pipeline, flow-following included, and keeps the cells whose centroid lies in its core and
which do not touch its cut edges). Tiles are ``tile`` px at the network scale, overlap
``overlap`` px, which must exceed the largest cell diameter at the network scale (cells are
``nominal_diameter`` there). Tile outputs are not blended before flow-following. The input is
normalised once for the whole image, so tiles see the same intensities as the whole image.

Training: :class:`cellfuse.nn.flow_training.FlowTrainer` (shared with the student).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellfuse.flow_instances import PostProcess, flows_to_instances
from cellfuse.flows import FLOW_SCALE
from cellfuse.instances import Instances
from cellfuse.model_api import Teacher
from cellfuse.nn.augment import resize_image_torch
from cellfuse.nn.checkpoints import load_checkpoint
from cellfuse.nn.flow_training import FlowTrainer
from cellfuse.nn.layers import pad_to_multiple
from cellfuse.nn.unet import UNet
from cellfuse.preprocess import median_diameter, prepare_image, resize_labels, scaled_shape
from cellfuse.tiling import predict_tiled

log = logging.getLogger(__name__)


class FlowUNetTeacher(FlowTrainer, Teacher):
    """Flow U-Net teacher (see module doc). All keyword arguments come from ``cfg.teacher``;
    they are :class:`~cellfuse.nn.flow_training.FlowTrainer`'s (``net`` holds the
    :class:`UNet` keyword arguments: widths, depth, norm, act, residual)."""

    name = "flowunet"

    @classmethod
    def offset_seed(cls, tcfg: dict[str, Any], cfg: Any, offset: int) -> None:
        tcfg["seed"] = int(tcfg.get("seed", 0)) + offset

    # ------------------------------------------------------------------ network

    def build_net(self) -> UNet:
        return UNet(3, 3, **self.net_cfg)

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

    def postprocess(self) -> PostProcess:
        """The flow-following parameters, at full resolution."""
        return PostProcess(
            prob_threshold=self.prob_threshold,
            flow_iters=self.flow_iters,
            flow_threshold=self.flow_threshold,
            min_size=self.min_size,
            follow_scale=1.0,
        )

    def _masks(self, x: np.ndarray) -> Instances:
        """Instances of one prepared image at the network scale."""
        flows, prob = self.network_output(x)
        return flows_to_instances(flows, prob, self.postprocess())

    def predict_at_scale(self, x: np.ndarray, scale: float) -> Instances:
        """Instances of a prepared HxWx3 image predicted at ``scale``, in the image's pixels.

        Tiles are cut in the image's own pixels (``tile / scale``) and each is resized to
        the network scale, so memory stays bounded by one tile whatever the scale.
        """
        h, w = x.shape[:2]

        def predict_tile(xt: np.ndarray) -> Instances:
            shape = scaled_shape(xt.shape[:2], scale)
            inst = self._masks(resize_image_torch(xt, shape))
            if shape == tuple(xt.shape[:2]):
                return inst
            return Instances.from_labels(resize_labels(inst.labels, xt.shape[:2]), inst.scores)

        tile = max(int(self.tile / scale), 2 * self.net_stride)
        overlap = min(int(math.ceil(self.overlap / scale)), tile - 1)
        return predict_tiled(predict_tile, lambda win: x[win], (h, w), tile=tile, overlap=overlap)

    @property
    def net_stride(self) -> int:
        return 2 ** (len(self.net_cfg["widths"]) - 1)

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

    def checkpoint_meta(self) -> dict[str, Any]:
        return dict(net=self._require_net().config(), nominal_diameter=self.nominal_diameter)

    def load(self, checkpoint: Path) -> None:
        """Rebuild the network from the checkpoint's own config and load its weights."""
        ckpt = load_checkpoint(checkpoint, what="flow U-Net checkpoint")
        cfg = dict(ckpt["net"])
        cfg.pop("in_ch", None)
        cfg.pop("out_ch", None)
        self.net_cfg = cfg
        self.nominal_diameter = float(ckpt["nominal_diameter"])
        net = self.build_net()
        net.load_state_dict(ckpt["state_dict"])
        self.net = net.to(self.device).eval()
        self.val_metrics = dict(ckpt.get("metrics", {}))


__all__ = ["FlowUNetTeacher", "FLOW_SCALE"]
