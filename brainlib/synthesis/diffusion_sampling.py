"""A trained diffusion model as a generator: DDIM sampling with classifier-free guidance.

`DiffusionSampler` is what `sampling.load` returns for a diffusion run. It carries what the
rest of brainlib reads from a generator (`cfg`, `trained_res`, `trained_alpha`,
`parameters()`), and `sample(labels, seeds)`; `sampling.sample_images` turns (n, seed,
class, start) into those, so `generate`, `evaluate` and `export` take either family.

Reproducibility as for the StyleGANs: image i starts from noise drawn from its own seed
alone, and the DDIM steps add no noise, so the same checkpoint, seed, steps and guidance
give the same PNGs run after run on the same machine. The denoiser runs in the training
step's precision (bf16 autocast on CPUs with bf16 instructions and on CUDA): sampling costs
`steps` network evaluations per image (two with guidance), and bf16 halves that on such CPUs.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from brainlib.config import CLASS_LABELS, RunConfig
from brainlib.networks.diffusion import NoisePath, build_denoiser, guided, sampling_timesteps
from brainlib.networks.unet import NULL_CLASS
from brainlib.progress import progress_bar
from brainlib.training.checkpoints import load_checkpoint, load_module, resolve_checkpoint
from brainlib.training.devices import autocast_dtype

GRID_SEED_OFFSET = 7919  # the training grid's images start from seeds (seed + this) * 10_000 + i


class DiffusionSampler:
    def __init__(self, denoiser: nn.Module, cfg: RunConfig, *, steps: int | None = None, guidance: float | None = None):
        self.denoiser, self.cfg = denoiser, cfg
        self.path = NoisePath(cfg.objective, cfg.diffusion_timesteps)
        self.steps = int(steps or cfg.sample_steps)
        self.guidance = float(cfg.guidance if guidance is None else guidance)
        self.trained_res, self.trained_alpha = cfg.image_size, 1.0

    def parameters(self):
        return self.denoiser.parameters()

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @torch.no_grad()
    def sample(self, labels: torch.Tensor | None, seeds: Sequence[int], *, batch_size: int = 64,
               progress: bool = False) -> torch.Tensor:
        """Images [len(seeds), 1, S, S] in [-1, 1] on the CPU; image i starts from the noise of
        seeds[i]; labels [n] (NC = 0, AD = 1) for a conditional model, else None."""
        S, n = self.cfg.image_size, len(seeds)
        self.timesteps()  # checks the number of steps before any work
        out = torch.empty(n, 1, S, S)
        with progress_bar(total=n * self.steps, disable=not progress, desc=f"sampling ({self.steps} steps)",
                          unit="evals") as bar:
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                x = torch.stack([torch.randn(1, S, S, generator=torch.Generator().manual_seed(int(s)))
                                 for s in seeds[lo:hi]]).to(self.device)
                y = None if labels is None else labels[lo:hi].to(self.device)
                out[lo:hi] = self.denoise(x, y, bar).float().clamp(-1, 1).cpu()
        return out

    def timesteps(self) -> list[int]:
        """The timesteps of the whole path, T-1 down, self.steps of them."""
        if self.steps < 1 or self.steps > self.path.T:
            raise ValueError(f"sampling steps must be within [1, {self.path.T}] (got {self.steps})")
        return sampling_timesteps(self.path.T, self.steps)

    def denoise(self, x: torch.Tensor, labels: torch.Tensor | None, bar=None, *,
                timesteps: Sequence[int] | None = None) -> torch.Tensor:
        """Deterministic DDIM from x at timesteps[0] to clean images, one network evaluation per
        timestep (descending; default: pure noise x along the whole path)."""
        ts = self.timesteps() if timesteps is None else list(timesteps)
        for i, t in enumerate(ts):
            t_now = torch.full((len(x),), t, dtype=torch.long)
            t_prev = torch.full((len(x),), ts[i + 1], dtype=torch.long) if i + 1 < len(ts) else None
            x = self.path.ddim_step(x, self.predict(x, t_now, labels), t_now, t_prev)
            if bar is not None:
                bar.update(len(x))
        return x

    def invert(self, x0: torch.Tensor, labels: torch.Tensor | None, timesteps: Sequence[int]) -> torch.Tensor:
        """DDIM inversion: clean images x0 carried up the deterministic path to timesteps[-1]
        (ascending), one network evaluation per timestep, so that `denoise(x, labels,
        timesteps=reversed)` comes back to about x0. Each step is the DDIM update run upwards
        with the prediction at the current level; the clean image has no level, so its noise is
        the one predicted at the first timestep (Song et al. 2021, sec. 4.3; Mokady et al. 2023)."""
        x, level = x0, None
        for t in timesteps:
            t_next = torch.full((len(x),), t, dtype=torch.long)
            prediction = self.predict(x, t_next if level is None else level, labels)
            if level is None:
                a, s = self.path.coefficients(t_next, x)
                x = a * x + s * self.path.estimates(x, prediction, t_next)[1]
            else:
                x = self.path.ddim_step(x, prediction, level, t_next)
            level = t_next
        return x

    def predict(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The denoiser's prediction at x_t, guided when the model is conditional and guidance > 0."""
        t = t.to(x.device).float()
        with self._autocast():
            if labels is None or self.guidance == 0:
                return self.denoiser(x, t, labels).float()
            both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]),
                                 torch.cat([labels, torch.full_like(labels, NULL_CLASS)])).float()
        cond, uncond = both.chunk(2)
        return guided(cond, uncond, self.guidance)

    def _autocast(self):
        dtype = autocast_dtype(self.cfg, self.device)
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def grid_seeds(cfg: RunConfig, n: int) -> list[int]:
    """The fixed seeds of the training run's sample grids."""
    return [(cfg.seed + GRID_SEED_OFFSET) * 10_000 + i for i in range(n)]


def grid_labels(cfg: RunConfig, n: int) -> torch.Tensor | None:
    """Rows alternate AD, NC for a conditional model, as the StyleGAN's grids."""
    if not cfg.conditional:
        return None
    rows = torch.arange(n) // cfg.sample_grid
    return torch.where(rows % 2 == 0, CLASS_LABELS["AD"], CLASS_LABELS["NC"])


def is_diffusion_run(model: str | Path, out_root: str | Path = "outputs") -> bool:
    """Whether the checkpoint that `model` names (a run, run folder or checkpoint) is a diffusion model's."""
    meta_path = resolve_checkpoint(model, out_root).with_suffix(".json")
    if not meta_path.is_file():
        return False
    try:
        return json.loads(meta_path.read_text()).get("family") == "diffusion"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # load_checkpoint reports the broken file


def load_diffusion(model: str | Path, *, out_root: str | Path = "outputs", device: str | torch.device = "cpu"):
    """(DiffusionSampler around the EMA denoiser in eval mode, RunConfig, meta)."""
    path = resolve_checkpoint(model, out_root)
    tensors, meta = load_checkpoint(path)
    cfg = RunConfig.from_dict(meta["config"])
    denoiser = build_denoiser(cfg)
    load_module(denoiser, tensors, "G_ema", path)
    denoiser.to(device).eval().requires_grad_(False)
    meta = {"res": cfg.image_size, "alpha": 1.0, "images_seen": 0, "finished": False, **meta}
    return DiffusionSampler(denoiser, cfg), cfg, meta
