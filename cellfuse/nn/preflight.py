"""Preflight of a profile on this machine, before any training: ``cellfuse check [INPUT]
--profile full`` and the start of ``cellfuse run``.

A GPU profile (``device = "cuda"`` in ``configs/pipeline/<profile>.py``) fails hours into a
run when the machine cannot serve it; each of these is looked for in seconds instead, one
line per problem (``error: profile <name>: ...``), exit 2:

- the device: ``torch.cuda`` sees the GPU the profile asks for (``cuda`` or ``cuda:i``);
- mmcv's ops were built for it: with a Mask R-CNN teacher on CUDA, mmcv's compiled ``_ext``
  library must carry CUDA kernels (``__cudaRegisterFatBinary``; ``tools/setup.sh`` builds such
  a wheel when it finds a GPU). The library is read, not imported (importing ``mmcv.ops``
  takes seconds to minutes on a busy machine); a CPU-only build would fail at the first
  RoIAlign on a CUDA tensor, after the flow U-Net has trained;
- the official checkpoints the profile names (``checkpoints = dict(sam=PATH, maskrcnn=PATH)``)
  exist and fit the architecture: read with ``weights_only=True`` (memory-mapped) and every
  tensor's shape compared with the model built on the meta device (no memory, no weights);
  Mask R-CNN's heads may differ (the COCO classes are dropped and re-initialised by
  :func:`teachers.maskrcnn.adapt_checkpoint`), its backbone and neck may not. Without a SAM
  checkpoint the full profile trains the tiny SAM instead (a warning says so);
- GPU memory for the configured batches, an **estimate** (see :func:`estimate_bytes`): the
  largest teacher (they train one after another) and the students (two train side by side)
  against the smallest visible GPU's total memory.
"""

from __future__ import annotations

import importlib.util
import logging
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellfuse.check import Problem
from cellfuse.config import official_checkpoint
from cellfuse.errors import ConfigError
from cellfuse.plugins import plugin

log = logging.getLogger(__name__)

GIB = 2**30
# CUDA context, cuDNN workspaces and the caching allocator's slack, on top of the estimate.
CUDA_OVERHEAD_BYTES = 1.5 * GIB
ESTIMATE_MARGIN = 1.25
# MMDetection's model zoo (configs/mask_rcnn/README.md): Mask R-CNN R-50-FPN 1x trains in
# 4.4 GB with 2 images of 1333x800 per GPU; memory is taken as proportional to pixels.
MASKRCNN_ZOO_BYTES = 4.4e9
MASKRCNN_ZOO_PIXELS = 2 * 1333 * 800
CUDA_SYMBOL = b"__cudaRegisterFatBinary"


class PreflightError(ConfigError):
    """The machine cannot serve the profile; ``problems`` holds every error line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [p.text for p in problems if p.level == "error"]
        super().__init__("\n".join(lines[:1] + [f"error: {t}" for t in lines[1:]]))


@dataclass(frozen=True)
class GPU:
    """One visible CUDA device."""

    name: str
    total_bytes: int


# ----------------------------------------------------------------------------- machine queries
# (module functions, so tests replace them: there is no GPU where the tests run)


def visible_gpus() -> list[GPU]:
    """The CUDA devices torch sees (none when torch has no CUDA or no driver)."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(GPU(p.name, int(p.total_memory)))
    return out


def torch_cuda_build() -> str | None:
    """The CUDA version torch was built with (None: a CPU-only torch)."""
    import torch

    return torch.version.cuda


def mmcv_ext_library() -> Path | None:
    """mmcv's compiled ops library (``mmcv/_ext*.so``), found without importing mmcv."""
    spec = importlib.util.find_spec("mmcv")
    if spec is None or not spec.origin:
        return None
    found = sorted(Path(spec.origin).parent.glob("_ext*.so"))
    return found[0] if found else None


def has_cuda_kernels(library: Path) -> bool:
    """True when a compiled extension registers CUDA fat binaries (built with CUDA)."""
    with open(library, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return m.find(CUDA_SYMBOL) >= 0


# ----------------------------------------------------------------------------- estimates


def saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the tensors autograd saves while ``fn`` runs: the activation memory of a
    training step's forward."""
    import torch

    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def _param_bytes(module: Any) -> int:
    """Weights + gradients + AdamW's two moments of the trainable parameters (4 x fp32), the
    weights alone of frozen ones."""
    return sum(p.numel() * (16 if p.requires_grad else 4) for p in module.parameters())


# Activations of a convolutional network grow with batch x pixels: they are measured on one
# PROBE x PROBE crop on the CPU (milliseconds) and scaled (a meta-device forward would need
# torch's decompositions, whose import alone takes seconds).
PROBE = 64


def _flow_bytes(trainer: Any) -> int:
    import torch

    net = trainer.build_net().train()
    x = torch.zeros(1, 3, PROBE, PROBE)
    probe = saved_bytes(lambda: net(x))
    return _param_bytes(net) + int(probe * trainer.batch_size * (trainer.crop / PROBE) ** 2)


def _sam_bytes(tcfg: dict) -> int:
    """SAM: parameters; the encoder (trained: its saved activations; frozen, under no_grad:
    one block's working set, dominated by the global-attention matrices, 3 x heads x
    tokens^2 floats, and the MLP, 12 x tokens x dim floats); the mask decoder's saved
    activations for every prompt of every crop of a step (measured on 2 prompts on the CPU,
    scaled)."""
    import copy

    import torch

    sam_registry = plugin("sam_registry")
    train = dict(tcfg.get("train") or {})
    crops = int(train.get("crops_per_step", 4))
    prompts = int(train.get("prompts_per_crop", 16))
    freeze = tcfg.get("freeze_encoder")
    freeze = bool(tcfg.get("checkpoint")) if freeze is None else bool(freeze)
    with torch.device("meta"):  # construction only: shapes and parameter counts
        sam = sam_registry[tcfg.get("variant", "vit_tiny")]()
    enc_net = sam.image_encoder
    if freeze:
        enc_net.requires_grad_(False)
        tokens = (enc_net.img_size // enc_net.patch_embed.proj.stride[0]) ** 2
        block = enc_net.blocks[0]
        dim, heads = block.norm1.normalized_shape[0], block.attn.num_heads
        enc = crops * 4 * (3 * heads * tokens**2 + 12 * tokens * dim)
    else:
        net = copy.deepcopy(enc_net).to_empty(device="cpu")
        for t in net.state_dict().values():
            t.zero_()
        x = torch.zeros(1, 3, net.img_size, net.img_size)
        enc = crops * saved_bytes(lambda: net(x))
    decoder = copy.deepcopy(sam.mask_decoder).to_empty(device="cpu")
    for t in decoder.state_dict().values():
        t.zero_()
    h, w = sam.prompt_encoder.image_embedding_size
    c = sam.prompt_encoder.embed_dim
    n = 2

    def decoder_step() -> Any:
        return decoder(
            image_embeddings=torch.zeros(1, c, h, w),
            image_pe=torch.zeros(1, c, h, w),
            sparse_prompt_embeddings=torch.zeros(n, 4, c),  # point, 2 negatives, padding
            dense_prompt_embeddings=torch.zeros(n, c, h, w),
            multimask_output=False,
        )

    dec = crops * saved_bytes(decoder_step) * prompts // n
    return _param_bytes(sam) + enc + dec


def _maskrcnn_bytes(cfg: Any) -> int:
    crop = next(
        (s["crop_size"] for s in cfg.train_dataloader.dataset.pipeline if "crop_size" in s),
        (1024, 1024),
    )
    pixels = int(cfg.train_dataloader.batch_size) * int(crop[0]) * int(crop[1])
    return int(MASKRCNN_ZOO_BYTES * pixels / MASKRCNN_ZOO_PIXELS)


def estimate_bytes(kind: str, cfg: Any) -> int:
    """GPU memory of one training step of a stage, an estimate.

    Flow networks and SAM: the parameters (x 16 B trainable: weights, gradients, AdamW
    moments; x 4 B frozen) plus the activations autograd saves for the configured batch,
    measured in fp32 on a small probe and scaled (bf16 autocast roughly halves them, so
    this errs high); a frozen SAM encoder counts one block's working set (:func:`_sam_bytes`).
    Mask R-CNN: MMDetection's measured 4.4 GB for 2 x 1333x800 images, scaled by pixels per
    batch. The caller adds :data:`ESTIMATE_MARGIN` and :data:`CUDA_OVERHEAD_BYTES`.
    """
    if kind == "maskrcnn":
        return _maskrcnn_bytes(cfg)
    if kind == "sam":
        return _sam_bytes(cfg.teacher.to_dict())
    if kind == "flowunet":
        t = cfg.teacher.to_dict()
        t["device"] = "cpu"
        return _flow_bytes(plugin("build_teacher")(t))
    if kind == "student":
        s = cfg.student.to_dict()
        s.update(device="cpu", pseudo=None, soft_teacher=None)
        return _flow_bytes(plugin("student_trainer")(**s))
    return 0  # the classical teacher runs on the CPU


# ----------------------------------------------------------------------------- checkpoints


def _load_state(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError("not a state dict")
    return state


def _shape_mismatches(own: dict, state: dict, prefixes: tuple[str, ...] = ("",)) -> list[str]:
    """Keys of ``own`` (under ``prefixes``) missing from ``state`` or of another shape."""
    out = []
    for k, v in own.items():
        if not k.startswith(prefixes):
            continue
        if k not in state:
            out.append(f"{k} missing")
        elif tuple(state[k].shape) != tuple(v.shape):
            out.append(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}")
    return out


def check_checkpoint(name: str, kind: str, path: str, cfg: Any) -> str | None:
    """What is wrong with an official checkpoint (None: it loads and fits)."""
    import torch

    p = Path(path)
    if not p.is_file():
        return f"checkpoints.{name}={path}: file not found (nothing is downloaded)"
    try:
        state = _load_state(p)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        return f"checkpoints.{name}={path}: cannot be read as weights ({type(exc).__name__}: {exc})"
    with torch.device("meta"):
        if kind == "sam":
            model = plugin("sam_registry")[cfg.teacher.get("variant", "vit_b")]()
            prefixes: tuple[str, ...] = ("",)
        else:
            from mmdet.registry import MODELS
            from mmengine.registry import init_default_scope

            init_default_scope("mmdet")
            model = MODELS.build(cfg.model)
            prefixes = ("backbone.", "neck.")  # the heads are re-initialised when they differ
    bad = _shape_mismatches(model.state_dict(), state, prefixes)
    if bad:
        return (
            f"checkpoints.{name}={path}: does not fit the {kind} architecture of this profile: "
            f"{len(bad)} tensors differ (first: {', '.join(bad[:2])})"
        )
    return None


# ----------------------------------------------------------------------------- preflight


def _stages(profile_cfg: Any, input_dir: Path) -> list[tuple[str, str, Any, str | None]]:
    """``(name, kind, stage config, fallback note)`` of every model the profile trains."""
    from cellfuse.app.pipeline import stage_config, teacher_stage_config

    out = []
    for entry in profile_cfg.teachers:
        cfg, _, note = teacher_stage_config(profile_cfg, entry, input_dir, imports=False)
        out.append((entry["name"], cfg.teacher["type"], cfg, note))
    student = stage_config(
        profile_cfg.student, input_dir, profile_cfg.get("seed", 0), imports=False
    )
    out.append(("student", "student", student, None))
    return out


def preflight(profile_cfg: Any, profile: str, input_dir: str | Path = ".") -> list[Problem]:
    """Every problem the machine has with ``profile`` (see module doc); [] for CPU profiles.

    Returns:
        ``Problem`` lines, ``text`` = ``profile <name>: <what>``; errors stop a run.
    """
    device = str(profile_cfg.get("device", "cpu"))
    if not device.startswith("cuda"):
        return []
    problems: list[Problem] = []

    def add(level: str, what: str) -> None:
        problems.append(Problem(level, f"profile {profile}: {what}"))

    stages = _stages(profile_cfg, Path(input_dir))
    for _, _, _, note in stages:
        if note:
            add("warning", note)
    gpus = visible_gpus()
    index = int(device.split(":")[1]) if ":" in device else 0
    if not gpus:
        build = torch_cuda_build()
        why = f"torch {'built with CUDA ' + build if build else 'is a CPU-only build'}"
        add(
            "error",
            f'device "{device}": no CUDA GPU visible ({why}, torch.cuda.is_available() is '
            "False); run it on a GPU machine, or choose a CPU profile (--profile bench)",
        )
    elif index >= len(gpus):
        add("error", f'device "{device}": only {len(gpus)} CUDA GPU(s) visible')
    if any(kind == "maskrcnn" for _, kind, _, _ in stages):
        lib = mmcv_ext_library()
        if lib is None:
            add("error", "Mask R-CNN needs mmcv with compiled ops: none found (run tools/setup.sh)")
        elif not has_cuda_kernels(lib):
            add(
                "error",
                f"mmcv's ops ({lib}) were built without CUDA, so Mask R-CNN fails on the GPU: "
                "rebuild with CELLFUSE_MMCV_CUDA=1 bash tools/setup.sh (FORCE_CUDA=1)",
            )
    for name, kind, cfg, _ in stages:
        path = official_checkpoint(cfg) if kind in ("sam", "maskrcnn") else None
        if path:
            bad = check_checkpoint(name, kind, path, cfg)
            if bad:
                add("error", bad)
    if gpus and index < len(gpus):
        problems += [Problem("error", f"profile {profile}: {t}") for t in _memory(stages, gpus)]
    return problems


def _memory(stages: list, gpus: list[GPU]) -> list[str]:
    total = min(g.total_bytes for g in gpus)
    need = {name: estimate_bytes(kind, cfg) for name, kind, cfg, _ in stages}
    students = 2 * need.pop("student")  # the distilled and the labeled-only side by side
    out = []
    for name, est in [*need.items(), ("students", students)]:
        want = est * ESTIMATE_MARGIN + CUDA_OVERHEAD_BYTES
        log.info("preflight: %s needs ~%.1f GiB of GPU memory (estimate)", name, want / GIB)
        if want > total:
            out.append(
                f"{name}: the configured batch needs ~{want / GIB:.1f} GiB of GPU memory "
                f"(estimate), the GPU has {total / GIB:.1f} GiB; lower its batch size"
            )
    return out


def require_preflight(profile_cfg: Any, profile: str, input_dir: str | Path = ".") -> None:
    """:func:`preflight`; warnings are logged, errors raise :class:`PreflightError`."""
    problems = preflight(profile_cfg, profile, input_dir)
    for p in problems:
        if p.level != "error":
            log.warning("%s", p.line)
    if any(p.level == "error" for p in problems):
        raise PreflightError(problems)


__all__ = [
    "GPU",
    "PreflightError",
    "estimate_bytes",
    "preflight",
    "require_preflight",
    "visible_gpus",
]
