"""The radially averaged power spectrum of an image set, and its distance per octave band.

Generator artefacts sit at the finest scales (checkerboards, streaks, mottled texture: Frank
et al. 2020, arXiv 2003.08685; Chandrasegaran et al. 2021, arXiv 2103.17195), where a distance
on normalised patches can miss them. The spectrum counts energy: a set with too much or too
little power at some frequency reads far from the real slices there.

The spectrum of a set is the mean over its images of |FFT|^2 / S^2, averaged over rings of
equal radial frequency r = 1 .. S/2 cycles per image (the DC term and the corners beyond S/2
are left out). Octave bands carry the Laplacian pyramid's names: at S = 64 px, band "64" holds
r in [16, 32] (the pyramid's finest level), "32" holds [8, 16), "16" [4, 8), "8" [2, 4) and
"4" [1, 2). The distance of a band is the mean of |log10 P_candidate(r) - log10 P_reference(r)|
over its radii: 0.3 means a factor of two in power.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import atomic_write
from brainlib.data.dataset import to_model_input
from brainlib.plots import pyplot


def ring_power(x: torch.Tensor) -> torch.Tensor:
    """Mean power per radial frequency r = 0 .. S/2 (cycles per image) of images [N,1,S,S] in
    [-1, 1], as a tensor on their device that gradients flow through (float64 stays float64,
    other types are computed in float32)."""
    size = x.shape[-1]
    if x.dim() != 4 or x.shape[1] != 1 or len(x) < 1 or size < 4 or x.shape[-2] != size:
        raise ValueError(f"a power spectrum needs square images [N,1,S,S], S >= 4, got {tuple(x.shape)}")
    if x.dtype != torch.float64:
        x = x.float()
    spectrum = torch.view_as_real(torch.fft.fft2(x[:, 0]))
    power = spectrum.square().sum(-1).mean(0).flatten() / size**2
    pixels, radius, counts = _rings(size, str(x.device))
    totals = power.new_zeros(size // 2 + 1).index_add(0, radius, power.index_select(0, pixels))
    return totals / counts.to(power.dtype)


@functools.lru_cache(maxsize=16)
def _rings(size: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flat indices of the pixels within radius S/2 of DC, their ring r, and the pixels per ring."""
    f = np.fft.fftfreq(size) * size
    radius = np.rint(np.hypot(f[:, None], f[None, :])).astype(np.int64).ravel()
    pixels = np.flatnonzero(radius <= size // 2)
    counts = np.bincount(radius[pixels], minlength=size // 2 + 1)
    return tuple(torch.from_numpy(a).to(device) for a in (pixels, radius[pixels], counts))


def radial_power_spectrum(images) -> np.ndarray:
    """Mean power per radial frequency r = 0 .. S/2 (cycles per image) of a set of square images."""
    x = to_model_input(images).double()
    if len(x) < 1:
        raise ValueError(f"a power spectrum needs at least one image, got {tuple(x.shape)}")
    total = sum(ring_power(chunk) * len(chunk) for chunk in x.split(256))
    return (total / len(x)).cpu().numpy()


def octave_bands(size: int) -> dict[str, tuple[int, int]]:
    """Band name (the pyramid level's size in px) -> radii [lo, hi] in cycles per image, finest first."""
    bands, k = {}, 0
    while size >> (k + 1) >= 1:
        hi, lo = size >> (k + 1), max(1, size >> (k + 2))
        bands[str(size >> k)] = (lo, hi if k == 0 else hi - 1)
        if lo == 1:
            break
        k += 1
    return bands


def spectral_distance(spectrum: np.ndarray, reference: np.ndarray, size: int) -> dict:
    """{"bands": {name: mean |log10 ratio| over the band's radii}, "mean": the bands' average}."""
    floor = 1e-20  # a set that is flat at some frequency has no power there: keep the log finite
    gap = np.abs(np.log10(np.maximum(spectrum, floor)) - np.log10(np.maximum(reference, floor)))
    bands = {name: float(gap[lo:hi + 1].mean()) for name, (lo, hi) in octave_bands(size).items()}
    return {"bands": bands, "mean": float(np.mean(list(bands.values())))}


def spectra_to_reference(reference, candidates: dict) -> dict:
    """Each candidate set's spectral distance to `reference` (all sets one size), and every spectrum:
    {"spectra": {"reference": [...], name: [...]}, name: {"bands": ..., "mean": ...}, ...}."""
    size = to_model_input(reference[:1]).shape[-1]
    for name, x in candidates.items():
        if to_model_input(x[:1]).shape[-1] != size:
            raise ValueError(f"spectra need images of one size, got {to_model_input(x[:1]).shape[-1]} px "
                             f"({name}) and {size} px")
    spectra = {"reference": radial_power_spectrum(reference)}
    spectra |= {name: radial_power_spectrum(x) for name, x in candidates.items()}
    out = {name: spectral_distance(spectra[name], spectra["reference"], size) for name in candidates}
    return {"spectra": {k: v.tolist() for k, v in spectra.items()}, **out}


def plot_spectra(spectra: dict[str, list[float]], path: str | Path, *, title: str = "") -> Path:
    """Log-log plot of radially averaged power spectra ({label: power per radius 0..S/2}),
    the octave bands shaded, as a PNG at `path` (written atomically)."""
    plt = pyplot()
    size = 2 * (len(next(iter(spectra.values()))) - 1)
    radius = np.arange(1, size // 2 + 1)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for k, (name, (lo, hi)) in enumerate(octave_bands(size).items()):
        if k % 2 == 0:
            ax.axvspan(lo - 0.5 if lo > 1 else 1, hi + 0.5, color="0.93", lw=0)
        ax.text(math.sqrt(lo * hi), 1.0, f"{name} px", transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=7, color="0.4")
    styles = {"generated": ("tab:red", "-"), "train": ("black", "-"), "held-out": ("tab:blue", "--")}
    for name, power in spectra.items():
        colour, line = styles.get(name, (None, ":"))
        ax.loglog(radius, np.asarray(power)[1:], line, color=colour, lw=1.3, label=name)
    ticks = [r for r in (1, 2, 4, 8, 16, 32, 64, 128) if r <= size // 2]
    ax.set_xticks(ticks, [str(r) for r in ticks])
    ax.minorticks_off()
    ax.set_xlabel("radial frequency (cycles per image)")
    ax.set_ylabel("power")
    ax.set_title(title or "radially averaged power spectrum", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
