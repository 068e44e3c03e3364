"""StyleGAN2's layers against plain computations, its networks' structure, the relativistic
loss on a critic with a known answer, and a StyleGAN2 run through the trainer, resume and
generation."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainlib.config import preset
from brainlib.data.dataset import SliceDataset
from brainlib.networks.build import build_discriminator, build_generator
from brainlib.networks.layers import FIR_TAPS, ModulatedConv2d, bilinear_2x, fir_downsample_2x, lrelu
from brainlib.networks.losses import RelativisticR1R2, make_loss, r1_penalty
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import image_planes
from brainlib.networks.stylegan2 import ResidualBlock, ResidualDiscriminator, SkipGenerator
from brainlib.synthesis.sampling import load, sample_images
from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint
from brainlib.training.trainer import train


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(**overrides):
    return preset("smoke", arch="stylegan2", **overrides)


# ----------------------------------------------------------------------
# layers


def per_sample_modulated_conv(x, weight, styles, demodulate, padding):
    """The paper's equations, one sample at a time: w' = s * w, w'' = w' / ||w'||."""
    out = []
    for xi, si in zip(x, styles, strict=True):
        w = weight * si.reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        out.append(F.conv2d(xi[None], w, padding=padding))
    return torch.cat(out)


@pytest.mark.parametrize("kernel,demodulate,upsample", [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv_matches_per_sample_weights_and_its_grouped_twin(kernel, demodulate, upsample):
    layer = ModulatedConv2d(6, 5, kernel, 8, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        layer.affine.bias.normal_()  # styles far from 1, so modulation matters
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 8)
    styles = layer.affine(w)
    x_in = bilinear_2x(x) if upsample else x
    expected = per_sample_modulated_conv(x_in, layer.weight * layer.scale, styles, demodulate, kernel // 2)
    torch.testing.assert_close(layer(x, w), expected, rtol=1e-4, atol=1e-5)
    layer.fast = False
    torch.testing.assert_close(layer(x, w), expected, rtol=1e-4, atol=1e-5)
    assert layer(x, w).shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)


def test_demodulation_gives_unit_output_std_whatever_the_style_scale():
    layer = ModulatedConv2d(64, 32, 3, 16)
    x = torch.randn(8, 64, 16, 16)
    for scale in (0.1, 1.0, 10.0):
        with torch.no_grad():
            layer.affine.bias.fill_(scale)
            layer.affine.weight.zero_()
        inner = layer(x, torch.randn(8, 16))[:, :, 1:-1, 1:-1]
        assert inner.std().item() == pytest.approx(1.0, rel=0.05)


def test_modulated_conv_under_bf16_autocast_is_close_to_float32():
    layer = ModulatedConv2d(16, 8, 3, 8, upsample=True)
    x, w = torch.randn(4, 16, 8, 8), torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x.to(memory_format=torch.channels_last), w)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), layer(x, w), rtol=0.05, atol=0.05)


def test_fir_downsample_is_the_binomial_filter_then_every_second_pixel():
    x = torch.randn(2, 3, 16, 16)
    k = torch.tensor(FIR_TAPS)
    kernel = (torch.outer(k, k) / 64).expand(3, 1, 4, 4)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, groups=3)
    torch.testing.assert_close(fir_downsample_2x(x), expected)
    torch.testing.assert_close(fir_downsample_2x(torch.full((1, 1, 8, 8), 0.7)), torch.full((1, 1, 4, 4), 0.7))
    # the filter removes the highest frequency that plain subsampling would alias to a constant
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1
    assert fir_downsample_2x(checker.reshape(1, 1, 8, 8))[..., 1:-1, 1:-1].abs().max() < 1e-6


def test_residual_block_is_the_scaled_sum_of_its_two_paths():
    block = ResidualBlock(4, 6)
    x = torch.randn(2, 4, 8, 8)
    main = lrelu(block.conv1(lrelu(block.conv0(x))))
    shortcut = F.conv2d(fir_downsample_2x(x), block.skip.weight * block.skip.scale)
    torch.testing.assert_close(block(x), (main + shortcut) / math.sqrt(2))
    assert block(x).shape == (2, 6, 4, 4)


# ----------------------------------------------------------------------
# networks


def test_skip_generator_sums_the_upsampled_image_of_every_resolution():
    cfg = network_settings(tiny(class_name="both"))
    G = build_generator(cfg).eval()
    assert isinstance(G, SkipGenerator) and isinstance(build_discriminator(cfg), ResidualDiscriminator)
    z, label = torch.randn(3, cfg.z_dim), torch.tensor([0, 1, 1])
    ws = G.map(z, label).unsqueeze(1).expand(-1, G.num_ws, -1)
    x = G.blocks["4"](ws, "const")
    img = G.to_image["4"](x, ws[:, 1])
    for i, r in enumerate((8, 16)):
        x = G.blocks[str(r)](x, ws[:, 2 * i + 1:2 * i + 3], "const")
        img = bilinear_2x(img) + G.to_image[str(r)](x, ws[:, 2 * i + 3])
    torch.testing.assert_close(G(z, label, res=16, noise_mode="const"), img)


def test_stylegan2_widths_follow_cfg_channels_in_every_preset():
    for name in ("smoke", "demo", "paper"):
        cfg = preset(name, arch="stylegan2")
        G, D = build_generator(network_settings(cfg)), build_discriminator(network_settings(cfg))
        for res in [4] + cfg.resolutions:
            assert G.to_image[str(res)].conv.weight.shape == (image_planes(G.settings), cfg.channels[res], 1, 1)
            assert D.from_image[str(res)].conv.weight.shape == (cfg.channels[res], 1, 1, 1)
        for res in cfg.resolutions:
            assert G.blocks[str(res)].conv0.conv.weight.shape[:2] == (cfg.channels[res], cfg.channels[res // 2])
            assert D.blocks[str(res)].skip.weight.shape[:2] == (cfg.channels[res // 2], cfg.channels[res])
        noise = [k for k, v in G.state_dict().items() if k.endswith("noise.weight")]
        assert noise and all(G.state_dict()[k].numel() == 1 for k in noise)  # one strength per layer


# ----------------------------------------------------------------------
# the relativistic loss


class QuadraticCritic(torch.nn.Module):
    def forward(self, img, label=None, *, alpha=1.0):
        return 0.35 * img.square().sum(dim=(1, 2, 3))


def test_relativistic_loss_pairs_reals_with_fakes_and_penalises_both():
    D, gamma = QuadraticCritic(), 2.0
    real, fake = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    loss, stats = RelativisticR1R2(gamma).critic_loss(D, real, fake, None, regularise=True, reg_scale=4.0)
    r1, r2 = r1_penalty(D, real, None), r1_penalty(D, fake, None)
    assert r1.item() == pytest.approx(0.7**2 * real.square().sum(dim=(1, 2, 3)).mean().item(), rel=1e-5)
    expected = F.softplus(D(fake) - D(real)).mean() + gamma / 2 * 4.0 * (r1 + r2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["r2"].item() == pytest.approx(r2.item(), rel=1e-5)
    g_loss, _ = RelativisticR1R2(gamma).generator_loss(D, fake, None, real=real)
    assert g_loss.item() == pytest.approx(F.softplus(D(real) - D(fake)).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="pass real"):
        RelativisticR1R2().generator_loss(D, fake, None)
    assert isinstance(make_loss(tiny(loss="rpgan-r1r2")), RelativisticR1R2)


# ----------------------------------------------------------------------
# through the trainer


def _random(n=28, size=16):
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return SliceDataset(images=images, labels=np.arange(n) % 2, splits=np.array(["train"] * n),
                        sources=[f"img{i}" for i in range(n)], skipped=[], root=Path("memory"))


def _tensors(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))[0]


@pytest.mark.parametrize("over", [dict(loss="rpgan-r1r2", class_name="both", reg_every=2, augment="adaptive"),
                                  dict(start_res=16, images_per_res=40, cpu_bf16=True, channels_last=True,
                                       composite=True)],
                         ids=["progressive-rpgan-conditional", "direct-bf16-channels-last-composite"])
def test_stylegan2_run_resumes_exactly_and_generates(tmp_path, over):
    over = {"images_per_res": 40, **over}
    data = _random()
    full = train(tiny(run="full", out_root=str(tmp_path), **over), dataset=data)
    cfg = tiny(run="cut", out_root=str(tmp_path), **over)
    train(cfg, dataset=data, max_steps=4)
    train(cfg, dataset=data, resume=True)
    a, b = _tensors(full), _tensors(cfg.run_dir)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert json.loads((cfg.run_dir / "config.json").read_text())["arch"] == "stylegan2"
    assert ("augment/p" in a) == (over.get("augment") == "adaptive")
    G, loaded_cfg, meta = load("cut", out_root=tmp_path)
    assert isinstance(G, SkipGenerator) and meta["finished"] and loaded_cfg.composite == over.get("composite", False)
    class_name = "AD" if loaded_cfg.conditional else None
    images = sample_images(G, 4, seed=1, class_name=class_name)
    assert images.shape == (4, 1, 16, 16) and torch.isfinite(images).all()
    torch.testing.assert_close(images, sample_images(G, 4, seed=1, class_name=class_name), rtol=0, atol=0)
