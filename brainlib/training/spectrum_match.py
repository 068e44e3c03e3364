"""A generator loss on the power spectrum: the batch's log power per radial frequency against
the training slices', in the finest octaves of the full-size slices.

The critic judges texture through its convolutions and can leave the finest band's strength
off (the `demo`'s slices carry 8-20% too much power there, docs/quality.md). This term states
it: the mean over the two finest octaves' radii, r = S/8 .. S/2, of |log10 P_batch(r) -
log10 P_train(r)|, times `cfg.spectral_weight` (the spectral figure of eval/spectrum.py, on one
batch). The trainer adds it at the final resolution only; the coarser octaves and the earlier
steps hold the slice's layout, which a batch of 16 estimates too roughly for its spectrum to be
a target. The training slices' spectrum is computed once, on the device. Durall et al. 2020
(arXiv 2003.01826) add a spectral term of this kind against up-convolution artefacts.
"""
from __future__ import annotations

import torch

from brainlib.data.dataset import to_model_input
from brainlib.eval.spectrum import ring_power

LOG_FLOOR = 1e-20  # no power at some radius: keep the log finite


def finest_log(power: torch.Tensor, size: int) -> torch.Tensor:
    """log10 of a ring power (r = 0 .. S/2, eval.spectrum.ring_power) over the radii the term
    reads, r = S/8 .. S/2: the one place that picks them, for the batch and the reference alike."""
    return power[size // 8:].clamp_min(LOG_FLOOR).log10()


def log_power(x: torch.Tensor) -> torch.Tensor:
    """log10 of the mean power per radius r = S/8 .. S/2 of images [N,1,S,S]."""
    return finest_log(ring_power(x), x.shape[-1])


class SpectrumMatch:
    """The term for generated batches of `size` px, against uint8 training slices [N,S,S]."""

    def __init__(self, images_u8: torch.Tensor, weight: float, size: int, *, chunk: int = 256):
        self.weight, self.size = weight, size
        with torch.no_grad():
            total = sum(ring_power(to_model_input(c, size)) * len(c) for c in images_u8.split(chunk))
            self.reference = finest_log(total / len(images_u8), size)

    def __call__(self, fake: torch.Tensor) -> torch.Tensor:
        """The weighted term for a generated batch [N,1,size,size] (computed in float32)."""
        if fake.shape[-1] != self.size:
            raise ValueError(f"the spectral term is set up for {self.size} px slices, got {tuple(fake.shape)}")
        with torch.autocast(fake.device.type, enabled=False):
            return self.weight * (log_power(fake.float()) - self.reference).abs().mean()
