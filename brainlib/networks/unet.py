"""The diffusion family's denoiser: a compact U-Net for 1-channel slices.

DDPM's layout (Ho et al. 2020, with improved DDPM's scale-shift conditioning): per level
`unet_blocks` residual blocks (GroupNorm, SiLU, 3x3 convolutions), a strided convolution
down and nearest-neighbour 2x plus a convolution up, the encoder's output of each level
concatenated into the decoder's, self-attention in the middle (`unet_attention`). The
timestep enters through a sinusoidal embedding and an MLP; a conditional model adds a
learned class embedding (NC, AD, or NULL_CLASS for classifier-free guidance) to it. Every
residual branch and the output convolution start at zero, so a new network is the identity
on its skip paths and predicts 0.

Why not MONAI's `DiffusionModelUNet`: docs/architecture.md, "The diffusion family".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from brainlib.config import RunConfig

NULL_CLASS = 2  # the "no class" label of classifier-free guidance (NC = 0, AD = 1)
GROUPS = 8  # GroupNorm groups; config.py requires widths that are multiples of it
HEAD_CHANNELS = 32  # attention head width


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (possibly fractional) timesteps t [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def zeroed(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))) * (1 + scale) + shift)), scale and shift from the embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(GROUPS, c_out)
        self.conv2 = zeroed(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, as a residual branch."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = max(1, channels // HEAD_CHANNELS)
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zeroed(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """(x_t [B,1,S,S], t [B], label [B] or None) -> the objective's prediction [B,1,S,S]."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        widths, blocks = list(cfg.unet_channels), cfg.unet_blocks
        self.base = widths[0]
        emb_dim = 4 * widths[0]
        self.time = nn.Sequential(nn.Linear(widths[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.classes = nn.Embedding(3, emb_dim) if cfg.conditional else None
        self.conv_in = nn.Conv2d(1, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            self.down.append(nn.ModuleList([ResBlock(c if j == 0 else w, w, emb_dim) for j in range(blocks)]))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, emb_dim)
        self.attention = SelfAttention(c) if cfg.unet_attention else None
        self.mid2 = ResBlock(c, c, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            self.up.append(nn.ModuleList([ResBlock(c + w if j == 0 else w, w, emb_dim) for j in range(blocks)]))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
                c = widths[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(GROUPS, widths[0]), nn.SiLU(),
                                 zeroed(nn.Conv2d(widths[0], 1, 3, padding=1)))

    def embedding(self, t: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.base))
        if self.classes is not None:
            if label is None:
                raise ValueError("this denoiser is class-conditional: it needs labels (NC=0, AD=1, none=2)")
            emb = emb + self.classes(label)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embedding(t, label)
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid1(h, emb)
        if self.attention is not None:
            h = self.attention(h)
        h = self.mid2(h, emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
