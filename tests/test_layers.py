"""The StyleGAN building blocks against hand computations."""
import math

import pytest
import torch
import torch.nn.functional as F

from brainlib.networks.layers import (
    RELU_GAIN,
    AdaIN,
    Blur,
    ConvDown2d,
    EqualConv2d,
    EqualLinear,
    MinibatchStdDev,
    NoiseInjection,
    PixelNorm,
    UpConv2d,
    sum_of_shifts,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
@pytest.mark.parametrize("gain", [1.0, RELU_GAIN])
def test_equal_linear_effective_weight_std_is_gain_over_sqrt_fan_in(lr_mul, gain):
    layer = EqualLinear(512, 256, gain=gain, lr_mul=lr_mul)
    effective = layer.weight * layer.scale
    assert effective.std().item() == pytest.approx(gain / math.sqrt(512), rel=0.02)
    assert layer.weight.std().item() == pytest.approx(1 / lr_mul, rel=0.02)  # stored weight N(0, 1/lr_mul^2)


def test_equal_linear_keeps_unit_variance_and_matches_f_linear():
    layer = EqualLinear(400, 300, bias_init=0.5, lr_mul=0.1)
    x = torch.randn(2000, 400)
    y = layer(x)
    assert (y - 0.5).std().item() == pytest.approx(1.0, rel=0.05)
    assert y.mean().item() == pytest.approx(0.5, abs=0.05)  # runtime bias = stored bias * lr_mul
    assert layer.bias[0].item() == pytest.approx(5.0)
    expected = x @ (layer.weight * 0.1 / math.sqrt(400)).T + 0.5
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


def test_lr_mul_scales_the_adam_step_of_the_effective_weight():
    """One Adam step of size lr moves each stored weight by ~lr, hence the effective weight
    by lr * lr_mul / sqrt(fan_in): the mapping network learns lr_mul times slower."""
    for lr_mul in (1.0, 0.01):
        layer = EqualLinear(64, 8, lr_mul=lr_mul).double()
        before = layer.weight * layer.scale
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        layer(torch.randn(16, 64, dtype=torch.float64)).square().sum().backward()
        opt.step()
        step = ((layer.weight * layer.scale) - before).abs()
        torch.testing.assert_close(step, torch.full_like(step, 1e-3 * lr_mul / 8), rtol=1e-3, atol=0)


def test_equal_conv_output_has_unit_std_and_keeps_size():
    conv = EqualConv2d(32, 16, 3, gain=1.0)
    x = torch.randn(64, 32, 12, 12)
    y = conv(x)
    assert y.shape == (64, 16, 12, 12)
    inner = y[:, :, 1:-1, 1:-1]  # borders see zero padding
    assert inner.std().item() == pytest.approx(1.0, rel=0.05)
    assert (conv.weight * conv.scale).std().item() == pytest.approx(1 / math.sqrt(32 * 9), rel=0.05)


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(5, 7, 3, 3) * 4 + 1
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(5, 3, 3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y / y.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True))


def test_adain_matches_hand_computation_and_starts_near_identity_style():
    adain = AdaIN(channels=3, w_dim=4)
    x, w = torch.randn(2, 3, 5, 5) * 3 + 2, torch.randn(2, 4)
    style = w @ (adain.affine.weight * adain.affine.scale).T + adain.affine.bias
    scale, bias = style[:, :3, None, None], style[:, 3:, None, None]
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = ((x - mu) ** 2).mean(dim=(2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(adain(x, w), scale * (x - mu) / sigma + bias, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(adain.affine.bias, torch.tensor([1.0, 1, 1, 0, 0, 0]))
    torch.testing.assert_close(adain(x, torch.zeros(2, 4)), (x - mu) / sigma, rtol=1e-4, atol=1e-4)


def test_noise_injection_is_identity_at_init_and_modes_behave():
    layer = NoiseInjection(4, 8, seed=3)
    x = torch.randn(2, 4, 8, 8)
    for mode in ("random", "const", "none"):
        torch.testing.assert_close(layer(x, mode), x, rtol=0, atol=0)
    with torch.no_grad():
        layer.weight.fill_(0.5)
    a, b = layer(x, "random"), layer(x, "random")
    assert not torch.equal(a, b)
    torch.testing.assert_close(layer(x, "const"), layer(x, "const"), rtol=0, atol=0)
    torch.testing.assert_close(layer(x, "const") - x, 0.5 * layer.const_noise.expand(2, 4, 8, 8))
    torch.testing.assert_close(layer(x, "const", strength=2.0) - x, 2 * (layer(x, "const") - x))
    assert torch.equal(layer(x, "none"), x)
    # The same seed gives the same constant noise in a freshly built layer.
    assert torch.equal(NoiseInjection(4, 8, seed=3).const_noise, layer.const_noise)
    assert not torch.equal(NoiseInjection(4, 8, seed=4).const_noise, layer.const_noise)
    with pytest.raises(ValueError, match="noise mode 'fixed'"):
        layer(x, "fixed")


@pytest.mark.parametrize("batch, group, used", [(8, 4, 4), (6, 4, 2), (3, 4, 3), (5, 2, 1)])
def test_minibatch_stddev_adds_the_hand_computed_channel(batch, group, used):
    x = torch.randn(batch, 3, 4, 4)
    y = MinibatchStdDev(group)(x)
    assert y.shape == (batch, 4, 4, 4)
    torch.testing.assert_close(y[:, :3], x)
    m = batch // used
    for i in range(batch):
        members = x[i % m::m]  # groups are i, i + B/G, i + 2B/G, ...
        assert members.shape[0] == used
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[i, 3], expected.expand(4, 4))


def test_blur_preserves_constants_and_resampling_sizes():
    x = torch.full((1, 2, 6, 6), 3.0)
    torch.testing.assert_close(Blur()(x), x)
    img = torch.randn(2, 3, 8, 8)
    assert UpConv2d(3, 5)(img).shape == (2, 5, 16, 16)
    assert ConvDown2d(3, 5)(img).shape == (2, 5, 4, 4)


def test_resampling_convolutions_against_a_hand_computed_pixel():
    """One output pixel of each, summed by hand from the definition (conv 3x3 with zero
    padding, then 2x2 average; nearest 2x upsampling, [1, 2, 1] blur with edges replicated,
    then conv 3x3 with zero padding)."""
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    down, up = ConvDown2d(2, 1, bias=False).double(), UpConv2d(2, 1, bias=False).double()
    w = down.weight[0].detach() * down.scale
    padded = F.pad(x[0], (1, 1, 1, 1))

    def conv(r: int, c: int) -> torch.Tensor:  # full-resolution output at (r, c)
        return (padded[:, r:r + 3, c:c + 3] * w).sum()

    expected = sum(conv(r, c) for r in (2, 3) for c in (0, 1)) / 4  # pooled pixel (1, 0)
    torch.testing.assert_close(down(x)[0, 0, 1, 0], expected)
    w = up.weight[0].detach() * up.scale
    nearest = x[0].repeat_interleave(2, 1).repeat_interleave(2, 2)  # [2, 12, 12]
    edged = torch.cat([nearest[:, :1], nearest, nearest[:, -1:]], 1)
    edged = torch.cat([edged[:, :, :1], edged, edged[:, :, -1:]], 2)  # [2, 14, 14], edges replicated
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64) / 4
    blurred = torch.zeros(2, 12, 12, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            blurred += taps[i] * taps[j] * edged[:, i:i + 12, j:j + 12]
    blurred = F.pad(blurred, (1, 1, 1, 1))
    for r, c in [(0, 0), (5, 8), (11, 11)]:  # corners and an odd/even interior pixel
        torch.testing.assert_close(up(x)[0, 0, r, c], (blurred[:, r:r + 3, c:c + 3] * w).sum())
    # the fused kernel: every 3x3 tap lands on four 4x4 positions, so the sums match
    k = torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(sum_of_shifts(k).sum(dim=(2, 3)), 4 * k.sum(dim=(2, 3)))


def test_layers_run_under_bf16_autocast_on_channels_last():
    x = torch.randn(4, 8, 8, 8).to(memory_format=torch.channels_last)
    w = torch.randn(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = EqualConv2d(8, 8, 3)(x)
        y = NoiseInjection(8, 8)(y, "random")
        y = AdaIN(8, 6)(y, w)
        y = MinibatchStdDev(2)(y)
        y = ConvDown2d(9, 9)(UpConv2d(9, 9)(y))
    assert y.shape == (4, 9, 8, 8) and torch.isfinite(y.float()).all()
