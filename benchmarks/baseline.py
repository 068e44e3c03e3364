"""The plain baseline every speed figure is measured against: brainlib's recipe written the
straightforward way, as a first PyTorch implementation of the paper would be.

Same as brainlib (so the comparison is about *how*, not *what*):
  - the networks: brainlib's `Generator` and `Discriminator` modules at the preset's widths;
  - the loss: WGAN-GP with ProGAN's drift, `gp_weight` and `drift` from the config;
  - the optimiser: Adam(lr, betas, eps=1e-8) for G (mapping network slowed by its lr_mul,
    which lives in its weights) and for D; a fresh z for the critic and for the generator step;
    w_avg tracked in the generator step; an EMA copy of G updated after every step.

What the baseline does differently (each one a candidate speed-up brainlib takes or not,
decided by benchmarks/train_speed.py --baseline):
  - data: `torchvision.datasets.ImageFolder` + `DataLoader(shuffle=True)`; every epoch decodes
    the PNG/JPEG files again with PIL and runs `Grayscale -> Resize((res, res)) -> ToTensor ->
    Normalize(0.5, 0.5)`; `num_workers=0` by default (worker processes only compete with
    the training threads on a 2-core machine; benchmarks/data_speed.py times 0 and 2);
  - the gradient penalty every critic step (brainlib: every `reg_every` steps, scaled);
  - the penalty written as in the WGAN-GP reference code: interpolate, `autograd.grad` with
    `grad_outputs=ones`, `.view(B, -1).norm(2, dim=1)`;
  - the EMA as a Python loop over parameters (`p_ema.copy_(beta * p_ema + (1 - beta) * p)`)
    rather than one fused `_foreach_lerp_`; losses read back with `.item()` every step;
  - each layer's plain twin (`fast=False`): the discriminator's 3x3 conv at full resolution
    then average pooling, where brainlib runs one 4x4 strided convolution; the generator's
    nearest upsampling, blur, then 3x3 conv, where brainlib runs one bilinear upsampling (and on
    large maps a transposed conv on the small map with the border ring redone); AdaIN's
    statistics with torch's `instance_norm` and the minibatch std with `var`, where brainlib
    takes two means;
  - float32 throughout, no autocast, no channels_last, no compile, torch's default threads.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from brainlib.config import RunConfig
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Discriminator, Generator


def folder_transform(res: int):
    """The usual torchvision pipeline for greyscale GAN training images in [-1, 1]."""
    from torchvision import transforms
    return transforms.Compose([transforms.Grayscale(num_output_channels=1), transforms.Resize((res, res)),
                               transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])


def folder_dataset(root: str | Path, res: int, limit: int | None = None):
    """ImageFolder over <root> (class sub-folders of PNG/JPEG files), optionally its first `limit` files."""
    from torchvision.datasets import ImageFolder
    dataset = ImageFolder(str(root), transform=folder_transform(res))
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    return dataset


def folder_loader(root: str | Path, res: int, batch: int, *, limit: int | None = None, workers: int = 0,
                  seed: int = 0) -> torch.utils.data.DataLoader:
    """A shuffling DataLoader that decodes every file on every epoch (drop_last, like the trainer)."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(folder_dataset(root, res, limit), batch_size=batch, shuffle=True,
                                       num_workers=workers, drop_last=True, generator=g,
                                       persistent_workers=False)


def endless(loader) -> Iterator[Tensor]:
    """Batches of images forever, starting a new (re-decoding) epoch whenever one ends."""
    while True:
        for images, _labels in loader:
            yield images


class BaselineTrainer:
    """The straightforward training step (see the module docstring for what differs from brainlib)."""

    def __init__(self, cfg: RunConfig, device: str | torch.device = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        torch.manual_seed(cfg.seed)
        self.G = Generator(network_settings(cfg)).to(self.device)
        self.D = Discriminator(network_settings(cfg)).to(self.device)
        for m in [*self.G.modules(), *self.D.modules()]:
            if hasattr(m, "fast"):
                m.fast = False  # each layer's plain twin (layers.py): unfused resampling, torch's norms
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8)

    def gradient_penalty(self, real: Tensor, fake: Tensor, alpha: float) -> Tensor:
        b = real.size(0)
        eps = torch.rand(b, 1, 1, 1, device=self.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        d_hat = self.D(x_hat, alpha=alpha)
        grad = torch.autograd.grad(outputs=d_hat, inputs=x_hat, grad_outputs=torch.ones_like(d_hat),
                                   create_graph=True, retain_graph=True)[0]
        return ((grad.view(b, -1).norm(2, dim=1) - 1) ** 2).mean()

    def train_step(self, real: Tensor, res: int, alpha: float) -> dict[str, float]:
        cfg, b = self.cfg, real.size(0)
        real = real.to(self.device)
        # critic
        z = torch.randn(b, cfg.z_dim, device=self.device)
        with torch.no_grad():
            fake = self.G(z, res=res, alpha=alpha, update_w_avg=False)
        d_real = self.D(real, alpha=alpha)
        d_fake = self.D(fake, alpha=alpha)
        gp = self.gradient_penalty(real, fake, alpha)
        d_loss = d_fake.mean() - d_real.mean() + cfg.drift * (d_real ** 2).mean() + cfg.gp_weight * gp
        self.opt_D.zero_grad()
        d_loss.backward()
        self.opt_D.step()
        # generator
        for p in self.D.parameters():
            p.requires_grad = False
        z = torch.randn(b, cfg.z_dim, device=self.device)
        fake = self.G(z, res=res, alpha=alpha, update_w_avg=True)
        g_loss = -self.D(fake, alpha=alpha).mean()
        self.opt_G.zero_grad()
        g_loss.backward()
        self.opt_G.step()
        for p in self.D.parameters():
            p.requires_grad = True
        self.update_ema(b)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "gp": gp.item()}

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        beta = 0.5 ** (images / max(self.cfg.ema_half_life_kimg * 1000.0, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(beta * p_ema + (1 - beta) * p)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)
