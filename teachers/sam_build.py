"""SAM builders: one per variant, all thin wrappers over :func:`_build_sam`, in SAM's own style.

``sam_registry`` maps a variant name to its builder, as ``segment_anything.sam_model_registry``
does. A builder takes ``checkpoint=None``, loads a local state dict if given, returns the model
in ``eval()`` mode and never downloads anything. The official variants keep the exact official
architecture, so the released ``sam_vit_{b,l,h}_*.pth`` files load.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from cellfuse.errors import ConfigError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- builders


def _build_sam(
    *,
    encoder_embed_dim: int,
    encoder_depth: int,
    encoder_num_heads: int,
    encoder_global_attn_indexes: Sequence[int],
    img_size: int = 1024,
    patch_size: int = 16,
    window_size: int = 14,
    prompt_embed_dim: int = 256,
    decoder_depth: int = 2,
    decoder_mlp_dim: int = 2048,
    decoder_num_heads: int = 8,
    iou_head_hidden_dim: int = 256,
    mask_in_chans: int = 16,
    checkpoint: str | Path | None = None,
) -> Any:
    """A ``segment_anything.modeling.Sam``; the defaults are the official ones."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    if img_size % patch_size:
        raise ConfigError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
    embed_size = img_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth,
            embed_dim=encoder_embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=encoder_num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(encoder_global_attn_indexes),
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(embed_size, embed_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_num_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    sam.eval()
    if checkpoint is not None:
        load_sam_weights(sam, checkpoint)
    return sam


def build_sam_vit_h(checkpoint: str | Path | None = None) -> Any:
    """Official SAM ViT-H (636M parameters)."""
    return _build_sam(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
        checkpoint=checkpoint,
    )


def build_sam_vit_l(checkpoint: str | Path | None = None) -> Any:
    """Official SAM ViT-L (308M parameters)."""
    return _build_sam(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
        checkpoint=checkpoint,
    )


def build_sam_vit_b(checkpoint: str | Path | None = None) -> Any:
    """Official SAM ViT-B (94M parameters)."""
    return _build_sam(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
        checkpoint=checkpoint,
    )


def build_sam_vit_tiny(checkpoint: str | Path | None = None) -> Any:
    """A small SAM (~1.6M parameters) that trains from scratch on a CPU in minutes.

    128 px input with 8 px patches: a 16x16 embedding and 64x64 low-res masks, i.e. 2 px
    per mask pixel, enough for nuclei zoomed to ~20 px. Six 128-d blocks of 8x8 windowed
    attention, two of them global, and a 64-d decoder. The decoder runs once per prompt on
    all image tokens, so the token count and its width set most of a step's cost: on 2 CPU
    cores a step of 4 crops x 16 prompts takes ~0.25 s, 4x less than at 256 px.
    """
    return _build_sam(
        encoder_embed_dim=128,
        encoder_depth=6,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(2, 5),
        img_size=128,
        patch_size=8,
        window_size=8,
        prompt_embed_dim=64,
        decoder_mlp_dim=256,
        decoder_num_heads=2,
        iou_head_hidden_dim=64,
        checkpoint=checkpoint,
    )


sam_registry = {
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "vit_tiny": build_sam_vit_tiny,
}


# Inference settings calibrated after training and stored in a cellfuse SAM checkpoint.
CALIBRATED = ("mask_threshold", "infer_diameter")


def load_sam_weights(sam: torch.nn.Module, checkpoint: str | Path) -> dict[str, float]:
    """Load a local state dict (official ``.pth`` or a cellfuse checkpoint's ``model``).

    Returns:
        The calibrated settings (:data:`CALIBRATED`) stored in a cellfuse checkpoint; empty
        for an official checkpoint.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist (nothing is ever downloaded).
        ConfigError: the keys or shapes do not fit the model (first mismatches listed).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: SAM checkpoint not found (download e.g. sam_vit_b_01ec64.pth yourself "
            "and pass its local path; nothing is downloaded)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    stored: dict[str, float] = {}
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        stored = {k: float(state[k]) for k in CALIBRATED if state.get(k) is not None}
        state = state["model"]
    own = sam.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise ConfigError(
            f"{path}: state dict does not fit this SAM variant: "
            f"{len(missing)} missing (first: {missing[:5]}), "
            f"{len(unexpected)} unexpected (first: {unexpected[:5]}), "
            f"{len(shapes)} shape mismatches (first: {shapes[:3]})"
        )
    sam.load_state_dict(state)
    return stored
