"""The diffusion family's maths: the noise path, the training target, and the DDIM step.

Every objective here noises a clean image x0 with Gaussian noise eps along a path

    x_t = a_t * x0 + s_t * eps,      t = 0 .. T-1 (T = cfg.diffusion_timesteps)

- "epsilon" and "v" (DDPM): a_t = sqrt(abar_t), s_t = sqrt(1 - abar_t) on the cosine
  schedule (Nichol & Dhariwal 2021; abar_t equals MONAI's DDPMScheduler(schedule="cosine"),
  tested). The denoiser predicts eps, or v = a_t eps - s_t x0 (Salimans & Ho 2022).
- "flow" (rectified flow): a_t = 1 - u, s_t = u with u = (t + 1) / T; the denoiser predicts
  the velocity eps - x0.

From any prediction the path gives back (x0_hat, eps_hat), and the deterministic DDIM update
(Song et al. 2021, eq. 12 with sigma = 0) moves x_t to an earlier t' as

    x_t' = a_t' * x0_hat + s_t' * eps_hat

which for the flow path is exactly an Euler step of its ODE. After the last step the sample
is x0_hat itself (a = 1, s = 0). So one sampler serves all three objectives.
"""
from __future__ import annotations

import math

import torch

from brainlib.config import RunConfig
from brainlib.networks.unet import UNet

ARCHITECTURE = "diffusion-1"  # recorded in every diffusion checkpoint; loading refuses another


def cosine_alphas_cumprod(T: int, s: float = 0.008) -> torch.Tensor:
    """abar_t for t = 0 .. T-1 of the cosine schedule, betas clipped at 0.999 (float64)."""
    x = torch.linspace(0, T, T + 1, dtype=torch.float64)
    f = torch.cos((x / T + s) / (1 + s) * math.pi * 0.5) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(0.0, 0.999)
    return torch.cumprod(1 - betas, dim=0)


class NoisePath:
    """The coefficients (a_t, s_t) of one objective's path, as float32 tables of length T."""

    def __init__(self, objective: str, T: int):
        self.objective, self.T = objective, T
        if objective == "flow":
            u = torch.arange(1, T + 1, dtype=torch.float64) / T
            a, s = 1 - u, u
        else:
            abar = cosine_alphas_cumprod(T)
            a, s = abar.sqrt(), (1 - abar).sqrt()
        self.a, self.s = a.float(), s.float()
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) for integer timesteps t [B], shaped to broadcast over `like` [B, ...]; the
        tables are copied to like's device once, so a CUDA step never waits for the host."""
        if like.device not in self._on_device:
            self._on_device[like.device] = (self.a.to(like.device), self.s.to(like.device))
        a, s = self._on_device[like.device]
        idx = t.to(like.device, torch.long)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a[idx].reshape(shape), s[idx].reshape(shape)

    def noised(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = a_t x0 + s_t eps."""
        a, s = self.coefficients(t, x0)
        return a * x0 + s * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to predict at x_t."""
        if self.objective == "epsilon":
            return eps
        if self.objective == "flow":
            return eps - x0
        a, s = self.coefficients(t, x0)
        return a * eps - s * x0

    def estimates(self, x_t: torch.Tensor, prediction: torch.Tensor,
                  t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the denoiser's prediction at x_t."""
        a, s = self.coefficients(t, x_t)
        if self.objective == "epsilon":
            return (x_t - s * prediction) / a, prediction
        if self.objective == "flow":
            return x_t - s * prediction, x_t + a * prediction
        return a * x_t - s * prediction, s * x_t + a * prediction

    def ddim_step(self, x_t: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor,
                  t_prev: torch.Tensor | None, *, clip: bool = True) -> torch.Tensor:
        """The deterministic DDIM update from t to t_prev (None: to the clean image). x0_hat is
        clipped to the data range [-1, 1] when `clip`, as DDPM's and MONAI's samplers do."""
        x0, eps = self.estimates(x_t, prediction, t)
        if clip:
            x0 = x0.clamp(-1, 1)
        if t_prev is None:
            return x0
        a, s = self.coefficients(t_prev, x_t)
        return a * x0 + s * eps


def sampling_timesteps(T: int, steps: int) -> list[int]:
    """The `steps` timesteps a sampler visits, from T-1 down, evenly spaced; the step after
    the last one lands on the clean image."""
    return [int(round(T * (1 - i / steps))) - 1 for i in range(steps)]


def guided(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): cond + w (cond - uncond); w = 0 is the
    conditional prediction alone."""
    return cond + w * (cond - uncond)


def build_denoiser(cfg: RunConfig) -> UNet:
    return UNet(cfg)
