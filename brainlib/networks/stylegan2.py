"""StyleGAN2 (Karras et al. 2020, arXiv 1912.04958) for single-channel images: the skip
generator with weight demodulation and the residual discriminator, beside the v1 pair in
`stylegan1.py` and chosen by `arch = "stylegan2"`.

What changes from v1, and why it matters for brain slices: AdaIN normalises each feature map
on its own statistics, which lets the generator hide signal in a map's mean and shows up as
blotchy, mottled texture; demodulation scales the weights instead, so smooth tissue stays
smooth. The skip generator sums an image output from every resolution (upsampled with the
[1, 3, 3, 1] filter) and the residual critic looks at every scale through shortcut paths, so
the networks can train at the full size from the first batch (`start_res = image_size`) or
grow progressively, with the new resolution's image output faded in.

The mapping network, truncation, style mixing and class conditioning are v1's
(`stylegan1.StyleGenerator`, `stylegan1.DiscriminatorEpilogue`), so sampling, the explorer and the
evaluation use either pair unchanged. Both networks hold the same style count per
resolution as v1 (two at 4 px, two more per doubling): the to-image layer at each resolution
shares its w with the next block's first convolution, as in StyleGAN2.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from brainlib.networks.layers import (
    RELU_GAIN,
    ConvDownFiltered,
    EqualConv2d,
    ModulatedConv2d,
    NoiseInjection,
    bilinear_2x,
    fir_downsample_2x,
    lrelu,
)
from brainlib.networks.settings import NetworkSettings
from brainlib.networks.stylegan1 import (
    Discriminator,
    StyleGenerator,
    SynthesisBlock,
    has_noise,
    image_planes,
    is_fading,
)

SKIP_GAIN = 1 / math.sqrt(2)  # the residual critic's sum keeps unit variance


class StyledConv2(nn.Module):
    """Modulated 3x3 convolution (after filtered 2x upsampling, when `upsample`), noise with one
    learned strength for the layer, bias, LeakyReLU with gain sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, *, upsample: bool, noise_seed: int,
                 noise: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection(1, res, seed=noise_seed) if noise else None
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        x = self.conv(x, w)
        if self.noise is not None:
            x = self.noise(x, noise_mode, noise_strength)
        return lrelu(x + self.bias.to(x.dtype)) * RELU_GAIN


class ToImage2(nn.Module):
    """Features -> grey (and a mask logit; `stylegan1.image_planes`): a modulated 1x1 convolution
    without demodulation, plus bias."""

    def __init__(self, channels: int, w_dim: int, planes: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(channels, planes, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, planes, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias.to(x.dtype)


class InputBlock2(nn.Module):
    """The 4x4 block: a learned constant and one styled convolution (one style)."""

    def __init__(self, channels: int, w_dim: int, *, noise: bool = True):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))
        self.conv = StyledConv2(channels, channels, w_dim, 4, upsample=False, noise_seed=41, noise=noise)

    def forward(self, ws: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        return self.conv(x, ws[:, 0], noise_mode, noise_strength)


class SynthesisBlock2(SynthesisBlock):
    """A block at 8 px and up: upsampling styled conv, then styled conv (two styles)."""

    conv_type = StyledConv2


class SkipGenerator(StyleGenerator):
    """StyleGAN2's skip generator: img = up(img at res / 2) + to_image(features at res), from
    4 px to the requested resolution. While `res` fades in (alpha < 1) its to-image output is
    scaled by alpha, so alpha = 0 is the previous resolution's image, upsampled."""

    def __init__(self, settings: NetworkSettings):
        super().__init__(settings)
        ch, w_dim = settings.channels, settings.w_dim
        self.blocks = nn.ModuleDict({"4": InputBlock2(ch[4], w_dim, noise=has_noise(settings, 4))})
        planes = image_planes(settings)
        self.to_image = nn.ModuleDict({"4": ToImage2(ch[4], w_dim, planes)})
        for res in self.resolutions[1:]:
            self.blocks[str(res)] = SynthesisBlock2(ch[res // 2], ch[res], w_dim, res, noise=has_noise(settings, res))
            self.to_image[str(res)] = ToImage2(ch[res], w_dim, planes)

    def synthesize(self, ws: Tensor, *, res: int, alpha: float | Tensor = 1.0, noise_mode: str = "random",
                   noise_strength: float = 1.0) -> Tensor:
        """ws [B, w_dim] or [B, n >= num_ws_at(res), w_dim] -> [B, 1, res, res]."""
        ws = self.broadcast_ws(ws, res)
        x = self.blocks["4"](ws, noise_mode, noise_strength)
        img = self.to_image["4"](x, ws[:, 1])
        for i, r in enumerate(self.resolutions[1:self.resolutions.index(res) + 1]):
            x = self.blocks[str(r)](x, ws[:, 2 * i + 1:2 * i + 3], noise_mode, noise_strength)
            out = self.to_image[str(r)](x, ws[:, 2 * i + 3])
            if r == res and is_fading(alpha):
                out = out * alpha
            img = bilinear_2x(img) + out
        return self.finish(img)


class ResidualBlock(nn.Module):
    """StyleGAN2's residual critic block: conv 3x3, lrelu, filtered-downsampling conv 3x3,
    lrelu, added to a shortcut (filtered downsampling, 1x1 conv), the sum scaled by 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = ConvDownFiltered(in_ch, out_ch)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.skip(fir_downsample_2x(x))
        return (lrelu(self.conv1(lrelu(self.conv0(x)))) + shortcut) * SKIP_GAIN


class ResidualDiscriminator(Discriminator):
    """StyleGAN2's residual critic, with v1's minibatch-std epilogue and class projection, and
    ProGAN's input-side fade-in when trained progressively."""

    block_type = ResidualBlock

    @staticmethod
    def downsample_image(img: Tensor) -> Tensor:
        return fir_downsample_2x(img)
