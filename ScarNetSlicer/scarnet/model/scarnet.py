"""The ScarNet hybrid (arXiv 2501.01372): a ViT image encoder in parallel with a U-Net.

The U-Net path sees the LGE slice at full resolution and keeps thin structures (a 2-pixel
subendocardial scar); the pretrained ViT path sees the whole crop and brings context
(where the LV is, what is blood and what is enhancement). Encoder features are projected
and resized to one U-Net level and merged there by a learned gate; decoder stages end with
ScarAttention, encoder stages with squeeze-and-excitation. Five output classes: 0 background,
1 LV blood pool, 2 healthy myocardium, 3 scar, 4 MVO.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import NUM_CLASSES
from .blocks import ConvBlock, GatedFusion, UpBlock


@dataclass
class ScarNetConfig:
    """Everything needed to rebuild a model; saved inside every checkpoint and weights file."""

    encoder: str = "litemedsam"  # a name in scarnet.model.registry.ENCODERS, or "none" for a plain U-Net
    input_size: int = 128  # pixels of the square heart crop the model sees
    pixel_spacing_mm: float = 1.25  # in-plane spacing of that crop
    # The ViT path sees the crop at this size: at 64 px the LiteMedSAM encoder costs a quarter of
    # what it costs at 128 px (its first stage runs at full resolution), and the U-Net path keeps
    # the fine detail. Its 16×16 output matches U-Net level 3 of a 128-px input.
    encoder_input_size: int = 64
    unet_channels: tuple[int, ...] = (32, 64, 128, 256, 320)
    fusion_level: int = 3  # U-Net level (stride 2**level) where encoder features are merged
    num_classes: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_encoder(self) -> bool:
        """False for a plain U-Net (encoder "none"; "" or None in older or hand-written files)."""
        return self.encoder not in ("none", "", None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScarNetConfig:
        """The config stored in a weights file or training config; ``ValueError``/``TypeError`` for one that
        cannot build a working model (:meth:`check`)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "unet_channels" in known:
            known["unet_channels"] = tuple(known["unet_channels"])
        config = cls(**known)
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ValueError`` for values no model is built with (a damaged or hand-edited file): a crop whose size
        the U-Net cannot halve at every level, a spacing that is not a positive number of mm, another number of
        classes than the five labels, a fusion level outside the U-Net."""
        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        channels = self.unet_channels
        if not isinstance(self.encoder, str):
            raise ValueError(f"encoder must be a name, not {self.encoder!r}")
        if not (2 <= len(channels) <= 8 and all(whole(c) and 1 <= c <= 4096 for c in channels)):
            raise ValueError(f"unet_channels {channels!r}: 2 to 8 positive whole numbers")
        stride = 2 ** (len(channels) - 1)
        if not (whole(self.input_size) and 16 <= self.input_size <= 1024 and self.input_size % stride == 0):
            raise ValueError(f"input_size {self.input_size!r}: a whole number of pixels from 16 to 1024 that the "
                             f"U-Net's {len(channels)} levels halve evenly (a multiple of {stride})")
        if not (whole(self.encoder_input_size) and 16 <= self.encoder_input_size <= 1024):
            raise ValueError(f"encoder_input_size {self.encoder_input_size!r}: a whole number from 16 to 1024")
        spacing = self.pixel_spacing_mm
        if not (isinstance(spacing, (int, float)) and not isinstance(spacing, bool) and math.isfinite(spacing)
                and 0.1 <= spacing <= 10.0):
            raise ValueError(f"pixel_spacing_mm {spacing!r}: a number of mm from 0.1 to 10")
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"num_classes {self.num_classes!r}: ScarNet has {NUM_CLASSES} (background, LV blood pool, "
                             "myocardium, scar, MVO)")
        # A plain U-Net has no fusion, whatever the field says.
        if self.has_encoder and not (whole(self.fusion_level) and 0 <= self.fusion_level < len(channels)):
            raise ValueError(f"fusion_level {self.fusion_level!r} outside 0..{len(channels) - 1}")


class ScarNet(nn.Module):
    """(B, 1, H, W) normalised LGE crop in [0, 1] → (B, num_classes, H, W) logits."""

    def __init__(self, config: ScarNetConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        channels = config.unet_channels
        self.down = nn.ModuleList(
            [ConvBlock(1, channels[0])]
            + [ConvBlock(channels[i - 1], channels[i], stride=2) for i in range(1, len(channels))]
        )
        self.up = nn.ModuleList(
            [UpBlock(channels[i + 1], channels[i], channels[i]) for i in reversed(range(len(channels) - 1))]
        )
        self.head = nn.Conv2d(channels[0], config.num_classes, 1)
        self.encoder = encoder
        if encoder is not None:
            if not 0 <= config.fusion_level < len(channels):
                raise ValueError(f"fusion_level {config.fusion_level} outside 0..{len(channels) - 1}")
            self.fusion = GatedFusion(channels[config.fusion_level], encoder.out_channels)
        else:
            self.fusion = None

    def encode(self, x: torch.Tensor) -> torch.Tensor | None:
        """ViT-path features for ``x`` (three identical channels, as the encoder was pretrained on RGB)."""
        if self.encoder is None:
            return None
        size = self.config.encoder_input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True).to(x.dtype)
        return self.encoder(x.expand(-1, 3, -1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encode(x)
        skips = []
        h = x
        for level, block in enumerate(self.down):
            h = block(h)
            if encoded is not None and level == self.config.fusion_level:
                h = self.fusion(h, encoded)
            skips.append(h)
        h = skips.pop()
        for block in self.up:
            h = block(h, skips.pop())
        return self.head(h)
