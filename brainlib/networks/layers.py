"""The building blocks of StyleGAN v1 (Karras et al. 2019, arXiv 1812.04948) on ProGAN
(Karras et al. 2018, arXiv 1710.10196): each block is a small module whose forward is the
paper's equation. `models.py` composes them.

Every block is device-agnostic and works under `torch.autocast`: weights are scaled at run
time (no in-place tricks), statistics are taken in float32, tensors are reshaped, never
`.view`ed, so channels_last inputs are fine, and nothing reads a value back to the host.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
RELU_GAIN = math.sqrt(2.0)  # He gain for (leaky) ReLU; ProGAN uses it for both


class EqualLinear(nn.Module):
    """Fully connected layer with the equalised learning rate of ProGAN (section 4.1).

    Weights are stored as N(0, 1/lr_mul^2) and multiplied at run time by
    `gain / sqrt(fan_in) * lr_mul`, so the effective weight has std `gain / sqrt(fan_in)`
    whatever `lr_mul` is, while Adam's steps on the stored weight move the effective weight
    `lr_mul` times slower: the mapping network's learning rate is `lr * lr_mul`.
    The bias is stored divided by `lr_mul` for the same reason.
    """

    def __init__(self, in_dim: int, out_dim: int, *, bias: bool = True, bias_init: float | Tensor = 0.0,
                 gain: float = 1.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        init = torch.as_tensor(bias_init, dtype=torch.float32).expand(out_dim) / lr_mul
        self.bias = nn.Parameter(init.clone()) if bias else None
        self.scale = gain / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """2D convolution with equalised learning rate: N(0, 1) weights scaled by gain/sqrt(fan_in)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, bias: bool = True, gain: float = RELU_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = gain / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel={k}"


class PixelNorm(nn.Module):
    """x / sqrt(mean over channels of x^2 + eps): every feature vector gets unit RMS."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class AdaIN(nn.Module):
    """Adaptive instance normalisation (StyleGAN eq. 1): y_s * (x - mu(x)) / sigma(x) + y_b.

    The style (y_s, y_b) is a learned affine map of w. Its bias starts at (1, 0), so at
    initialisation the expected style is the identity, as in StyleGAN's `x * (y_s + 1) + y_b`.
    """

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-8, *, fast: bool = True):
        super().__init__()
        bias_init = torch.cat([torch.ones(channels), torch.zeros(channels)])
        self.affine = EqualLinear(w_dim, 2 * channels, bias_init=bias_init, gain=1.0)
        self.eps = eps
        self.fast = fast  # False: torch's instance_norm, the plain twin

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.fast:
            centred, var = centred_and_variance(x.float(), dim=(2, 3))  # float32, also under autocast
            x = (centred * torch.rsqrt(var + self.eps)).to(x.dtype)
        else:
            x = F.instance_norm(x.float(), eps=self.eps).to(x.dtype)
        scale, bias = self.affine(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * scale + bias


NOISE_MODES = ("random", "const", "none")


class NoiseInjection(nn.Module):
    """Per-pixel Gaussian noise times a learned per-channel strength (StyleGAN section 3.2).

    The strength starts at zero, so an untrained layer is the identity. Noise modes:
    `random` draws fresh noise, `const` uses this layer's fixed buffer (drawn once from `seed`,
    so the same for every run and saved in checkpoints), `none` adds nothing. `strength`
    multiplies the learned strength (0 turns noise off smoothly, >1 exaggerates it).
    """

    def __init__(self, channels: int, res: int, *, seed: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("const_noise", torch.randn(1, 1, res, res, generator=gen))

    def forward(self, x: Tensor, mode: str = "random", strength: float | Tensor = 1.0) -> Tensor:
        if mode == "none":
            return x
        if mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        elif mode == "const":
            noise = self.const_noise.to(x.dtype)
        else:
            raise ValueError(f"noise mode {mode!r} is not one of {', '.join(NOISE_MODES)}")
        return x + (self.weight.to(x.dtype) * strength) * noise


class MinibatchStdDev(nn.Module):
    """ProGAN's minibatch standard deviation (section 3): one extra feature map holding the
    mean over features and pixels of the std of each feature across a group of samples.

    Groups are samples i, i + B/G, i + 2B/G, ... The group size is `min(group_size, B)`,
    reduced to a divisor of B when B is not a multiple of it.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8, *, fast: bool = True):
        super().__init__()
        self.group_size = group_size
        self.eps = eps
        self.fast = fast  # False: torch's var, the plain twin

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        if b % g:
            g = math.gcd(b, g)
        y = x.float().reshape(g, b // g, c, h, w)
        var = centred_and_variance(y, dim=0)[1].squeeze(0) if self.fast else y.var(dim=0, unbiased=False)
        std = (var + self.eps).sqrt()  # [B/G, C, H, W]
        std = std.mean(dim=(1, 2, 3)).to(x.dtype)               # [B/G]
        feature = std.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, feature], dim=1)


class Blur(nn.Module):
    """Low-pass filter with the separable binomial kernel [1, 2, 1], edges replicated
    (StyleGAN's: after each 2x upsampling and before each downsampling convolution)."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).reshape(1, 1, 3, 3), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(c, 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def sum_of_shifts(weight: Tensor) -> Tensor:
    """[O, I, 3, 3] -> [O, I, 4, 4]: the kernel summed over the four offsets of a 2x2 block.

    A 3x3 convolution then 2x2 average pooling is one 4x4 convolution with stride 2 whose
    kernel is this sum / 4; 2x nearest upsampling then a 3x3 convolution is one 4x4
    transposed convolution with stride 2 whose kernel is this sum, flipped."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


class ResamplingConv2d(EqualConv2d):
    """A 3x3 equalised convolution fused with 2x resampling; `fast=False` runs the two
    steps apart (the plain twin). Same weights either way."""

    def __init__(self, in_ch: int, out_ch: int, *, bias: bool = True, gain: float = RELU_GAIN,
                 fast: bool = True):
        super().__init__(in_ch, out_ch, 3, bias=bias, gain=gain)
        self.fast = fast


class ConvDown2d(ResamplingConv2d):
    """3x3 equalised convolution, then 2x2 average pooling (StyleGAN v1's conv2d_downscale2d).

    The fused path runs both as one 4x4 convolution with stride 2 (`sum_of_shifts`): a
    quarter of the output positions and 16/36 of the multiply-adds, 1.5-2.7x faster on the
    CPU (benchmarks/README.md)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.scale
        if self.fast:
            return F.conv2d(x, sum_of_shifts(weight) / 4, self.bias, stride=2, padding=1)
        return F.avg_pool2d(F.conv2d(x, weight, self.bias, padding=1), 2)


class UpConv2d(ResamplingConv2d):
    """2x upsampling, StyleGAN's [1, 2, 1] blur (edges replicated), then a 3x3 equalised
    convolution with zero padding: the blur before the convolution, so the padding meets a
    smooth map.

    Nearest upsampling followed by that blur is exactly bilinear interpolation
    (align_corners=False), which the fused path runs in one pass. On large maps with many
    channels it goes further (`_conv_then_blur_with_exact_border`): 1.1-1.9x faster there, slower
    on small maps (benchmarks/README.md). The plain twin runs the three steps apart."""

    RING_MIN_SIZE, RING_MIN_CHANNELS = 32, 64  # input sizes where the ring form pays (measured)

    def __init__(self, in_ch: int, out_ch: int, *, bias: bool = True, gain: float = RELU_GAIN,
                 fast: bool = True):
        super().__init__(in_ch, out_ch, bias=bias, gain=gain, fast=fast)
        self.blur = Blur()

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.scale
        if not self.fast:
            up = self.blur(F.interpolate(x, scale_factor=2, mode="nearest"))
        elif min(x.shape[-2:]) >= self.RING_MIN_SIZE and x.shape[1] >= self.RING_MIN_CHANNELS:
            return self._conv_then_blur_with_exact_border(x, weight)
        else:
            up = bilinear_2x(x)
        return F.conv2d(up, weight, self.bias, padding=1)

    def _conv_then_blur_with_exact_border(self, x: Tensor, weight: Tensor) -> Tensor:
        """The same function, cheaper: away from the border the conv and the blur commute, so
        the interior is nearest 2x + conv, as one 4x4 transposed conv on the small map
        (`sum_of_shifts`, 16/36 of the multiply-adds), then the blur. Within 2 px of the border
        the orders differ (the blur replicates edges, the conv pads zeros), so that ring is
        convolved directly on the bilinear map of the input's outer 3 rows and columns."""
        kernel = sum_of_shifts(weight).flip(2, 3).transpose(0, 1)  # conv_transpose2d takes [in, out, kh, kw]
        b = self.bias  # the blur keeps constants, so the bias can go in before it
        inner = self.blur(F.conv_transpose2d(x, kernel, b, stride=2, padding=1))[:, :, 2:-2, 2:-2]
        top = F.conv2d(F.pad(bilinear_2x(x[:, :, :3])[:, :, :3], (1, 1, 1, 0)), weight, b)
        bottom = F.conv2d(F.pad(bilinear_2x(x[:, :, -3:])[:, :, -3:], (1, 1, 0, 1)), weight, b)
        left = F.conv2d(F.pad(bilinear_2x(x[:, :, :, :3])[:, :, :, :3], (1, 0, 1, 1)), weight, b)
        right = F.conv2d(F.pad(bilinear_2x(x[:, :, :, -3:])[:, :, :, -3:], (0, 1, 1, 1)), weight, b)
        middle = torch.cat([left[:, :, 2:-2], inner, right[:, :, 2:-2]], dim=3)
        return torch.cat([top, middle, bottom], dim=2)


def bilinear_2x(x: Tensor) -> Tensor:
    """2x bilinear upsampling = nearest 2x then the [1, 2, 1] blur with edges replicated."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def centred_and_variance(x: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(x - mean, biased variance) over `dim`, kept. The two-pass formula, written out because
    torch's `var` is ~25x slower than two means on the CPU at these sizes (benchmarks/README.md)."""
    centred = x - x.mean(dim=dim, keepdim=True)
    return centred, centred.square().mean(dim=dim, keepdim=True)


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


# ----------------------------------------------------------------------------
# StyleGAN2 (Karras et al. 2020, arXiv 1912.04958): modulation and demodulation instead of
# AdaIN, and resampling low-pass filtered with the [1, 3, 3, 1] binomial kernel.

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution (section 2.2): the style s = affine(w) scales the weight's input
    channels, and demodulation rescales each output channel to unit expected std:
    w'_ijk = s_i w_ijk, w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps).

    The fast path never builds per-sample weights: it scales the input by s, runs one shared
    convolution and scales the output by the demodulation coefficients, which is the same
    function because both scalings are per channel. `fast=False` is the plain twin with
    per-sample weights in a grouped convolution. `upsample` first doubles the map with the
    [1, 3, 3, 1] filter (bilinear_2x). The affine's bias starts at 1, so the initial style is
    the identity."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, *, demodulate: bool = True,
                 upsample: bool = False, fast: bool = True, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2
        self.demodulate, self.upsample, self.fast, self.eps = demodulate, upsample, fast, eps

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.upsample:
            x = bilinear_2x(x)
        styles = self.affine(w).float()  # [B, in]
        weight = self.weight * self.scale
        if not self.fast:
            return self._grouped(x, weight, styles)
        x = x * styles.to(x.dtype).reshape(*styles.shape, 1, 1)
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            x = x * self.demodulation(weight, styles).to(x.dtype).reshape(x.shape[0], -1, 1, 1)
        return x

    def demodulation(self, weight: Tensor, styles: Tensor) -> Tensor:
        """[B, out]: 1 / ||w'|| per sample and output channel, in float32."""
        squared = weight.float().square().sum(dim=(2, 3))  # [out, in]
        return torch.rsqrt(styles.square() @ squared.T + self.eps)

    def _grouped(self, x: Tensor, weight: Tensor, styles: Tensor) -> Tensor:
        b, (o, i, k, _) = x.shape[0], weight.shape
        w = weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1)  # [B, out, in, k, k]
        if self.demodulate:
            w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + self.eps)
        out = F.conv2d(x.reshape(1, b * i, *x.shape[2:]), w.reshape(b * o, i, k, k).to(x.dtype),
                       padding=self.padding, groups=b)
        return out.reshape(b, o, *out.shape[2:])

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel={k}, demodulate={self.demodulate}, upsample={self.upsample}"


def fir_downsample_2x(x: Tensor) -> Tensor:
    """Halve the map after low-pass filtering with the separable [1, 3, 3, 1] / 8 kernel, edges
    replicated: StyleGAN2's filtered downsampling. Written as strided slices, one axis at a
    time: on the CPU a depthwise convolution is 3-5x slower in bf16 (tests compare the two)."""
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    a, b, c, d = FIR_TAPS
    x = (a * x[..., 0:-3:2, :] + b * x[..., 1:-2:2, :] + c * x[..., 2:-1:2, :] + d * x[..., 3::2, :]) / 8
    return (a * x[..., 0:-3:2] + b * x[..., 1:-2:2] + c * x[..., 2:-1:2] + d * x[..., 3::2]) / 8


class ConvDownFiltered(EqualConv2d):
    """StyleGAN2's downsampling convolution: [1, 3, 3, 1] filtered 2x downsampling, then a 3x3
    equalised convolution at the lower resolution."""

    def __init__(self, in_ch: int, out_ch: int, *, bias: bool = True, gain: float = RELU_GAIN):
        super().__init__(in_ch, out_ch, 3, bias=bias, gain=gain)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(fir_downsample_2x(x))


# ----------------------------------------------------------------------------
# Low-pass resampling (the `lowpass_from` design): a longer FIR than [1, 2, 1] / [1, 3, 3, 1]


def kaiser_lowpass(taps: int = 12, cutoff: float = 0.22, beta: float = 3.0) -> tuple[float, ...]:
    """A Kaiser-windowed sinc summing to 1, `cutoff` in cycles per pixel of the finer grid (the
    coarser grid's Nyquist is 0.25). The default keeps 93% of the signal at 0.15 and 4% at 0.3,
    where bilinear keeps 71% and 20%: a sharper cut between the coarse map's own frequencies and
    the images of them that 2x resampling leaves above 0.25. Plain floats: no device tensor to read."""
    if taps % 4:
        raise ValueError(f"taps={taps} must be a multiple of 4 (the polyphase split below)")
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * n) * np.kaiser(taps, beta)
    return tuple(float(v) for v in h / h.sum())


KAISER_TAPS = kaiser_lowpass()


def lanczos_response_taps(taps: int = 7) -> tuple[float, ...]:
    """A symmetric FIR at the image's own rate whose response fits, by least squares over 0 to
    0.5 cycles per pixel, that of the Lanczos-3 downsampling every slice passes through in the
    loader (data.slices.resize_slice): flat to 0.3, 0.78 at 0.4, 0.6 at Nyquist. Summing to 1."""
    x = np.linspace(-3, 3, 6001)
    kernel = np.sinc(x) * np.sinc(x / 3)
    f = np.linspace(0, 0.5, 51)
    response = np.cos(2 * np.pi * f[:, None] * x[None]) @ kernel
    response /= response[0]
    half = taps // 2
    basis = np.stack([np.ones_like(f)] + [2 * np.cos(2 * np.pi * f * k) for k in range(1, half + 1)], 1)
    weight = np.where(f == 0, 100.0, 1.0)[:, None]  # DC held at 1
    c = np.linalg.lstsq(basis * weight, response * weight[:, 0], rcond=None)[0]
    h = np.concatenate([c[:0:-1], c])
    return tuple(float(v) for v in h / h.sum())


LANCZOS_RESPONSE_TAPS = lanczos_response_taps()


def _upsample_last_axis(x: Tensor, taps: tuple[float, ...]) -> Tensor:
    """Zero insertion then `taps` at gain 2 along the last axis (edges replicated), as its two
    polyphase sums of shifted slices."""
    half, pad = len(taps) // 2, len(taps) // 4
    n = x.shape[-1]
    x = F.pad(x, (pad, pad), mode="replicate")
    first = pad + half // 2 - 1  # the slice the last even-phase tap reads
    even = sum(2 * taps[2 * m + 1] * x[..., first - m:first - m + n] for m in range(half))
    odd = sum(2 * taps[2 * m] * x[..., first + 1 - m:first + 1 - m + n] for m in range(half))
    return torch.stack([even, odd], dim=-1).flatten(-2)


def _downsample_last_axis(x: Tensor, taps: tuple[float, ...]) -> Tensor:
    """`taps` then every second sample along the last axis (edges replicated)."""
    pad, n = len(taps) // 2 - 1, x.shape[-1] // 2
    x = F.pad(x, (pad, pad), mode="replicate")
    return sum(t * x[..., j:j + 2 * n:2] for j, t in enumerate(taps))


def _filter_last_axis(x: Tensor, taps: tuple[float, ...]) -> Tensor:
    """`taps` (odd length) along the last axis at the same rate, edges replicated."""
    pad, n = len(taps) // 2, x.shape[-1]
    x = F.pad(x, (pad, pad), mode="replicate")
    return sum(t * x[..., j:j + n] for j, t in enumerate(taps))


AXIS_FILTERS = {"up": (_upsample_last_axis, KAISER_TAPS), "down": (_downsample_last_axis, KAISER_TAPS),
                "lanczos": (_filter_last_axis, LANCZOS_RESPONSE_TAPS)}


@functools.lru_cache(maxsize=64)
def axis_matrix(n: int, kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """An axis filter above (AXIS_FILTERS) as a matrix M ([n, 2n] up, [n, n / 2] down, [n, n]
    lanczos; y = x @ M), built once by filtering the identity: two small matrix products per map
    run far faster than a dozen shifted slices or a depthwise convolution, on the CPU and on GPUs."""
    apply, taps = AXIS_FILTERS[kind]
    return apply(torch.eye(n, dtype=torch.float64).unsqueeze(0), taps)[0].to(device=device, dtype=dtype)


def filter_2d(x: Tensor, kind: str) -> Tensor:
    """The axis filter `kind` along both axes of x [..., H, W]."""
    rows = axis_matrix(x.shape[-2], kind, x.device, x.dtype)
    cols = rows if x.shape[-1] == x.shape[-2] else axis_matrix(x.shape[-1], kind, x.device, x.dtype)
    return rows.transpose(0, 1) @ (x @ cols)


def lowpass_resample_2x(x: Tensor, up: bool) -> Tensor:
    """2x up- or downsampling through the Kaiser low-pass on both axes, edges replicated, pixel
    centres as bilinear's and average pooling's: up, zero insertion then the taps at gain 2 per
    axis; down, the taps then every second pixel."""
    return filter_2d(x, "up" if up else "down")


def lanczos_band_limit(x: Tensor) -> Tensor:
    """x through the loader's Lanczos response at its own size (LANCZOS_RESPONSE_TAPS), edges replicated."""
    return filter_2d(x, "lanczos")


class LowpassUpConv2d(EqualConv2d):
    """2x upsampling through the Kaiser low-pass, then a 3x3 equalised convolution."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(lowpass_resample_2x(x, up=True))


class LowpassConvDown2d(EqualConv2d):
    """Kaiser low-pass 2x downsampling, then a 3x3 equalised convolution at the lower resolution."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(lowpass_resample_2x(x, up=False))
