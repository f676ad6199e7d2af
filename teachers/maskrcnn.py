"""Teacher 1: Mask R-CNN trained and run by MMDetection.

Training is MMDetection's own: the teacher writes the sample lists, points the config's
dataloaders at them and runs ``Runner.from_cfg(cfg).train()`` (as mmdet's ``tools/train.py``
does). Inference loads the model with ``mmdet.apis.init_detector`` and runs it through the
config's test pipeline; large images go through :func:`cellfuse.tiling.predict_tiled`.

    teacher = build_teacher(dict(type="maskrcnn", cfg=Config.fromfile(CONFIG)))
    ckpt = teacher.fit(train, val, work_dir)
    teacher.load(ckpt)
    inst = teacher.predict(image)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cellfuse.errors import ConfigError
from cellfuse.instances import Instances
from cellfuse.layout import Sample
from cellfuse.model_api import Teacher
from cellfuse.tiling import predict_tiled

log = logging.getLogger(__name__)

PLUGINS = "teachers.mmdet_plugins"
# The detection score cut when neither the config nor the checkpoint (val choice) sets one.
DEFAULT_SCORE_THR = 0.5


def _as_config(cfg: Any) -> Any:
    """An ``mmengine.Config`` from a Config, a dict or a config file path."""
    from mmengine.config import Config

    if isinstance(cfg, Config):
        return copy.deepcopy(cfg)
    if isinstance(cfg, (str, Path)):
        from cellfuse.config import resolve_config_path

        return Config.fromfile(str(resolve_config_path(cfg)))
    if isinstance(cfg, Mapping):
        return Config(copy.deepcopy(dict(cfg)))
    raise ConfigError(f"cannot use a {type(cfg).__name__} as an MMEngine config")


def _import_plugins(cfg: Any) -> None:
    """Import ``custom_imports`` (the Runner does this itself; init_detector does not)."""
    import importlib

    from mmengine.registry import init_default_scope

    imports = list(cfg.get("custom_imports", {}).get("imports", []))
    for name in [PLUGINS, *imports]:
        importlib.import_module(name)
    init_default_scope(cfg.get("default_scope", "mmdet"))


def _plain(obj: Any) -> Any:
    """``obj`` with only plain containers, numbers, strings and tensors (others dropped)."""
    import torch

    if isinstance(obj, dict):
        kept = {str(k): _plain(v) for k, v in obj.items()}
        return {k: v for k, v in kept.items() if v is not _DROP}
    if isinstance(obj, (list, tuple)):
        return [x for x in (_plain(v) for v in obj) if x is not _DROP]
    if obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)):
        return obj
    return _DROP


_DROP = object()


def _plain_checkpoint(path: Path, **meta: Any) -> None:
    """Rewrite the Runner's best checkpoint as weights + plain meta (its config text, iter,
    and ``meta``), so that it loads with ``weights_only=True``. The Runner's file also
    pickles its message hub (logging objects); it was written by this process a moment ago,
    which is the one place it is read with the full unpickler."""
    import torch

    from cellfuse.nn.checkpoints import save_checkpoint

    ck = torch.load(path, map_location="cpu", weights_only=False)  # our own file, just written
    plain = {**_plain(ck.get("meta", {})), **meta}
    save_checkpoint({"state_dict": ck["state_dict"], "meta": plain}, path)


def adapt_checkpoint(model: Any, checkpoint: str | Path, out: str | Path) -> list[str]:
    """Make a checkpoint loadable into ``model``: drop weights whose shape differs.

    Used for MMDetection model-zoo checkpoints (81-class COCO heads) fine-tuned to one
    class: ``fc_cls``, ``fc_reg`` and ``conv_logits`` do not fit and are dropped, so they
    keep the model's fresh initialisation. The result is written atomically to ``out`` as
    ``{"meta": ..., "state_dict": ...}``.

    Args:
        model: the ``nn.Module`` the checkpoint is meant for.
        checkpoint: local ``.pth`` (``{"state_dict": ...}`` or a bare state dict).
        out: where the adapted checkpoint goes.

    Returns:
        Names of the dropped weights.
    """
    import torch
    from mmengine.runner.checkpoint import _load_checkpoint

    from cellfuse.io import atomic_write

    ckpt = _load_checkpoint(str(checkpoint), map_location="cpu")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, Mapping):
        raise ConfigError(f"{checkpoint}: not a PyTorch checkpoint with a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if dropped:
        log.warning(
            "%s: %d weights do not fit the model and are re-initialised: %s",
            checkpoint,
            len(dropped),
            ", ".join(f"{k} {tuple(state[k].shape)}->{tuple(own[k].shape)}" for k in dropped),
        )
    unknown = [k for k in state if k not in own]
    if unknown:
        log.warning(
            "%s: %d weights have no place in the model and are ignored: %s",
            checkpoint,
            len(unknown),
            ", ".join(unknown[:10]),
        )
    kept = {k: v for k, v in state.items() if k in own and k not in dropped}
    meta = dict(ckpt.get("meta", {})) if isinstance(ckpt, dict) else {}
    meta["adapted_from"] = str(checkpoint)
    meta["dropped"] = dropped
    with atomic_write(out, "wb") as fh:
        torch.save({"meta": meta, "state_dict": kept}, fh)
    return dropped


class MaskRCNNTeacher(Teacher):
    """Mask R-CNN (MMDetection) behind the teacher interface.

    Args:
        cfg: the whole MMEngine config (Config, dict or file path); ``tools/train_teacher.py``
            passes it. Without it, :meth:`load` reads the config saved in the checkpoint.
        score_thr: detections below this score are dropped from predictions; None = the
            value chosen on val in training (``CellF1Metric`` with candidate ``score_thr``s,
            stored in the checkpoint), else :data:`DEFAULT_SCORE_THR`.
        min_visible: a detection keeps only pixels no better one holds; it is dropped when
            less than this fraction of its mask stays visible (a duplicate).
        min_size: instances with fewer pixels are dropped.
        tile: images larger than this (px, original resolution) are predicted in tiles;
            it bounds memory (mmdet holds each detection's mask at full tile size).
        overlap: tile overlap (px); larger than the largest cell.
        device: ``cpu``, ``cuda``...; None picks cuda when available.
        num_threads: torch CPU threads for training and inference (None leaves torch's default).
    """

    name = "maskrcnn"
    wants_full_config = True

    @classmethod
    def offset_seed(cls, tcfg: dict[str, Any], cfg: Any, offset: int) -> None:
        cfg.randomness = dict(cfg.get("randomness") or {})
        cfg.randomness["seed"] = int(cfg.randomness.get("seed") or 0) + offset

    def __init__(
        self,
        cfg: Any = None,
        *,
        score_thr: float | None = None,
        min_visible: float = 0.5,
        min_size: int = 4,
        tile: int = 1536,
        overlap: int = 128,
        device: str | None = None,
        num_threads: int | None = None,
    ):
        self.cfg = None if cfg is None else _as_config(cfg)
        self.score_thr_cfg = None if score_thr is None else float(score_thr)
        self.score_thr = DEFAULT_SCORE_THR if score_thr is None else float(score_thr)
        self.min_visible = float(min_visible)
        self.min_size = int(min_size)
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.device = device
        self.num_threads = num_threads
        self.model: Any = None
        self._pipeline: Any = None
        self.val_metrics: dict[str, float] = {}
        if self.overlap >= self.tile:
            raise ConfigError(f"maskrcnn: overlap ({overlap}) must be smaller than tile ({tile})")

    # ------------------------------------------------------------------ training

    def fit(
        self, train: list[Sample], val: list[Sample], work_dir: Path, resume: bool = False
    ) -> Path:
        """Train with the MMEngine Runner; returns the checkpoint that scored best on ``val``.

        Writes ``train_samples.json``/``val_samples.json`` and the Runner's checkpoints and
        logs under ``work_dir``; ``best_metrics.json`` holds the best validation scores.
        ``resume`` (or ``cfg.resume``) continues from the last checkpoint in ``work_dir``.
        """
        import torch
        from mmengine.runner import Runner

        from teachers.mmdet_plugins import write_samples_json

        if self.cfg is None:
            raise ConfigError("maskrcnn: fit needs the MMEngine config (cfg=...)")
        if not train:
            raise ConfigError("maskrcnn: no training samples")
        cfg = copy.deepcopy(self.cfg)
        _import_plugins(cfg)
        work_dir = Path(work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg.work_dir = str(work_dir)
        cfg.resume = bool(resume or cfg.get("resume", False))
        if self.num_threads:
            torch.set_num_threads(self.num_threads)

        cfg.train_dataloader.dataset.ann_file = str(
            write_samples_json(work_dir / "train_samples.json", train)
        )
        if val:
            ann = str(write_samples_json(work_dir / "val_samples.json", val))
            cfg.val_dataloader.dataset.ann_file = ann
            cfg.test_dataloader.dataset.ann_file = ann
        else:
            log.warning("maskrcnn: no validation samples; the last checkpoint is returned")
            cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
            cfg.default_hooks.checkpoint.save_best = None

        if cfg.get("load_from") and not cfg.resume:
            cfg.load_from = self._adapted_load_from(cfg, work_dir)

        runner = Runner.from_cfg(cfg)
        runner.train()

        best = runner.message_hub.get_info("best_ckpt") if val else None
        if best is None:
            last = work_dir / "last_checkpoint"
            if not last.is_file():
                raise ConfigError(f"{work_dir}: training wrote no checkpoint")
            best = last.read_text().strip()
        best_path = Path(best)
        metrics_file = work_dir / "best_metrics.json"
        if metrics_file.is_file():
            import json

            rec = json.loads(metrics_file.read_text())
            self.val_metrics = {k.split("/")[-1]: float(v) for k, v in rec["metrics"].items()}
            self.val_metrics["iter"] = rec["iter"]
        chosen = self.val_metrics.get("score_thr")
        _plain_checkpoint(best_path, **({} if chosen is None else {"score_thr": chosen}))
        self.cfg = cfg
        self.load(best_path)
        log.info("maskrcnn: best checkpoint %s, val %s", best_path, self.val_metrics)
        return best_path

    def _adapted_load_from(self, cfg: Any, work_dir: Path) -> str:
        """Drop the checkpoint weights whose shapes do not fit (other class counts)."""
        from mmdet.registry import MODELS

        src = Path(cfg.load_from)
        if not src.is_file():
            raise ConfigError(f"load_from={src}: checkpoint not found (nothing is downloaded)")
        model = MODELS.build(copy.deepcopy(cfg.model))
        out = work_dir / f"{src.stem}_adapted.pth"
        adapt_checkpoint(model, src, out)
        return str(out)

    # ------------------------------------------------------------------ inference

    def load(self, checkpoint: Path) -> None:
        """Build the detector from the config (or the one stored in the checkpoint) and load weights."""
        import torch
        from mmcv.transforms import Compose
        from mmdet.apis import init_detector

        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ConfigError(f"{checkpoint}: checkpoint not found")
        cfg = self.cfg
        need_meta = cfg is None or self.score_thr_cfg is None
        meta = self._checkpoint_meta(checkpoint, required=cfg is None) if need_meta else {}
        if self.score_thr_cfg is None:
            self.score_thr = float(meta.get("score_thr", DEFAULT_SCORE_THR))
            how = "chosen on val" if "score_thr" in meta else "default"
            log.info("maskrcnn: score_thr %.2f (%s)", self.score_thr, how)
        if cfg is None:
            from mmengine.config import Config

            if "cfg" not in meta:
                raise ConfigError(f"{checkpoint}: no config stored in the checkpoint; pass cfg=")
            cfg = Config.fromstring(meta["cfg"], ".py")
        cfg = copy.deepcopy(cfg)
        _import_plugins(cfg)
        cfg.model.backbone.init_cfg = None
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = init_detector(cfg, str(checkpoint), device=device, palette="random")
        # the test pipeline minus its file loader: predict() feeds prepared arrays
        steps = [dict(s) for s in cfg.test_dataloader.dataset.pipeline]
        if steps[0]["type"] != "LoadCellImage":
            raise ConfigError("maskrcnn: the test pipeline must start with LoadCellImage")
        self._prepare_args = {k: v for k, v in steps[0].items() if k != "type"}
        self._pipeline = Compose([dict(type="mmdet.LoadImageFromNDArray"), *steps[1:]])
        self.cfg = cfg

    @staticmethod
    def _checkpoint_meta(checkpoint: Path, required: bool) -> dict:
        """The plain meta of a checkpoint written by :meth:`fit`. A foreign checkpoint
        (an MMEngine Runner's, which pickles logging objects) has none we can read safely:
        an error when ``required`` (no cfg to build from), else ``{}``."""
        from cellfuse.nn.checkpoints import load_checkpoint

        try:  # weights_only: a checkpoint is never allowed to run code when read
            return dict(load_checkpoint(checkpoint, what="Mask R-CNN checkpoint").get("meta", {}))
        except ConfigError as exc:
            if not required:
                return {}
            raise ConfigError(
                f"{exc}; an MMEngine Runner checkpoint holds logging objects besides "
                "its weights: pass cfg= (the teacher's config file) instead"
            ) from None

    def predict(self, image: np.ndarray) -> Instances:
        """Segment one image (HxW or HxWxC, any dtype); large images in overlapping tiles.

        The image is normalised once as a whole (as in training), then each tile is
        rescaled and run through the detector; detections become one label image with
        the higher score winning overlaps. Tiles are stitched by
        :func:`cellfuse.tiling.predict_tiled` (cells smaller than ``overlap`` are never
        cut or doubled). A flat image returns no cells; a crop of pure background is
        stretched to full contrast by the percentile normalisation and may show a few
        false cells, so crop after predicting, not before.

        Returns:
            Instances at the image's size; scores are detection scores.
        """
        from teachers.mmdet_numerics import prepare_image

        if self.model is None:
            raise ConfigError("maskrcnn: call load(checkpoint) (or fit) before predict")
        img = np.asarray(image)
        if img.ndim not in (2, 3) or min(img.shape[:2]) < 2:
            raise ConfigError(f"maskrcnn.predict: expected an HxW(xC) image, got shape {img.shape}")
        h, w = img.shape[:2]
        prepared = prepare_image(img, **self._prepare_args)
        if not np.any(prepared):  # a flat image holds no cells
            return Instances.empty((h, w))
        if max(h, w) <= self.tile:
            return self._predict_prepared(prepared)
        return predict_tiled(
            self._predict_prepared,
            lambda win: prepared[win],
            (h, w),
            tile=self.tile,
            overlap=self.overlap,
            progress=True,
        )

    def _predict_prepared(self, img: np.ndarray) -> Instances:
        """Detector on one prepared HxWx3 float32 (0..255) image or tile."""
        import torch

        from teachers.mmdet_numerics import detections_to_instances

        data = self._pipeline(dict(img=np.ascontiguousarray(img), img_id=0))
        batch = dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]])
        with torch.no_grad():
            res = self.model.test_step(batch)[0].pred_instances
        if len(res) == 0:
            return Instances.empty(img.shape[:2])
        return detections_to_instances(
            res.masks.cpu().numpy(),
            res.scores.cpu().numpy(),
            res.bboxes.cpu().numpy(),
            score_thr=self.score_thr,
            min_visible=self.min_visible,
            min_size=self.min_size,
        )

    @property
    def scale(self) -> float:
        """Rescale factor of the test pipeline (network px per image px)."""
        for step in self.cfg.test_dataloader.dataset.pipeline:
            if step["type"] == "Resize":
                f = step.get("scale_factor", 1.0)
                return float(f[0] if isinstance(f, (tuple, list)) else f)
        return 1.0


__all__ = ["MaskRCNNTeacher", "adapt_checkpoint"]
