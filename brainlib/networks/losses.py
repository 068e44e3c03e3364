"""GAN objectives as objects the trainer calls with the networks and a batch (it never
looks inside): WGAN-GP with ProGAN's drift term (the original recipe), the non-saturating
logistic loss with R1 (StyleGAN's), and the relativistic pairing loss with R1 and R2
(R3GAN's). Each applies DiffAugment to real and fake images before D when the config asks
for it.

Penalties are lazy (StyleGAN2): the trainer passes `regularise=True` every `reg_every`
critic steps with `reg_scale=reg_every`. Penalty gradients are taken in float32 with
autocast switched off, because a second-order graph in bf16/fp16 is too coarse.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainlib.config import ConfigError, RunConfig
from brainlib.networks.augment import DEFAULT_POLICY, AdaptiveAugment, augment


def input_gradient(D: nn.Module, x: Tensor, label: Tensor | None, alpha: float | Tensor) -> Tensor:
    """d sum(D(x)) / dx with a graph for the penalty's own backward. Autocast is off for the
    forward and the gradient alike (autograd would otherwise run the backward in bf16 too)."""
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        (grad,) = torch.autograd.grad(D(x, label, alpha=alpha).float().sum(), x, create_graph=True)
    return grad


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor, label: Tensor | None, *,
                     alpha: float | Tensor = 1.0) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean over the batch of (||grad D(x_hat)|| - 1)^2 at
    x_hat uniformly between each real and fake image."""
    t = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = torch.lerp(real.detach().float(), fake.detach().float(), t)
    grad = input_gradient(D, x_hat, label, alpha)
    return (torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1).square().mean()


def r1_penalty(D: nn.Module, real: Tensor, label: Tensor | None, *, alpha: float | Tensor = 1.0) -> Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ||grad D(real)||^2."""
    return input_gradient(D, real, label, alpha).square().sum(dim=(1, 2, 3)).mean()


class Loss:
    """The interface: critic_loss for the D step, generator_loss for the G step; each returns
    (loss to backpropagate, dict of detached float tensors to log)."""

    def __init__(self, augment_policy: str | None = None):
        self.augment_policy = augment_policy
        self.adaptive: AdaptiveAugment | None = None  # make_loss sets it for augment="adaptive"

    def augment_for_critic(self, x: Tensor) -> Tensor:
        """What D sees: DiffAugment (fixed or adaptive probability) when configured."""
        if self.adaptive is not None:
            return self.adaptive(x)
        return augment(x, self.augment_policy) if self.augment_policy else x

    def critic_scores(self, D: nn.Module, real: Tensor, fake: Tensor, label: Tensor | None,
                      alpha: float | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The (augmented) real and fake batches and D's float32 scores of each."""
        real, fake = self.augment_for_critic(real), self.augment_for_critic(fake.detach())
        d_real, d_fake = D(real, label, alpha=alpha).float(), D(fake, label, alpha=alpha).float()
        if self.adaptive is not None:
            self.adaptive.observe(d_real)
        return real, fake, d_real, d_fake

    def critic_loss(self, D, real, fake, label, *, alpha=1.0, regularise=True, reg_scale=1.0):
        raise NotImplementedError

    def generator_loss(self, D, fake, label, *, alpha=1.0, real=None):
        """`real` is the batch the fakes are paired with; only relativistic losses read it."""
        raise NotImplementedError


class WGANGP(Loss):
    """ProGAN's loss: critic D(fake) - D(real) + drift * D(real)^2 + gp_weight * GP;
    generator -D(fake). `wdist` = mean D(real) - mean D(fake) estimates the Wasserstein distance."""

    def __init__(self, gp_weight: float = 10.0, drift: float = 0.001, *, augment_policy: str | None = None):
        super().__init__(augment_policy)
        self.gp_weight, self.drift = gp_weight, drift

    def critic_loss(self, D: nn.Module, real: Tensor, fake: Tensor, label: Tensor | None, *,
                    alpha: float | Tensor = 1.0, regularise: bool = True,
                    reg_scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        real, fake, d_real, d_fake = self.critic_scores(D, real, fake, label, alpha)
        loss = d_fake.mean() - d_real.mean() + self.drift * d_real.square().mean()
        stats = {"d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach(),
                 "wdist": (d_real.mean() - d_fake.mean()).detach()}
        if regularise and self.gp_weight > 0:
            gp = gradient_penalty(D, real, fake, label, alpha=alpha)
            loss = loss + self.gp_weight * reg_scale * gp
            stats["gp"] = gp.detach()
        stats["d_loss"] = loss.detach()
        return loss, stats

    def generator_loss(self, D: nn.Module, fake: Tensor, label: Tensor | None, *,
                       alpha: float | Tensor = 1.0, real: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        loss = -D(self.augment_for_critic(fake), label, alpha=alpha).float().mean()
        return loss, {"g_loss": loss.detach()}


class LogisticR1(Loss):
    """StyleGAN's loss: critic softplus(D(fake)) + softplus(-D(real)) + gamma/2 * R1;
    non-saturating generator softplus(-D(fake))."""

    penalise_fakes = False  # R2, the same zero-centred penalty on fakes

    def __init__(self, gamma: float = 1.0, *, augment_policy: str | None = None):
        super().__init__(augment_policy)
        self.gamma = gamma

    def adversarial(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()

    def critic_loss(self, D: nn.Module, real: Tensor, fake: Tensor, label: Tensor | None, *,
                    alpha: float | Tensor = 1.0, regularise: bool = True,
                    reg_scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        real, fake, d_real, d_fake = self.critic_scores(D, real, fake, label, alpha)
        loss = self.adversarial(d_real, d_fake)
        stats = {"d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
        if regularise and self.gamma > 0:
            penalties = {"r1": r1_penalty(D, real, label, alpha=alpha)}
            if self.penalise_fakes:
                penalties["r2"] = r1_penalty(D, fake, label, alpha=alpha)
            loss = loss + self.gamma / 2 * reg_scale * sum(penalties.values())
            stats |= {k: v.detach() for k, v in penalties.items()}
        stats["d_loss"] = loss.detach()
        return loss, stats

    def generator_loss(self, D: nn.Module, fake: Tensor, label: Tensor | None, *,
                       alpha: float | Tensor = 1.0, real: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        loss = F.softplus(-D(self.augment_for_critic(fake), label, alpha=alpha).float()).mean()
        return loss, {"g_loss": loss.detach()}


class RelativisticR1R2(LogisticR1):
    """The relativistic pairing GAN with both zero-centred penalties (Huang et al. 2024,
    arXiv 2501.05441, "R3GAN"): critic softplus(D(fake) - D(real)) over pairs, generator
    softplus(D(real) - D(fake)), plus gamma/2 * (R1 on reals + R2 on fakes). Each image is
    judged against a real one, not against a fixed threshold, and the two penalties keep the
    game convergent near both distributions."""

    penalise_fakes = True

    def adversarial(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return F.softplus(d_fake - d_real).mean()

    def generator_loss(self, D: nn.Module, fake: Tensor, label: Tensor | None, *,
                       alpha: float | Tensor = 1.0, real: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        if real is None:
            raise ValueError("the relativistic loss pairs each fake with a real image: pass real")
        d_real = D(self.augment_for_critic(real), label, alpha=alpha).float().detach()
        loss = F.softplus(d_real - D(self.augment_for_critic(fake), label, alpha=alpha).float()).mean()
        return loss, {"g_loss": loss.detach()}


def make_loss(cfg: RunConfig, device: torch.device | str = "cpu") -> Loss:
    """The loss `cfg.loss` names, with DiffAugment on D's inputs when cfg.augment is "diffaugment",
    or applied with an adaptive probability when it is "adaptive"."""
    policy = DEFAULT_POLICY if cfg.augment == "diffaugment" else None
    losses = {"wgan-gp": lambda: WGANGP(cfg.gp_weight, cfg.drift, augment_policy=policy),
              "logistic-r1": lambda: LogisticR1(cfg.r1_gamma, augment_policy=policy),
              "rpgan-r1r2": lambda: RelativisticR1R2(cfg.r1_gamma, augment_policy=policy)}
    if cfg.loss not in losses:
        raise ConfigError(f"loss {cfg.loss!r} is not one of {', '.join(losses)}")
    loss = losses[cfg.loss]()
    if cfg.augment == "adaptive":
        loss.adaptive = AdaptiveAugment(device=device)
    return loss
