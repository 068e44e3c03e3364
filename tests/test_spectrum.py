"""brainlib.eval.spectrum: power spectra with known shapes, octave bands, and the distance per band
beside its real-vs-real floor."""
import numpy as np
import pytest
import torch

from brainlib.eval.spectrum import (
    octave_bands,
    plot_spectra,
    radial_power_spectrum,
    spectra_to_reference,
    spectral_distance,
)


def smooth(n, res=32, seed=0, sigma=2.0):
    """Gaussian-filtered white noise (a smooth texture), float [n,1,res,res]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(res)
    gain = torch.exp(-2 * (torch.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return 0.5 * torch.fft.ifft2(torch.fft.fft2(torch.randn(n, 1, res, res, generator=g)) * gain).real * sigma


def band_power(spectrum, band, res):
    lo, hi = octave_bands(res)[band]
    return spectrum[lo:hi + 1].mean()


def test_octave_bands_cover_every_radius_once_finest_first():
    for res in (16, 64, 128):
        bands = octave_bands(res)
        assert list(bands)[0] == str(res) and list(bands)[-1] == "4"
        radii = [r for lo, hi in bands.values() for r in range(lo, hi + 1)]
        assert sorted(radii) == list(range(1, res // 2 + 1))
        lows = [lo for lo, _ in bands.values()]
        assert lows == sorted(lows, reverse=True)
    assert octave_bands(64)["64"] == (16, 32) and octave_bands(64)["32"] == (8, 15)


def test_white_noise_is_flat_and_a_smooth_texture_falls_off():
    g = torch.Generator().manual_seed(0)
    white = radial_power_spectrum(0.3 * torch.randn(64, 1, 64, 64, generator=g))
    assert band_power(white, "64", 64) / band_power(white, "8", 64) == pytest.approx(1.0, abs=0.15)
    assert white[1:] == pytest.approx(0.09, rel=0.3)  # the variance, at every frequency
    soft = radial_power_spectrum(smooth(64, 64))
    assert band_power(soft, "64", 64) < 1e-4 * band_power(soft, "8", 64)
    assert np.all(np.diff(soft[2:]) < 0)  # falls at every radius beyond the lowest


def test_a_sinusoid_puts_its_power_at_its_frequency():
    xx = torch.arange(32).float()
    wave = (0.8 * torch.cos(2 * torch.pi * 5 * xx / 32)).expand(4, 1, 32, 32)
    spectrum = radial_power_spectrum(wave)
    assert int(np.argmax(spectrum)) == 5 and spectrum[5] > 1e6 * np.delete(spectrum, 5).max()


def test_real_vs_real_reads_near_its_floor_and_extra_fine_energy_reads_far_in_the_fine_bands_only():
    train, held, other = smooth(200, seed=1), smooth(200, seed=2), smooth(200, seed=3)
    g = torch.Generator().manual_seed(9)
    noisy = held + 0.02 * torch.randn(held.shape, generator=g)  # fine speckle, invisible in the coarse bands
    res = spectra_to_reference(train, {"other": other, "noisy": noisy, "floor": held})
    floor = res["floor"]["bands"]
    for band, value in res["other"]["bands"].items():
        assert value < 3 * floor[band] + 0.01, band  # two real sets: near the floor in every band
    assert res["noisy"]["bands"]["32"] > 20 * floor["32"] and res["noisy"]["bands"]["32"] > 1.0
    assert res["noisy"]["bands"]["4"] < 3 * floor["4"] + 0.01
    assert len(res["spectra"]["reference"]) == 17 and set(res["spectra"]) == {"reference", "other", "noisy", "floor"}
    with pytest.raises(ValueError, match="one size"):
        spectra_to_reference(train, {"small": smooth(4, 16)})


def test_distance_is_the_log_ratio_of_power_per_band():
    ref = np.ones(33)
    doubled = spectral_distance(2 * ref, ref, 64)
    assert doubled["bands"] == pytest.approx({b: np.log10(2) for b in octave_bands(64)})
    fine_only = ref.copy()
    fine_only[16:] *= 10
    d = spectral_distance(fine_only, ref, 64)["bands"]
    assert d["64"] == pytest.approx(1.0) and d["32"] == d["16"] == 0.0


def test_plot_writes_a_png(tmp_path):
    spectra = {name: radial_power_spectrum(smooth(8, seed=s)).tolist() for s, name in enumerate(("train", "generated"))}
    path = plot_spectra(spectra, tmp_path / "eval" / "spectrum_AD.png", title="AD")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(path.parent.glob(".*tmp*"))
