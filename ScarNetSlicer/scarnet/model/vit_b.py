"""segment-anything's ViT-B image encoder (the paper's MedSAM configuration) at the model's input size.

MedSAM was trained at 1024 px (a 64×64 token grid). At a smaller input the absolute position
embedding and the relative-position tables of the global-attention blocks are resized when a
checkpoint is loaded; windowed blocks keep theirs (their window is still 14).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

PATCH_SIZE = 16


def build_vit_b(input_size: int) -> nn.Module:
    """ViT-B with SAM's neck: (B, 3, S, S) → (B, 256, S/16, S/16)."""
    try:
        from segment_anything.modeling.image_encoder import ImageEncoderViT
    except ImportError as error:
        from ..extras import install_hint

        raise WeightsError("the medsam_vit_b encoder needs the segment-anything package "
                           f"({install_hint('bench')})") from error
    if input_size % PATCH_SIZE:
        raise ValueError(f"ViT-B input size must be a multiple of {PATCH_SIZE}, got {input_size}")
    encoder = ImageEncoderViT(
        img_size=input_size, patch_size=PATCH_SIZE, in_chans=3, embed_dim=768, depth=12, num_heads=12,
        mlp_ratio=4.0, out_chans=256, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        act_layer=nn.GELU, use_rel_pos=True, rel_pos_zero_init=True, window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
    )
    encoder.out_channels = 256
    encoder.stride = PATCH_SIZE
    return encoder


def load_medsam_checkpoint(encoder: nn.Module, path: str | Path) -> None:
    """Load a user-supplied MedSAM/SAM ViT-B checkpoint (``medsam_vit_b.pth``) into ``encoder``.

    Only tensors are unpickled (``weights_only=True``). A ``model``/``state_dict`` nesting and a
    DataParallel ``module.`` prefix are unwrapped, then the ``image_encoder.`` prefix is stripped;
    position tables are resized to this encoder's grid. :class:`WeightsError` (one line) for a
    tensor that is not one, holds integers where the encoder has floats, or NaN/Inf.
    """
    from .registry import load_torch_checkpoint, sam_checkpoint_tensors

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: MedSAM checkpoint not found")
    try:
        checkpoint = load_torch_checkpoint(path)
    except WeightsError:
        raise
    except Exception as error:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__})") from None
    state = sam_checkpoint_tensors(checkpoint, path, "MedSAM ViT-B")
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    target = encoder.state_dict()
    resized = {}
    for key, value in state.items():
        if key not in target:
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: corrupted or not a MedSAM ViT-B checkpoint ({key} is not a tensor)")
        if target[key].is_floating_point() and not value.is_floating_point():
            # load_state_dict would cast integers into the float parameters without a word.
            raise WeightsError(f"{path}: corrupted or not a MedSAM ViT-B checkpoint ({key} holds {value.dtype} "
                               "values, not floating-point numbers)")
        if value.is_floating_point():
            if not bool(torch.isfinite(value).all()):  # a damaged file: flipped bits, random bytes
                raise WeightsError(f"{path}: corrupted encoder checkpoint ({key} holds NaN or infinite values)")
            value = value.float()  # a half-precision save is resized in the float32 its parameters keep
        want = target[key].shape
        if value.shape != want:
            if key == "pos_embed":  # (1, H, W, C)
                value = F.interpolate(value.permute(0, 3, 1, 2), size=want[1:3], mode="bicubic",
                                      align_corners=False).permute(0, 2, 3, 1)
            elif key.endswith(("rel_pos_h", "rel_pos_w")):  # (2S-1, head_dim)
                value = F.interpolate(value.T[None], size=want[0], mode="linear", align_corners=False)[0].T
            else:
                raise WeightsError(f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(want)}; "
                                   "is this a ViT-B checkpoint?")
        resized[key] = value
    missing = set(target) - set(resized)
    if missing:
        raise WeightsError(f"{path}: not a SAM/MedSAM ViT-B checkpoint ({len(missing)} encoder tensors missing, "
                           f"e.g. {sorted(missing)[0]})")
    encoder.load_state_dict(resized, strict=True)
