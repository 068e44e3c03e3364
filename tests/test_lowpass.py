"""Kaiser low-pass resampling (`lowpass_from`, layers.lowpass_resample_2x) and the output's
Lanczos band limit (`output_lowpass`, layers.lanczos_band_limit): the filters' responses, the
filtering against depthwise-convolution references, where the networks use them, that networks
without them are unchanged, and a smoke run that resumes."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainlib.config import ConfigError, RunConfig, preset
from brainlib.networks.build import build_discriminator, build_generator
from brainlib.networks.layers import (
    KAISER_TAPS,
    LANCZOS_RESPONSE_TAPS,
    EqualConv2d,
    LowpassConvDown2d,
    LowpassUpConv2d,
    UpConv2d,
    kaiser_lowpass,
    lanczos_band_limit,
    lowpass_resample_2x,
)
from brainlib.networks.settings import NetworkSettings, network_settings


def tiny(**overrides) -> NetworkSettings:
    return network_settings(preset("smoke", **overrides))  # 16 px, widths {4: 16, 8: 16, 16: 8}


def response(taps, f: float) -> float:
    """|H(f)| of the filter taps at `f` cycles per pixel, DC = 1."""
    n = np.arange(len(taps))
    return abs(np.sum(np.asarray(taps) * np.exp(-2j * np.pi * f * n))) / abs(np.sum(taps))


def test_the_filter_passes_the_coarse_band_and_stops_its_images_better_than_bilinear():
    taps = KAISER_TAPS
    assert len(taps) == 12 and abs(sum(taps) - 1) < 1e-12 and taps == taps[::-1]
    # each polyphase half sums to 1/2, so upsampling keeps a constant exactly
    assert abs(sum(taps[0::2]) - 0.5) < 1e-12 and abs(sum(taps[1::2]) - 0.5) < 1e-12
    bilinear = [1 / 8, 3 / 8, 3 / 8, 1 / 8]
    assert response(taps, 0.15) > 0.9 > response(bilinear, 0.15)
    assert response(taps, 0.3) < 0.05 < 0.2 < response(bilinear, 0.3)
    assert max(response(taps, f) for f in np.linspace(0.35, 0.5, 16)) < 0.01
    with pytest.raises(ValueError, match="multiple of 4"):
        kaiser_lowpass(taps=10)


def reference_up(x: torch.Tensor) -> torch.Tensor:
    """Zero insertion + the taps at gain 2 per axis, as depthwise transposed convolutions."""
    taps, c, h, w = 2 * torch.tensor(KAISER_TAPS, dtype=x.dtype), *x.shape[1:]
    x = F.pad(x, (3, 3, 3, 3), mode="replicate")
    x = F.conv_transpose2d(x, taps.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, 2), groups=c)
    x = F.conv_transpose2d(x, taps.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(2, 1), groups=c)
    return x[..., 11:11 + 2 * h, 11:11 + 2 * w]  # the first input pixel's centre at output 0.5


def reference_down(x: torch.Tensor) -> torch.Tensor:
    taps, c = torch.tensor(KAISER_TAPS, dtype=x.dtype), x.shape[1]
    x = F.pad(x, (5, 5, 5, 5), mode="replicate")
    x = F.conv2d(x, taps.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, 2), groups=c)
    return F.conv2d(x, taps.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(2, 1), groups=c)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 16, 8), (1, 1, 4, 4)])
def test_resampling_is_the_filter_it_names(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    up = lowpass_resample_2x(x, up=True)
    assert up.shape == (*shape[:2], 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(up, reference_up(x))
    torch.testing.assert_close(lowpass_resample_2x(up, up=False), reference_down(up))
    flat = torch.full(shape, 0.3)
    torch.testing.assert_close(lowpass_resample_2x(flat, up=True), torch.full(up.shape, 0.3))
    torch.testing.assert_close(lowpass_resample_2x(flat, up=False), torch.full(reference_down(flat).shape, 0.3))


def test_resampling_keeps_centres_where_bilinear_and_average_pooling_put_them():
    ramp = torch.arange(32.0).expand(1, 1, 32, 32)  # a linear ramp along x
    up, down = lowpass_resample_2x(ramp, up=True), lowpass_resample_2x(ramp, up=False)
    bilinear = F.interpolate(ramp, scale_factor=2, mode="bilinear", align_corners=False)
    # away from the border a half-pixel shift would be off by 0.25 of a pixel step
    assert (up - bilinear)[..., 8:-8, 8:-8].abs().max() < 0.02
    torch.testing.assert_close(down[..., 3:-3, 3:-3], F.avg_pool2d(ramp, 2)[..., 3:-3, 3:-3])


def test_under_bf16_autocast_it_runs_in_bf16_and_stays_close():
    x = torch.randn(2, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        up = lowpass_resample_2x(x, up=True)
    assert up.dtype == torch.bfloat16
    torch.testing.assert_close(up.float(), lowpass_resample_2x(x, up=True), atol=0.05, rtol=0.05)


def test_the_networks_resample_through_it_from_lowpass_from_up():
    G, D = build_generator(tiny(lowpass_from=16)), build_discriminator(tiny(lowpass_from=16))
    assert isinstance(G.blocks["16"].conv0.conv, LowpassUpConv2d)
    assert isinstance(G.blocks["8"].conv0.conv, UpConv2d) and not isinstance(G.blocks["8"].conv0.conv, LowpassUpConv2d)
    assert isinstance(D.blocks["16"].conv1, LowpassConvDown2d) and isinstance(D.blocks["16"].blur, torch.nn.Identity)
    assert not isinstance(D.blocks["8"].conv1, LowpassConvDown2d)
    z = torch.randn(3, 16)
    for res in (4, 8, 16):
        for alpha in (0.0, 0.5, 1.0):
            img = G(z, res=res, alpha=alpha, noise_mode="const")
            assert img.shape == (3, 1, res, res) and torch.isfinite(img).all()
            assert D(img, alpha=alpha).shape == (3,)


def test_a_fading_generator_upsamples_the_previous_image_through_the_low_pass():
    torch.manual_seed(0)
    G = build_generator(tiny(lowpass_from=16)).eval()
    z = torch.randn(2, 16)
    ws = G.broadcast_ws(G.map(z), 16)
    x8 = G.blocks["8"](G.blocks["4"](None, ws[:, 0:2], "const"), ws[:, 2:4], "const")
    expected = lowpass_resample_2x(G.to_image["8"](x8), up=True)
    torch.testing.assert_close(G.synthesize(ws, res=16, alpha=0.0, noise_mode="const"), G.finish(expected))


def test_a_fading_critic_downsamples_the_image_through_the_low_pass():
    torch.manual_seed(0)
    D = build_discriminator(tiny(lowpass_from=16)).eval()
    img = torch.randn(2, 1, 16, 16)
    expected = D.epilogue(D.blocks["8"](D.from_image["8"](lowpass_resample_2x(img, up=False))))
    torch.testing.assert_close(D(img, alpha=0.0), expected)


@pytest.mark.parametrize("class_name", ["AD", "both"])
def test_without_the_setting_the_networks_are_the_ones_built_before_it_existed(class_name):
    settings = tiny(class_name=class_name)
    legacy = {k: v for k, v in settings.to_dict().items()
              if k not in ("lowpass_from", "output_lowpass")}  # as old checkpoints hold
    assert NetworkSettings.from_dict(legacy) == settings and settings.lowpass_from is None
    on = tiny(class_name=class_name, lowpass_from=8)
    for build in (build_generator, build_discriminator):
        torch.manual_seed(0)
        a = build(settings).state_dict()
        torch.manual_seed(0)
        b = build(on).state_dict()
        # the same tensors, names and initial values: the design changes the resampling, not the weights
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not isinstance(build_generator(settings).blocks["16"].conv0.conv, LowpassUpConv2d)
    assert isinstance(LowpassUpConv2d(4, 4, 3), EqualConv2d)


def test_the_output_filter_follows_the_loaders_lanczos_resize():
    taps = LANCZOS_RESPONSE_TAPS
    assert len(taps) == 7 and abs(sum(taps) - 1) < 1e-12 and taps == taps[::-1]
    assert abs(response(taps, 0.2) - 1) < 0.05 and abs(response(taps, 0.5) - 0.6) < 0.1  # Lanczos-3: 1.01, 0.50
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    kernel = torch.tensor(taps, dtype=torch.float64)
    expected = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), (kernel[:, None] * kernel[None]).reshape(1, 1, 7, 7))
    torch.testing.assert_close(lanczos_band_limit(x), expected)


def test_output_lowpass_filters_the_full_size_image_only():
    torch.manual_seed(0)
    plain = build_generator(tiny()).eval()
    limited = build_generator(tiny(output_lowpass=True)).eval()
    limited.load_state_dict(plain.state_dict())
    z = torch.randn(3, 16)
    full = plain(z, res=16, noise_mode="const")
    torch.testing.assert_close(limited(z, res=16, noise_mode="const"), lanczos_band_limit(full))
    assert not torch.allclose(limited(z, res=16, noise_mode="const"), full)
    assert torch.equal(limited(z, res=8, alpha=0.5, noise_mode="const"), plain(z, res=8, alpha=0.5, noise_mode="const"))


def test_settings_are_checked():
    d = RunConfig().to_dict()
    del d["lowpass_from"]
    assert RunConfig.from_dict(d).lowpass_from is None
    assert preset("smoke", lowpass_from="16").lowpass_from == 16  # --set lowpass_from=16
    with pytest.raises(ConfigError, match="lowpass_from=12 must be a resolution"):
        preset("smoke", lowpass_from=12)
    with pytest.raises(ConfigError, match="lowpass_from=4 must be a resolution"):
        preset("smoke", lowpass_from=4)
    with pytest.raises(ConfigError, match="built for arch stylegan1, not stylegan2"):
        preset("smoke", lowpass_from=16, arch="stylegan2")
    with pytest.raises(ConfigError, match="output_lowpass is built for arch stylegan1, not stylegan2"):
        preset("smoke", output_lowpass=True, arch="stylegan2")
    d = RunConfig().to_dict()
    del d["output_lowpass"]
    assert RunConfig.from_dict(d).output_lowpass is False


def test_a_smoke_run_with_it_trains_and_resumes(tmp_path):
    from brainlib.data.dataset import SliceDataset
    from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint
    from brainlib.training.trainer import train

    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16), dtype=np.uint8)
    data = SliceDataset(images=images, labels=np.ones(16, np.int64), splits=np.array(["train"] * 16),
                        sources=[f"img{i}" for i in range(16)], skipped=[], root=tmp_path)
    cfg = preset("smoke", run="lp", out_root=str(tmp_path), lowpass_from=8, images_per_res=16)
    train(cfg, dataset=data, max_steps=3)  # into step 2, mid fade-in
    assert not json.loads(latest_checkpoint(cfg.run_dir).with_suffix(".json").read_text())["finished"]
    train(cfg, dataset=data, resume=True)
    tensors, meta = load_checkpoint(latest_checkpoint(cfg.run_dir))
    assert meta["finished"] and meta["networks"]["lowpass_from"] == 8
    assert all(torch.isfinite(v).all() for v in tensors.values())
    with pytest.raises(ConfigError, match="lowpass_from"):  # a resume must build the same networks
        train(cfg.replace(lowpass_from=16), dataset=data, resume=True)
