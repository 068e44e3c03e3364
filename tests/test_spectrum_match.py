"""The generator's spectral term (`spectral_weight`, training/spectrum_match.py): the ring power
it is built on, its zero on the training slices, its pull on a batch, and a smoke run with it."""
import json
import math

import numpy as np
import pytest
import torch

from brainlib.config import ConfigError, preset
from brainlib.data.dataset import SliceDataset, to_model_input
from brainlib.eval.spectrum import octave_bands, radial_power_spectrum, ring_power
from brainlib.training.spectrum_match import SpectrumMatch, log_power


def smooth_u8(n, res=16, seed=0, sigma=1.5) -> torch.Tensor:
    """Smooth textures as uint8 slices [n,res,res]: Gaussian-filtered white noise around mid-grey."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(res)
    gain = torch.exp(-2 * (torch.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    x = torch.fft.ifft2(torch.fft.fft2(torch.randn(n, res, res, generator=g)) * gain).real
    return (128 + 60 * x / x.std()).clamp(0, 255).round().to(torch.uint8)


def test_ring_power_is_the_set_spectrum_and_passes_gradients():
    x = to_model_input(smooth_u8(40)).requires_grad_(True)
    rings = ring_power(x)
    np.testing.assert_allclose(rings.detach().numpy(), radial_power_spectrum(x.detach()), rtol=1e-5)
    assert rings.shape == (9,) and rings.dtype == torch.float32
    rings[octave_bands(16)["16"][0]:].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"square images \[N,1,S,S\].*\(3, 16, 16\)"):
        ring_power(torch.zeros(3, 16, 16))


def test_the_term_is_zero_on_the_training_slices_at_their_size_and_refuses_another():
    images = smooth_u8(64)
    match = SpectrumMatch(images, weight=1.0, size=16, chunk=24)  # chunks that do not divide the set
    assert match.reference.shape == (16 // 2 - 16 // 8 + 1,)  # r = S/8 .. S/2
    assert match(to_model_input(images)).item() == pytest.approx(0.0, abs=1e-5)
    halved = SpectrumMatch(images, weight=1.0, size=8)  # slices area-downsampled, as the loader's steps
    assert halved(to_model_input(images, 8)).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"set up for 16 px slices, got \(2, 1, 8, 8\)"):
        match(torch.zeros(2, 1, 8, 8))


def test_the_term_reads_the_log_power_gap_times_its_weight():
    images = smooth_u8(64)
    quieter = to_model_input(images) * 0.5  # a quarter of the power at every radius but DC
    gap = math.log10(4.0)
    assert SpectrumMatch(images, weight=1.0, size=16)(quieter).item() == pytest.approx(gap, rel=1e-4)
    assert SpectrumMatch(images, weight=3.0, size=16)(quieter).item() == pytest.approx(3 * gap, rel=1e-4)


def test_the_coarse_octaves_are_left_to_the_critic():
    images = smooth_u8(64)
    match = SpectrumMatch(images, weight=1.0, size=16)
    x = to_model_input(images[:16])
    layout = 0.3 * torch.cos(2 * torch.pi * torch.arange(16) / 16)  # a wave of 1 cycle per image
    fine_wave = 0.3 * torch.cos(2 * torch.pi * 6 * torch.arange(16) / 16)  # 6 cycles: the finest octave
    assert match(x + layout).item() == pytest.approx(match(x).item(), abs=1e-6)
    assert match(x + fine_wave).item() > match(x).item() + 0.01


def test_descending_the_term_brings_white_noise_to_the_training_spectrum():
    images = smooth_u8(64)
    match = SpectrumMatch(images, weight=1.0, size=16)
    batch = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    fine = slice(octave_bands(16)["16"][0] - 16 // 8, None)  # log_power starts at r = S/8

    def fine_gap():  # white noise starts far too strong in the finest octave
        return (log_power(batch.detach()) - match.reference)[fine].abs().mean().item()

    before, before_fine = match(batch).item(), fine_gap()
    opt = torch.optim.Adam([batch], lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        match(batch).backward()
        opt.step()
    assert before > 0.5 and match(batch).item() < before / 5
    assert before_fine > 0.5 and fine_gap() < before_fine / 5


def test_bf16_autocast_takes_the_term_in_float32():
    images = smooth_u8(32)
    fake = to_model_input(images[:8]).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SpectrumMatch(images, weight=1.0, size=16)(fake)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_the_weight_must_be_zero_or_positive():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="spectral_weight=.* must be 0 \\(off\\) or a positive number"):
            preset("smoke", spectral_weight=bad)


def test_a_smoke_run_logs_the_term_apart_from_the_adversarial_loss(tmp_path):
    from brainlib.training.trainer import train

    images = smooth_u8(16).numpy()
    data = SliceDataset(images=images, labels=np.ones(16, np.int64), splits=np.array(["train"] * 16),
                        sources=[f"img{i}" for i in range(16)], skipped=[], root=tmp_path)
    runs = {}
    for weight in (0.0, 2.0):
        cfg = preset("smoke", run=f"w{weight}", out_root=str(tmp_path), images_per_res=16, spectral_weight=weight)
        train(cfg, dataset=data)
        runs[weight] = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    with_term = [r for r in runs[2.0] if r.get("kind") == "batch"]
    without = [r for r in runs[0.0] if r.get("kind") == "batch"]
    assert len(with_term) == len(without) > 0
    full_size = [r for r in with_term if r["res"] == 16]
    assert full_size and all(0 < r["spectral"] < 2.0 * 10 and math.isfinite(r["g_loss"]) for r in full_size)
    assert all("spectral" not in r for r in without + [r for r in with_term if r["res"] < 16])
    # the first full-size batch sees the same weights, data and noise: g_loss is the adversarial part alone
    first = next(i for i, r in enumerate(with_term) if r["res"] == 16)
    assert with_term[first]["g_loss"] == pytest.approx(without[first]["g_loss"], rel=1e-5)
    assert with_term[first + 1]["g_loss"] != pytest.approx(without[first + 1]["g_loss"], rel=1e-5)


def test_the_diffusion_family_refuses_the_weight():
    with pytest.raises(ConfigError, match="spectral_weight is a StyleGAN setting"):
        preset("diffusion-smoke", spectral_weight=1.0)
