"""Small composable blocks of the ScarNet hybrid: conv blocks with SE, ScarAttention, gated fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): reweight channels from their global average."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * w


class ScarAttention(nn.Module):
    """ScarNet's attention: a channel gate (average- and max-pooled MLP) then a 7×7 spatial gate.

    The spatial gate looks at the channel-wise mean and max maps, which lets it pick out the
    small, bright, thin structures that scar is in LGE; the channel gate chooses which
    features describe them.
    """

    def __init__(self, channels: int, reduction: int = 8, spatial_kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.channel_mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                         nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.channel_mlp(x.mean((2, 3), keepdim=True))
        mx = self.channel_mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (affine, no running statistics), computed on the CPU at inference as a
    group norm with one channel per group: the same normalisation, parameters and state-dict keys.

    Why: PyTorch's instance norm copies a channels-last tensor to channels-first and returns it
    so, and the next convolution converts it back; the group norm has a channels-last CPU kernel.
    That is a tenth of a CPU forward of the bundled model. Training and GPUs keep the instance
    norm they were measured with.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.track_running_stats or x.device.type != "cpu" or x.dim() != 4:
            return super().forward(x)
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


class ConvBlock(nn.Module):
    """Two 3×3 conv → InstanceNorm → LeakyReLU (nnU-Net's block), then squeeze-and-excitation.

    Instance norm because batches are small and LGE intensity scales differ between scanners.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, se: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = InstanceNorm2d(out_channels, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = InstanceNorm2d(out_channels, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.se = SqueezeExcitation(out_channels) if se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.se(x)


class GatedFusion(nn.Module):
    """Adaptive fusion of U-Net features with (resampled) ViT-encoder features.

    The encoder features are projected to the U-Net width by a 1×1 conv built here (never in
    ``forward``), resized to the U-Net grid, and mixed by a learned per-pixel, per-channel gate:
    ``g · unet + (1 − g) · encoder``. The gate starts near 0.5 so both paths train from the start.
    """

    def __init__(self, unet_channels: int, encoder_channels: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(encoder_channels, unet_channels, 1, bias=False),
                                     InstanceNorm2d(unet_channels, affine=True), nn.LeakyReLU(0.01, inplace=True))
        self.gate = nn.Conv2d(2 * unet_channels, unet_channels, 3, padding=1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, unet: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        encoder = self.project(encoder)
        if encoder.shape[-2:] != unet.shape[-2:]:
            encoder = F.interpolate(encoder, size=unet.shape[-2:], mode="bilinear", align_corners=False)
        g = torch.sigmoid(self.gate(torch.cat([unet, encoder], dim=1)))
        return g * unet + (1 - g) * encoder


class UpBlock(nn.Module):
    """Transposed-conv upsampling, skip concatenation, ConvBlock, then ScarAttention."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, attention: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = ConvBlock(out_channels + skip_channels, out_channels, se=False)
        self.attention = ScarAttention(out_channels) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.attention(self.conv(torch.cat([x, skip], dim=1)))
