"""StyleGAN v1 (arXiv 1812.04948) on ProGAN's progressive growing (arXiv 1710.10196),
for single-channel images: the mapping network, the style-based generator and the
discriminator, each a list of the blocks in `layers.py`.

Both are built from a `NetworkSettings` (settings.py), not from the whole run config.
Progressive growing: both networks hold every resolution from 4 px to `settings.image_size`;
`res` and `alpha` choose how much of them runs. While a new resolution fades in
(alpha < 1), the generator blends the upsampled image of the previous resolution with the
new one, and the discriminator blends the two ways into its lower blocks.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainlib.config import CLASS_LABELS
from brainlib.networks.layers import (
    RELU_GAIN,
    AdaIN,
    Blur,
    ConvDown2d,
    EqualConv2d,
    EqualLinear,
    LowpassConvDown2d,
    LowpassUpConv2d,
    MinibatchStdDev,
    NoiseInjection,
    PixelNorm,
    UpConv2d,
    lanczos_band_limit,
    lowpass_resample_2x,
    lrelu,
)
from brainlib.networks.settings import NetworkSettings

NUM_CLASSES = len(CLASS_LABELS)  # NC = 0, AD = 1
W_AVG_BETA = 0.995  # StyleGAN v1's dlatent_avg_beta
# Bumped when the same weights would compute a different function; checkpoints record it.
# 3: G upsamples and blurs before its conv (as 1), D as 2;
# 2: StyleGAN v1's resampling order (upsample-conv then blur; blur then conv-downsample
#    before the activation); 1 (unrecorded): blur before G's convs, D pooled after its activation.
ARCHITECTURE = 3
BLACK = -1.0  # a black pixel in the model's range (data.py maps [0, 255] to [-1, 1])
# The high-pass of a real slice has 1/8 to 1/3 of the image's std from 64 px down to 8 px
# (phantom); x4 brings the high-pass head's input near the scale the main from_image sees.
HIGHPASS_GAIN = 4.0


def check_resolution(res: int, image_size: int) -> None:
    if not (isinstance(res, int) and 4 <= res <= image_size and res & (res - 1) == 0):
        raise ValueError(f"resolution {res!r} must be a power of two from 4 to image_size={image_size}")


def resolutions_up_to(image_size: int) -> list[int]:
    """4, 8, ..., image_size: every resolution the networks hold."""
    return [2**i for i in range(2, int(math.log2(image_size)) + 1)]


def fade_in(old: Tensor, new: Tensor, alpha: float | Tensor) -> Tensor:
    """(1 - alpha) * old + alpha * new: ProGAN's smooth introduction of a new resolution."""
    return (1 - alpha) * old + alpha * new


def is_fading(alpha: float | Tensor) -> bool:
    return torch.is_tensor(alpha) or alpha < 1.0  # a tensor alpha always blends: no host sync


def one_hot(label: Tensor, dtype: torch.dtype) -> Tensor:
    return F.one_hot(label.long(), NUM_CLASSES).to(dtype)


# ----------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z (and a class label) -> w: PixelNorm, then `num_layers` equalised dense layers, each
    followed by a ReLU, as StyleGAN v1's G_mapping.

    `lr_mul` is every layer's equalised-learning-rate multiplier: with Adam at learning rate
    `lr`, the network's effective learning rate is `lr * lr_mul` (StyleGAN v1: 0.01; the
    trainer's mapping group picks `lr`). Conditional models embed the one-hot label into z_dim
    with a dense layer, normalise it, and concatenate it with the normalised z.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, *, lr_mul: float = 0.01, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.norm = PixelNorm()
        self.embed = EqualLinear(num_classes, z_dim, bias=False, lr_mul=lr_mul) if num_classes else None
        in_dim = 2 * z_dim if num_classes else z_dim
        dims = [in_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, gain=RELU_GAIN, lr_mul=lr_mul) for a, b in itertools.pairwise(dims))

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        x = self.norm(z)
        if self.num_classes:
            if label is None:
                raise ValueError("this is a class-conditional model: pass label (NC=0, AD=1)")
            x = torch.cat([x, self.norm(self.embed(one_hot(label, z.dtype)))], dim=1)
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


# ----------------------------------------------------------------------------
# Synthesis network


class StyleEpilogue(nn.Module):
    """What follows every convolution in StyleGAN's synthesis network:
    add noise (unless `noise` is False), add bias, LeakyReLU, AdaIN with this layer's w."""

    def __init__(self, channels: int, w_dim: int, res: int, *, noise_seed: int, noise: bool = True):
        super().__init__()
        self.noise = NoiseInjection(channels, res, seed=noise_seed) if noise else None
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.adain = AdaIN(channels, w_dim)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        if self.noise is not None:
            x = self.noise(x, noise_mode, noise_strength)
        return self.adain(lrelu(x + self.bias.to(x.dtype)), w)


class StyledConv(nn.Module):
    """3x3 equalised conv (after 2x upsampling and the blur, when `upsample`; through the Kaiser
    low-pass instead, when also `lowpass`), then the style epilogue."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, *, upsample: bool, noise_seed: int,
                 noise: bool = True, lowpass: bool = False):
        super().__init__()
        if upsample and lowpass:
            self.conv = LowpassUpConv2d(in_ch, out_ch, 3, bias=False)
        elif upsample:
            self.conv = UpConv2d(in_ch, out_ch, bias=False)
        else:
            self.conv = EqualConv2d(in_ch, out_ch, 3, bias=False)
        self.epilogue = StyleEpilogue(out_ch, w_dim, res, noise_seed=noise_seed, noise=noise)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        return self.epilogue(self.conv(x), w, noise_mode, noise_strength)


class InputBlock(nn.Module):
    """The 4x4 block: a learned constant, epilogue, 3x3 conv, epilogue (two styles)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.epilogue = StyleEpilogue(channels, w_dim, 4, noise_seed=40)
        self.conv = StyledConv(channels, channels, w_dim, 4, upsample=False, noise_seed=41)

    def forward(self, x: Tensor | None, ws: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.epilogue(x, ws[:, 0], noise_mode, noise_strength)
        return self.conv(x, ws[:, 1], noise_mode, noise_strength)


class SynthesisBlock(nn.Module):
    """A block at 8 px and up: upsample + conv, then conv, each with noise and AdaIN (two styles)."""

    conv_type: type[nn.Module] = StyledConv

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, *, noise: bool = True, lowpass: bool = False):
        super().__init__()
        up = {"lowpass": True} if lowpass else {}  # only stylegan1's StyledConv has it (config.validate)
        self.conv0 = self.conv_type(in_ch, out_ch, w_dim, res, upsample=True, noise_seed=10 * res, noise=noise, **up)
        self.conv1 = self.conv_type(out_ch, out_ch, w_dim, res, upsample=False, noise_seed=10 * res + 1, noise=noise)

    def forward(self, x: Tensor, ws: Tensor, noise_mode: str = "random", noise_strength: float = 1.0) -> Tensor:
        x = self.conv0(x, ws[:, 0], noise_mode, noise_strength)
        return self.conv1(x, ws[:, 1], noise_mode, noise_strength)


def image_planes(settings: NetworkSettings) -> int:
    """Channels of the to-image layers: grey, plus a mask logit when composing on black."""
    return 2 if settings.composite else 1


def has_noise(settings: NetworkSettings, res: int) -> bool:
    """Whether the synthesis layers at `res` take noise inputs (`noise_max_res`)."""
    return settings.noise_max_res is None or res <= settings.noise_max_res


def has_lowpass(settings: NetworkSettings, res: int) -> bool:
    """Whether resampling into and out of `res` uses the Kaiser low-pass (`lowpass_from`)."""
    return settings.lowpass_from is not None and res >= settings.lowpass_from


def composite_on_black(planes: Tensor) -> Tensor:
    """[B, 2, H, W] (tissue, mask logit) -> [B, 1, H, W]: black + sigmoid(mask) * (tissue - black).

    MRI slices lie on a black background (air, or skull stripping). A linear output can only
    approach it as grey noise, which no real slice has; through the mask the generator draws
    its tissue where the mask is on and exact black where it is off.
    """
    tissue, logit = planes[:, :1], planes[:, 1:]
    return BLACK + torch.sigmoid(logit) * (tissue - BLACK)


class ToImage(nn.Module):
    """Features -> grey (and a mask logit; `image_planes`): a 1x1 equalised conv, linear (gain 1)."""

    def __init__(self, channels: int, planes: int = 1):
        super().__init__()
        self.conv = EqualConv2d(channels, planes, 1, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class StyleGenerator(nn.Module):
    """What every style-based generator here shares: the mapping network, the tracked mean w
    (overall and per class) for truncation, and style mixing. Subclasses build the synthesis
    network in `blocks` / `to_image` (ModuleDicts keyed by resolution) and define `synthesize`."""

    def __init__(self, settings: NetworkSettings):
        super().__init__()
        self.settings = settings
        self.image_size = settings.image_size
        self.z_dim, self.w_dim = settings.z_dim, settings.w_dim
        self.conditional = settings.conditional
        self.resolutions = resolutions_up_to(settings.image_size)
        num_classes = NUM_CLASSES if settings.conditional else 0
        self.mapping = MappingNetwork(settings.z_dim, settings.w_dim, settings.mapping_layers,
                                      lr_mul=settings.mapping_lr_mul, num_classes=num_classes)
        self.register_buffer("w_avg", torch.zeros(settings.w_dim))
        # Per-class means, so a conditional model truncates towards its class, not between them.
        self.register_buffer("w_avg_class", torch.zeros(num_classes, settings.w_dim))
        self.num_ws = self.num_ws_at(settings.image_size)

    def synthesize(self, ws: Tensor, *, res: int, alpha: float | Tensor = 1.0, noise_mode: str = "random",
                   noise_strength: float = 1.0) -> Tensor:
        raise NotImplementedError

    def finish(self, planes: Tensor) -> Tensor:
        """The to-image planes -> the image: composed on black when `settings.composite`."""
        return composite_on_black(planes) if self.settings.composite else planes

    def broadcast_ws(self, ws: Tensor, res: int) -> Tensor:
        """ws [B, w_dim] (one w for every layer) or [B, n >= num_ws_at(res), w_dim] -> [B, n, w_dim]."""
        n = self.num_ws_at(res)
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, n, -1)
        if ws.ndim != 3 or ws.shape[1] < n or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [B, {self.w_dim}] or [B, {n}, {self.w_dim}] at {res} px, "
                             f"got {list(ws.shape)}")
        return ws

    def num_ws_at(self, res: int) -> int:
        """Style inputs used at `res`: two per block from 4 px up."""
        check_resolution(res, self.image_size)
        return 2 * (int(math.log2(res)) - 1)

    @torch.no_grad()
    def update_w_avg(self, w: Tensor, label: Tensor | None = None) -> None:
        """w_avg <- beta * w_avg + (1 - beta) * mean(w), and per class when conditional."""
        w = w.detach().float()
        self.w_avg.copy_(w.mean(0).lerp(self.w_avg, W_AVG_BETA))
        if self.conditional and label is not None:
            sums = torch.zeros_like(self.w_avg_class).index_add_(0, label.long(), w)
            counts = torch.bincount(label.long(), minlength=NUM_CLASSES).unsqueeze(1)
            means = sums / counts.clamp(min=1)
            updated = means.lerp(self.w_avg_class, W_AVG_BETA)
            self.w_avg_class.copy_(torch.where(counts > 0, updated, self.w_avg_class))

    def map(self, z: Tensor, label: Tensor | None = None, *, psi: float = 1.0,
            update_w_avg: bool = False) -> Tensor:
        """z [B, z_dim] -> w [B, w_dim], truncated towards the mean w by `psi` (1 = none).
        Unconditional models ignore `label`."""
        label = label if self.conditional else None
        w = self.mapping(z, label)
        if update_w_avg:
            self.update_w_avg(w, label)
        if psi != 1.0:
            center = self.w_avg_class[label.long()] if label is not None else self.w_avg
            w = center + psi * (w - center)
        return w

    def forward(self, z: Tensor, label: Tensor | None = None, *, res: int, alpha: float | Tensor = 1.0,
                psi: float = 1.0, mix_z: Tensor | None = None, mix_layer: int | None = None,
                noise_mode: str = "random", noise_strength: float = 1.0,
                update_w_avg: bool | None = None) -> Tensor:
        """z [B, z_dim] -> images [B, 1, res, res].

        Style mixing: with `mix_z`, styles from index `mix_layer` on come from mix_z's w
        (`mix_layer=None` picks a crossover uniformly in [1, num_ws_at(res))).
        `update_w_avg=None` tracks w_avg whenever the module is in training mode, as
        StyleGAN v1 does, so the trainer need not remember to.
        """
        track = self.training if update_w_avg is None else update_w_avg
        w = self.map(z, label, psi=psi, update_w_avg=track)
        n = self.num_ws_at(res)
        if mix_z is None:
            return self.synthesize(w, res=res, alpha=alpha, noise_mode=noise_mode, noise_strength=noise_strength)
        w2 = self.map(mix_z, label, psi=psi, update_w_avg=False)
        if mix_layer is None:
            mix_layer = int(torch.randint(1, n, ())) if n > 1 else n  # CPU random: no device sync
        second = (torch.arange(n, device=w.device) >= mix_layer).reshape(1, n, 1)
        ws = torch.where(second, w2.unsqueeze(1), w.unsqueeze(1))
        return self.synthesize(ws, res=res, alpha=alpha, noise_mode=noise_mode, noise_strength=noise_strength)


class Generator(StyleGenerator):
    """StyleGAN v1 generator with ProGAN fade-in, one image channel.

    Each block's first convolution runs on the 2x upsampled map, blurred with StyleGAN's
    [1,2,1] binomial filter (layers.UpConv2d). The images a fade-in blends are upsampled by
    nearest neighbour, as in ProGAN. With `lowpass_from`, both upsample through the Kaiser
    low-pass (layers.kaiser_lowpass) into the resolutions from there up. With `output_lowpass`
    the full-size image passes through the loader's Lanczos response (layers.lanczos_band_limit),
    so it holds no more power near Nyquist than a resized slice can.
    Outputs are linear (no tanh): the data lives in [-1, 1] and samplers clamp.
    """

    def __init__(self, settings: NetworkSettings):
        super().__init__(settings)
        ch, w_dim = settings.channels, settings.w_dim
        self.blocks = nn.ModuleDict({"4": InputBlock(ch[4], w_dim)})
        planes = image_planes(settings)
        self.to_image = nn.ModuleDict({"4": ToImage(ch[4], planes)})
        for res in self.resolutions[1:]:
            noise = has_noise(settings, res)
            self.blocks[str(res)] = SynthesisBlock(ch[res // 2], ch[res], w_dim, res, noise=noise,
                                                   lowpass=has_lowpass(settings, res))
            self.to_image[str(res)] = ToImage(ch[res], planes)

    def synthesize(self, ws: Tensor, *, res: int, alpha: float | Tensor = 1.0, noise_mode: str = "random",
                   noise_strength: float = 1.0) -> Tensor:
        """ws [B, w_dim] (one w for every layer) or [B, n >= num_ws_at(res), w_dim] -> [B, 1, res, res]."""
        ws = self.broadcast_ws(ws, res)
        x = previous = None
        for i, r in enumerate(resolutions_up_to(res)):
            previous = x
            x = self.blocks[str(r)](x, ws[:, 2 * i:2 * i + 2], noise_mode, noise_strength)
        img = self.to_image[str(res)](x)
        if res > 4 and is_fading(alpha):
            old = self.to_image[str(res // 2)](previous)
            if has_lowpass(self.settings, res):
                old = lowpass_resample_2x(old, up=True)
            else:
                old = F.interpolate(old, scale_factor=2, mode="nearest")
            img = fade_in(old, img, alpha)
        img = self.finish(img)
        return lanczos_band_limit(img) if self.settings.output_lowpass and res == self.image_size else img


# ----------------------------------------------------------------------------
# Discriminator


class FromImage(nn.Module):
    """One grey channel (or `in_channels`) -> features: a 1x1 equalised conv and LeakyReLU."""

    def __init__(self, channels: int, in_channels: int = 1):
        super().__init__()
        self.conv = EqualConv2d(in_channels, channels, 1)

    def forward(self, img: Tensor) -> Tensor:
        return lrelu(self.conv(img))


class DiscriminatorBlock(nn.Module):
    """StyleGAN v1's D block: conv 3x3, lrelu, blur, conv 3x3 with 2x average pooling (one
    fused strided convolution, layers.ConvDown2d), lrelu. ProGAN pools after the second
    activation instead; pooling before it lets the convolution run at the lower resolution."""

    def __init__(self, in_ch: int, out_ch: int, *, lowpass: bool = False):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        # with `lowpass`, the Kaiser low-pass halves the map and the conv runs below it
        self.blur = nn.Identity() if lowpass else Blur()
        self.conv1 = LowpassConvDown2d(in_ch, out_ch, 3) if lowpass else ConvDown2d(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return lrelu(self.conv1(self.blur(lrelu(self.conv0(x)))))


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 block: minibatch std, conv 3x3, lrelu, dense, lrelu, dense to one score.

    Conditional models add a projection term (Miyato & Koyama 2018): the dot product of a
    learned class embedding with the penultimate features.
    """

    def __init__(self, channels: int, mbstd_group: int, *, num_classes: int = 0):
        super().__init__()
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualConv2d(channels + 1, channels, 3)
        self.fc = EqualLinear(channels * 16, channels, gain=RELU_GAIN)
        self.out = EqualLinear(channels, 1, gain=1.0)
        self.embed = EqualLinear(num_classes, channels, bias=False, gain=1.0) if num_classes else None

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        x = lrelu(self.conv(self.mbstd(x)))
        h = lrelu(self.fc(x.flatten(1)))
        score = self.out(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(one_hot(label, h.dtype)) * h).sum(dim=1)
        return score


class HighpassHead(nn.Module):
    """A small second critic on the image's finest band: hp = x - blur(x) ([1, 2, 1] binomial
    low-pass, edges replicated, so flat borders and the black background give zero), taken in
    float32, scaled by HIGHPASS_GAIN, then a 1x1 conv (FromImage), one block of the critic's
    kind (two 3x3 convs with lrelu, the second downsampling), global average pooling and a
    dense layer to one score. No minibatch std and no class projection: the main epilogue has both.

    `unshuffle` folds each 2x2 block of hp into 4 channels first (pixel_unshuffle), so the head runs
    at half the resolution: the 1x1 conv sees every pixel of the band, the block's convs cost about
    a quarter as much."""

    def __init__(self, channels: int, block_type: type[nn.Module], *, unshuffle: bool = False):
        super().__init__()
        self.blur = Blur()
        self.unshuffle = unshuffle
        self.from_image = FromImage(channels, in_channels=4 if unshuffle else 1)
        self.block = block_type(channels, channels)
        self.out = EqualLinear(channels, 1, gain=1.0)

    def highpass(self, img: Tensor) -> Tensor:
        """The finest band in float32: under bf16 autocast the blur would round away much of it."""
        with torch.autocast(device_type=img.device.type, enabled=False):
            img = img.float()
            return (img - self.blur(img)) * HIGHPASS_GAIN

    def forward(self, img: Tensor) -> Tensor:
        hp = self.highpass(img)
        if self.unshuffle:
            hp = F.pixel_unshuffle(hp, 2)
        x = self.block(self.from_image(hp))
        return self.out(x.mean(dim=(2, 3))).squeeze(1)


class Discriminator(nn.Module):
    """ProGAN discriminator (critic) with fade-in on the input side; the resolution is the
    input's. Each block blurs before its downsampling convolution (StyleGAN's); the
    image a fade-in sends to the lower block is plainly average-pooled, as in ProGAN. With
    `lowpass_from`, both go through the Kaiser low-pass out of the resolutions from there up.
    Subclasses change the block and that downsampling (`block_type`, `downsample_image`)."""

    block_type: type[nn.Module] = DiscriminatorBlock

    @staticmethod
    def downsample_image(img: Tensor) -> Tensor:
        return F.avg_pool2d(img, 2)

    def __init__(self, settings: NetworkSettings):
        super().__init__()
        self.image_size = settings.image_size
        self.conditional = settings.conditional
        ch = settings.channels
        self.resolutions = resolutions_up_to(settings.image_size)
        self.from_image = nn.ModuleDict({str(r): FromImage(ch[r]) for r in self.resolutions})
        self.lowpass_resolutions = [r for r in self.resolutions if has_lowpass(settings, r)]
        self.blocks = nn.ModuleDict(
            {str(r): self.block_type(ch[r], ch[r // 2], **({"lowpass": True} if r in self.lowpass_resolutions else {}))
             for r in self.resolutions[1:]})
        self.epilogue = DiscriminatorEpilogue(ch[4], settings.mbstd_group,
                                              num_classes=NUM_CLASSES if settings.conditional else 0)
        # created last and only when asked for, so critics without it keep their parameters and seeds
        self.highpass_heads = None
        if settings.critic_highpass:
            self.highpass_heads = nn.ModuleDict(
                {str(r): HighpassHead(ch[r], self.block_type, unshuffle=settings.highpass_unshuffle)
                 for r in self.resolutions})

    def forward(self, img: Tensor, label: Tensor | None = None, *, alpha: float | Tensor = 1.0) -> Tensor:
        """img [B, 1, res, res] -> scores [B]. Unconditional models ignore `label`."""
        if img.ndim != 4 or img.shape[1] != 1 or img.shape[2] != img.shape[3]:
            raise ValueError(f"discriminator input must be [B, 1, res, res], got {list(img.shape)}")
        if self.conditional and label is None:
            raise ValueError("this is a class-conditional discriminator: pass label (NC=0, AD=1)")
        res = img.shape[-1]
        check_resolution(res, self.image_size)
        fading = res > 4 and is_fading(alpha)
        smaller = None
        if fading and res in self.lowpass_resolutions:
            smaller = lowpass_resample_2x(img, up=False)
        elif fading:
            smaller = self.downsample_image(img)
        x = self.from_image[str(res)](img)
        if res > 4:
            x = self.blocks[str(res)](x)
            if fading:
                x = fade_in(self.from_image[str(res // 2)](smaller), x, alpha)
        for r in reversed(resolutions_up_to(res // 2)[1:]):
            x = self.blocks[str(r)](x)
        score = self.epilogue(x, label if self.conditional else None)
        if self.highpass_heads is not None:
            score = score + self.highpass_score(img, smaller, alpha)
        return score

    def highpass_score(self, img: Tensor, smaller: Tensor | None, alpha: float | Tensor) -> Tensor:
        """The high-pass head's score at the input's resolution. While it fades in, the heads
        fade as the input side does: alpha = 0 is the previous resolution's head on the
        downsampled image, so the critic is the one the last step trained and the new head
        takes over as its detail appears."""
        score = self.highpass_heads[str(img.shape[-1])](img)
        if smaller is None:
            return score
        return fade_in(self.highpass_heads[str(smaller.shape[-1])](smaller), score, alpha)
