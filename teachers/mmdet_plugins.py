"""MMDetection components for cell instance segmentation, registered in mmdet's registries.

Configs pull them in with::

    custom_imports = dict(imports=["teachers.mmdet_plugins"], allow_failed_imports=False)

- :class:`CellDataset` reads the NeurIPS-CellSeg layout (``images/<id>.<ext>`` +
  ``labels/<id>_label.tiff``) directly, or a JSON list of samples; no COCO JSON step.
- Transforms keep the instance-label image as ``gt_seg_map`` through every geometric
  step (resize, crop, flip, transpose), so a 1040x1388 image with 300 cells never holds
  300 full-size bitmaps; :class:`LabelsToInstances` turns the final crop into
  ``gt_bboxes`` / ``gt_masks`` at the end of the pipeline.
- :class:`CellF1Metric` scores validation with the challenge F1 (``cellfuse.metric``)
  after the detections are resolved into one label image, higher score winning a pixel.

The pure numerical helpers (:func:`prepare_image`, :func:`labels_to_boxes`,
:func:`detections_to_instances`) are used by the teacher at inference too, so training
and prediction see exactly the same image.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets import BaseDetDataset
from mmdet.datasets.transforms import Resize
from mmdet.registry import DATASETS, HOOKS, METRICS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from scipy import ndimage as ndi

from cellfuse.errors import ConfigError, LabelError
from cellfuse.io import atomic_write, read_image, read_labels
from cellfuse.layout import list_samples
from cellfuse.metric import evaluate_image
from cellfuse.modality import modality
from teachers.mmdet_numerics import (  # noqa: F401  (re-exported)
    above_score,
    detections_to_instances,
    labels_to_boxes,
    prepare_image,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- dataset


def read_samples_json(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Samples listed in a JSON file: ``[{"id", "image", "label"}, ...]``."""
    with open(path) as fh:
        items = json.load(fh)
    if not isinstance(items, list) or not all("image" in s for s in items):
        raise ConfigError(f"{path}: expected a JSON list of {{'id', 'image', 'label'}} objects")
    return items


def write_samples_json(path: str | os.PathLike[str], samples: Sequence[Any]) -> Path:
    """Write ``cellfuse.layout.Sample`` objects (or dicts) as the JSON list :class:`CellDataset` reads."""
    items = []
    for s in samples:
        d = s if isinstance(s, dict) else {"id": s.id, "image": s.image, "label": s.label}
        items.append({k: (str(Path(v).resolve()) if k != "id" and v else v) for k, v in d.items()})
    with atomic_write(path, "w") as fh:
        json.dump(items, fh, indent=1)
    return Path(path)


@DATASETS.register_module()
class CellDataset(BaseDetDataset):
    """Labeled cell images in the NeurIPS-CellSeg layout, one class ("cell").

    Samples come from ``ann_file`` (a JSON list written by :func:`write_samples_json`)
    when given, else from ``data_root/split`` (``images/`` + ``labels/``). Annotations
    are loaded by the pipeline (:class:`LoadCellLabels`), not here.

    Args:
        split: split folder under ``data_root`` (``train``, ``val``...), used without ``ann_file``.
        oversample: repeat factor per modality, e.g. ``dict(stained=3, brightfield=4)``
            (training only; rare modalities are seen more often).
        **kwargs: ``mmengine.dataset.BaseDataset`` arguments (``data_root``, ``ann_file``,
            ``pipeline``, ``test_mode``, ``lazy_init``...).
    """

    METAINFO = {"classes": ("cell",), "palette": [(220, 20, 60)]}

    def __init__(self, *args: Any, split: str = "", oversample: dict | None = None, **kwargs: Any):
        self.split = split
        self.oversample = dict(oversample or {})
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list[dict]:
        if self.ann_file:
            samples = read_samples_json(self.ann_file)
        elif self.data_root:
            samples = [
                {"id": s.id, "image": str(s.image), "label": str(s.label) if s.label else None}
                for s in list_samples(Path(self.data_root) / self.split, require_labels=True)
            ]
        else:
            raise ConfigError("CellDataset needs ann_file (JSON sample list) or data_root + split")
        data_list = []
        counts: dict[str, int] = defaultdict(int)
        for i, s in enumerate(samples):
            info = {
                "img_id": s.get("id", i),
                "img_path": s["image"],
                "label_path": s.get("label"),
                "modality": modality(read_image(s["image"])),
                "instances": [],
            }
            counts[info["modality"]] += 1
            repeat = 1 if self.test_mode else int(self.oversample.get(info["modality"], 1))
            data_list.extend(dict(info) for _ in range(max(repeat, 1)))
        log.info(
            "CellDataset: %d images (%s), %d entries after oversampling",
            len(samples),
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            len(data_list),
        )
        return data_list


# ----------------------------------------------------------------------------- transforms


@TRANSFORMS.register_module()
class LoadCellImage(BaseTransform):
    """Read ``img_path`` with ``cellfuse.io`` and apply :func:`prepare_image`.

    Adds ``img`` (HxWx3 float32, 0..255), ``img_shape`` and ``ori_shape``.
    """

    def __init__(self, lower: float = 1.0, upper: float = 99.8, invert_bright: bool = True):
        self.lower, self.upper, self.invert_bright = lower, upper, invert_bright

    def transform(self, results: dict) -> dict:
        img = prepare_image(
            read_image(results["img_path"], allow_constant=True),
            lower=self.lower,
            upper=self.upper,
            invert_bright=self.invert_bright,
        )
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadCellLabels(BaseTransform):
    """Read ``label_path`` into ``gt_seg_map`` (HxW instance ids, uint16 or int32 for OpenCV)."""

    def transform(self, results: dict) -> dict:
        if not results.get("label_path"):
            raise LabelError(f"{results.get('img_path')}: sample has no label file")
        labels = read_labels(results["label_path"], shape=tuple(results["ori_shape"]))
        if labels.dtype != np.uint16:
            labels = labels.astype(np.int32)  # OpenCV resizes int32, not uint32
        results["gt_seg_map"] = labels
        return results


@TRANSFORMS.register_module()
class RandomRescale(Resize):
    """Rescale by ``scale * r``, ``r`` log-uniform in ``ratio_range`` (labels: nearest).

    Unlike mmdet's ``RandomResize`` the factor is relative to the image, so nuclei keep a
    size relation to the pixel grid whatever the image size.
    """

    def __init__(self, scale: float = 1.0, ratio_range: tuple[float, float] = (1.0, 1.0), **kwargs):
        super().__init__(scale_factor=scale, keep_ratio=True, **kwargs)
        self.base = float(scale)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def transform(self, results: dict) -> dict:
        lo, hi = np.log(self.ratio_range[0]), np.log(self.ratio_range[1])
        f = self.base * float(np.exp(np.random.uniform(lo, hi)))
        self.scale_factor = (f, f)
        return super().transform(results)


@TRANSFORMS.register_module()
class RandomCellCrop(BaseTransform):
    """Random crop of ``img`` and ``gt_seg_map`` that holds at least ``min_cells`` cells.

    Images smaller than the crop are kept whole (the data preprocessor pads the batch).
    """

    def __init__(
        self, crop_size: tuple[int, int] = (384, 384), min_cells: int = 1, max_tries: int = 10
    ):
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.min_cells = min_cells
        self.max_tries = max_tries

    def transform(self, results: dict) -> dict:
        img, lab = results["img"], results.get("gt_seg_map")
        h, w = img.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        best, best_n = (0, 0), -1
        for _ in range(self.max_tries):
            y, x = np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1)
            if lab is None:
                best = (y, x)
                break
            n = np.unique(lab[y : y + ch, x : x + cw]).size - 1
            if n > best_n:
                best, best_n = (y, x), n
            if n >= self.min_cells:
                break
        y, x = best
        results["img"] = img[y : y + ch, x : x + cw]
        results["img_shape"] = results["img"].shape[:2]
        if lab is not None:
            results["gt_seg_map"] = lab[y : y + ch, x : x + cw]
        return results


@TRANSFORMS.register_module()
class RandomTranspose(BaseTransform):
    """Swap the image axes with probability ``prob`` (with flips: all 8 right-angle views)."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() < self.prob:
            results["img"] = np.ascontiguousarray(results["img"].transpose(1, 0, 2))
            results["img_shape"] = results["img"].shape[:2]
            if results.get("gt_seg_map") is not None:
                results["gt_seg_map"] = np.ascontiguousarray(results["gt_seg_map"].T)
        return results


@TRANSFORMS.register_module()
class LabelsToInstances(BaseTransform):
    """Turn ``gt_seg_map`` instance ids into mmdet targets and drop the map.

    Adds ``gt_bboxes`` (HorizontalBoxes), ``gt_bboxes_labels`` (all 0, int64),
    ``gt_masks`` (BitmapMasks) and ``gt_ignore_flags`` (all False).
    """

    def __init__(self, min_area: int = 4):
        self.min_area = min_area

    def transform(self, results: dict) -> dict:
        lab = results.pop("gt_seg_map")
        boxes, masks = labels_to_boxes(lab, self.min_area)
        n = boxes.shape[0]
        results["gt_bboxes"] = HorizontalBoxes(boxes)
        results["gt_bboxes_labels"] = np.zeros(n, np.int64)
        results["gt_masks"] = BitmapMasks(masks, *lab.shape)
        results["gt_ignore_flags"] = np.zeros(n, bool)
        return results


# ----------------------------------------------------------------------------- metric


@METRICS.register_module()
class CellF1Metric(BaseMetric):
    """Mean per-image challenge F1 at IoU thresholds (keys ``f1_50``, ``f1_75``...).

    Detections are resolved into one label image (:func:`detections_to_instances`) and
    scored against the label file at the image's original size (``label_path`` must be
    in the packed meta keys).

    With several candidate ``score_thr``, the F1s are those of the candidate with the best
    mean F1 at the first IoU threshold (ties: the candidate nearest 0.5), reported as
    ``score_thr``; the teacher predicts with it (:class:`teachers.maskrcnn.MaskRCNNTeacher`
    stores it in the checkpoint). A detector's scores are not calibrated: after a short
    training every score can sit below a fixed 0.5 cut (F1 = 0 with usable masks).

    Args:
        thresholds: IoU thresholds; key ``f1_<100 * thr>`` each.
        score_thr: the detection score cut, or a sequence of candidates to choose from.
        min_visible: see :func:`detections_to_instances`.
    """

    default_prefix = "cell"

    def __init__(
        self,
        thresholds: Sequence[float] = (0.5, 0.75),
        score_thr: float | Sequence[float] = 0.5,
        min_visible: float = 0.5,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thresholds = tuple(float(t) for t in thresholds)
        cands = score_thr if isinstance(score_thr, Sequence) else [score_thr]
        self.score_thrs = tuple(sorted(float(s) for s in cands))
        if not self.score_thrs:
            raise ConfigError("CellF1Metric: score_thr needs at least one value")
        self.min_visible = min_visible

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            pred = ds["pred_instances"]
            inst = detections_to_instances(
                pred["masks"].cpu().numpy(),
                pred["scores"].cpu().numpy(),
                pred["bboxes"].cpu().numpy(),
                score_thr=self.score_thrs[0],
                min_visible=self.min_visible,
            )
            truth = read_labels(ds["label_path"], shape=inst.shape)
            row: dict[str, Any] = {"modality": ds.get("modality", "")}
            for s in self.score_thrs:
                res = evaluate_image(truth, above_score(inst, s), self.thresholds)
                row[s] = [res["scores"][t]["f1"] for t in self.thresholds]
            self.results.append(row)

    def compute_metrics(self, results: list) -> dict[str, float]:
        keys = [f"f1_{round(t * 100)}" for t in self.thresholds]
        mean = {s: np.mean([r[s] for r in results], axis=0) for s in self.score_thrs}
        best = max(self.score_thrs, key=lambda s: (mean[s][0], -abs(s - 0.5)))
        out = {k: float(v) for k, v in zip(keys, mean[best], strict=True)}
        for mod in sorted({r["modality"] for r in results} - {""}):
            sub = [r[best][0] for r in results if r["modality"] == mod]
            out[f"{keys[0]}_{mod}"] = float(np.mean(sub))
        out["n_images"] = len(results)
        if len(self.score_thrs) > 1:
            out["score_thr"] = best
        return out


# ----------------------------------------------------------------------------- hooks


@HOOKS.register_module()
class AdaptiveThreadsHook(Hook):
    """Re-pick torch's CPU thread count during training by timing a few iterations with each.

    Other jobs share the cores: an OpenMP team that waits for a descheduled thread can make
    2 threads several times slower than 1. Every ``probe_every`` iterations, each choice
    runs ``probe_iters`` iterations (the first one after a switch is not timed) and the
    fastest is kept. Does nothing when the model runs on a GPU.
    """

    priority = "VERY_HIGH"

    def __init__(
        self, choices: Sequence[int] = (1, 2), probe_every: int = 200, probe_iters: int = 4
    ):
        if probe_iters < 2 or probe_every < len(choices) * probe_iters:
            raise ConfigError(
                "AdaptiveThreadsHook: need probe_iters >= 2 and probe_every >= choices * probe_iters"
            )
        self.choices = tuple(int(c) for c in choices)
        self.probe_every, self.probe_iters = probe_every, probe_iters
        self._times: dict[int, list[float]] = defaultdict(list)
        self._t0 = 0.0
        self._active = True

    def before_train(self, runner: Any) -> None:
        import torch

        self._active = not torch.cuda.is_available()

    def _phase(self, it: int) -> int:
        return it % self.probe_every

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if not self._active:
            return
        import torch

        phase = self._phase(runner.iter)
        if phase < len(self.choices) * self.probe_iters:
            if phase == 0:
                self._times.clear()
            torch.set_num_threads(self.choices[phase // self.probe_iters])
        self._t0 = time.perf_counter()

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if not self._active:
            return
        import torch

        phase = self._phase(runner.iter)
        n = len(self.choices) * self.probe_iters
        if phase >= n:
            return
        if phase % self.probe_iters:  # the first iteration after a switch warms up
            self._times[self.choices[phase // self.probe_iters]].append(
                time.perf_counter() - self._t0
            )
        if phase == n - 1:
            speed = {c: float(np.median(t)) for c, t in self._times.items()}
            best = min(speed, key=speed.get)
            torch.set_num_threads(best)
            runner.logger.info(
                "threads: %s s/iter -> %d", {c: round(v, 2) for c, v in speed.items()}, best
            )


@HOOKS.register_module()
class BestMetricsHook(Hook):
    """Record all validation metrics of the best evaluation in ``work_dir/best_metrics.json``.

    Args:
        key: metric that decides "best" (the checkpoint hook's ``save_best``).
        rule: ``greater`` or ``less``.
    """

    priority = "LOW"

    def __init__(self, key: str = "cell/f1_50", rule: str = "greater"):
        self.key, self.rule = key, rule

    def _path(self, runner: Any) -> Path:
        return Path(runner.work_dir) / "best_metrics.json"

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        if not metrics or self.key not in metrics:
            return
        path = self._path(runner)
        best = json.loads(path.read_text()) if path.is_file() else None
        score = float(metrics[self.key])
        if best is not None:
            old = float(best["metrics"][self.key])
            if (score <= old) if self.rule == "greater" else (score >= old):
                return
        record = {
            "iter": runner.iter,
            "epoch": runner.epoch,
            "metrics": {k: float(v) for k, v in metrics.items()},
        }
        with atomic_write(path, "w") as fh:
            json.dump(record, fh, indent=2)


__all__ = [
    "AdaptiveThreadsHook",
    "BestMetricsHook",
    "CellDataset",
    "CellF1Metric",
    "LabelsToInstances",
    "LoadCellImage",
    "LoadCellLabels",
    "RandomCellCrop",
    "RandomRescale",
    "RandomTranspose",
    "detections_to_instances",
    "labels_to_boxes",
    "prepare_image",
    "read_samples_json",
    "samples_to_coco",
    "write_samples_json",
]


# ----------------------------------------------------------------------------- COCO export


def samples_to_coco(samples: Sequence[Any]) -> dict:
    """COCO instance annotations (RLE masks) of labeled samples, for stock mmdet ``CocoDataset``.

    Not needed by cellfuse (:class:`CellDataset` reads the layout directly); for tools that
    want COCO JSON.

    Args:
        samples: ``cellfuse.layout.Sample`` objects with labels.

    Returns:
        A COCO dict with ``images``, ``annotations`` and one category ``cell`` (id 1).
    """
    from pycocotools import mask as mask_utils

    images, anns = [], []
    for img_id, s in enumerate(samples, start=1):
        labels = read_labels(s.label)
        h, w = labels.shape
        images.append({"id": img_id, "file_name": str(s.image), "height": h, "width": w})
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            m = np.asfortranarray((labels == i).astype(np.uint8))
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode("ascii")
            y0, x0 = sl[0].start, sl[1].start
            bw, bh = sl[1].stop - x0, sl[0].stop - y0
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": int(m.sum()),
                    "bbox": [int(x0), int(y0), int(bw), int(bh)],
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}
