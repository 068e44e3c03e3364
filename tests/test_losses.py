"""WGAN-GP and logistic-R1 on critics with known answers; DiffAugment ops."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brainlib.config import ConfigError, preset
from brainlib.networks.augment import DEFAULT_POLICY, augment, brightness, contrast, cutout, translation
from brainlib.networks.losses import WGANGP, LogisticR1, gradient_penalty, make_loss, r1_penalty
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Discriminator


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class LinearCritic(nn.Module):
    """D(x) = <a, x>: its gradient is `a` everywhere, so ||grad|| = ||a||."""

    def __init__(self, res=8):
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, 1, res, res) * 0.3)

    def forward(self, img, label=None, *, alpha=1.0):
        return F.linear(img.flatten(1), self.a.flatten(1)).squeeze(1)


class QuadraticCritic(nn.Module):
    """D(x) = c/2 ||x||^2: its gradient is c x, so ||grad||^2 = c^2 ||x||^2."""

    def __init__(self, c=0.7):
        super().__init__()
        self.c = c

    def forward(self, img, label=None, *, alpha=1.0):
        return 0.5 * self.c * img.square().sum(dim=(1, 2, 3))


def test_gradient_penalty_of_a_linear_critic_is_known():
    D = LinearCritic()
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    norm = D.a.norm().item()
    assert gradient_penalty(D, real, fake, None).item() == pytest.approx((norm - 1) ** 2, rel=1e-5)


@pytest.mark.parametrize("reg_scale", [1.0, 4.0])
def test_wgan_gp_critic_loss_is_the_sum_of_its_terms(reg_scale):
    D = LinearCritic()
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    loss, stats = WGANGP(gp_weight=10.0, drift=0.001).critic_loss(
        D, real, fake, None, alpha=1.0, regularise=True, reg_scale=reg_scale)
    d_real, d_fake = D(real).detach(), D(fake).detach()
    gp = (D.a.norm().item() - 1) ** 2
    expected = d_fake.mean() - d_real.mean() + 0.001 * d_real.square().mean() + 10 * reg_scale * gp
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["gp"].item() == pytest.approx(gp, rel=1e-5)
    assert stats["wdist"].item() == pytest.approx((d_real.mean() - d_fake.mean()).item(), rel=1e-5)
    assert stats["d_loss"].item() == pytest.approx(loss.item())
    assert all(not v.requires_grad and v.ndim == 0 for v in stats.values())
    assert set(stats) == {"d_loss", "gp", "d_real", "d_fake", "wdist"}


def test_wgan_gp_without_regularisation_is_critic_plus_drift_only():
    D = LinearCritic()
    real, fake = torch.randn(4, 1, 8, 8) + 3, torch.randn(4, 1, 8, 8)
    loss, stats = WGANGP(drift=0.5).critic_loss(D, real, fake, None, alpha=1.0, regularise=False, reg_scale=1.0)
    d_real, d_fake = D(real).detach(), D(fake).detach()
    expected = d_fake.mean() - d_real.mean() + 0.5 * d_real.square().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert "gp" not in stats
    # The drift term alone pulls D(real) to 0: its gradient is 2 * drift * mean(D(real) * real).
    loss, _ = WGANGP(drift=0.5).critic_loss(D, real, real, None, alpha=1.0, regularise=False, reg_scale=1.0)
    (grad,) = torch.autograd.grad(loss, D.a)
    torch.testing.assert_close(grad, (2 * 0.5 * d_real[:, None, None, None] * real).mean(0, keepdim=True))


def test_critic_loss_does_not_backpropagate_into_the_generator():
    D = LinearCritic()
    fake = torch.randn(4, 1, 8, 8, requires_grad=True)
    loss, _ = WGANGP().critic_loss(D, torch.randn(4, 1, 8, 8), fake, None, alpha=1.0, regularise=True, reg_scale=1.0)
    loss.backward()
    assert fake.grad is None and D.a.grad is not None


def test_generator_losses():
    D = LinearCritic()
    fake = torch.randn(4, 1, 8, 8, requires_grad=True)
    loss, stats = WGANGP().generator_loss(D, fake, None, alpha=1.0)
    assert loss.item() == pytest.approx(-D(fake).mean().item(), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(fake.grad, -D.a.detach().expand(4, 1, 8, 8) / 4)
    loss, stats = LogisticR1().generator_loss(D, fake, None, alpha=1.0)
    assert loss.item() == pytest.approx(F.softplus(-D(fake)).mean().item(), rel=1e-6)
    assert stats["g_loss"].item() == pytest.approx(loss.item())


def test_r1_of_a_quadratic_critic_is_known():
    D, gamma, c = QuadraticCritic(0.7), 3.0, 0.7
    real, fake = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    r1 = c**2 * real.square().sum(dim=(1, 2, 3)).mean()
    assert r1_penalty(D, real, None).item() == pytest.approx(r1.item(), rel=1e-5)
    loss, stats = LogisticR1(gamma).critic_loss(D, real, fake, None, alpha=1.0, regularise=True, reg_scale=2.0)
    base = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
    assert loss.item() == pytest.approx((base + gamma / 2 * 2.0 * r1).item(), rel=1e-5)
    assert stats["r1"].item() == pytest.approx(r1.item(), rel=1e-5)
    loss, stats = LogisticR1(gamma).critic_loss(D, real, fake, None, alpha=1.0, regularise=False, reg_scale=2.0)
    assert loss.item() == pytest.approx(base.item(), rel=1e-5) and "r1" not in stats


def test_penalty_is_float32_under_bf16_autocast():
    D = LinearCritic()
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    exact = (D.a.norm().item() - 1) ** 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert D(real).dtype == torch.bfloat16  # the critic itself does run in bf16 here
        loss, stats = WGANGP().critic_loss(D, real, fake, None, alpha=1.0, regularise=True, reg_scale=1.0)
    assert stats["gp"].dtype == torch.float32 and loss.dtype == torch.float32
    assert stats["gp"].item() == pytest.approx(exact, rel=1e-5)  # bf16 would be off by ~1e-2
    loss.backward()
    assert torch.isfinite(D.a.grad).all()


@pytest.mark.parametrize("conditional", [False, True])
def test_a_few_wgan_gp_steps_teach_the_critic_constant_reals_from_noise(conditional):
    cfg = preset("smoke", class_name="both" if conditional else "AD")
    D = Discriminator(network_settings(cfg))
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    loss_fn = make_loss(cfg)
    label = torch.arange(8) % 2 if conditional else None
    losses, wdists = [], []
    for step in range(15):
        real = torch.full((8, 1, 8, 8), 0.5)
        fake = torch.randn(8, 1, 8, 8)
        loss, stats = loss_fn.critic_loss(D, real, fake, label, alpha=1.0, regularise=step % 2 == 0, reg_scale=2.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(stats["d_loss"].item() - (20.0 * stats["gp"].item() if "gp" in stats else 0.0))
        wdists.append(stats["wdist"].item())
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    assert wdists[-1] > wdists[0] + 0.1


def test_make_loss_follows_the_config():
    wgan = make_loss(preset("smoke", gp_weight=5.0, drift=0.01))
    assert isinstance(wgan, WGANGP) and (wgan.gp_weight, wgan.drift, wgan.augment_policy) == (5.0, 0.01, None)
    r1 = make_loss(preset("smoke", loss="logistic-r1", r1_gamma=2.0, augment="diffaugment"))
    assert isinstance(r1, LogisticR1) and r1.gamma == 2.0 and r1.augment_policy == DEFAULT_POLICY
    with pytest.raises(ConfigError, match="loss 'hinge'"):
        make_loss(preset("smoke").replace(loss="hinge"))


def test_diffaugment_is_applied_to_both_real_and_fake_inside_the_loss():
    seen = []

    class Spy(LinearCritic):
        def forward(self, img, label=None, *, alpha=1.0):
            seen.append(img.detach().clone())
            return super().forward(img)

    loss_fn = make_loss(preset("smoke", augment="diffaugment"))
    real, fake = torch.ones(4, 1, 8, 8), -torch.ones(4, 1, 8, 8)
    loss_fn.critic_loss(Spy(), real, fake, None, alpha=1.0, regularise=False, reg_scale=1.0)
    assert len(seen) == 2 and not torch.equal(seen[0], real) and not torch.equal(seen[1], fake)
    fake = fake.clone().requires_grad_(True)
    loss_fn.generator_loss(Spy(), fake, None, alpha=1.0)[0].backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# augment.py


def test_brightness_and_contrast_are_per_image_affine():
    x = torch.randn(6, 1, 8, 8)
    shift = brightness(x) - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)
    assert ((shift >= -0.5) & (shift < 0.5)).all()
    y = contrast(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3), keepdim=True), mean, rtol=1e-5, atol=1e-5)
    factor = (y - mean) / (x - mean)
    assert torch.allclose(factor, factor[:, :, :1, :1].expand_as(factor), atol=1e-4)
    assert ((factor >= 0.5 - 1e-5) & (factor < 1.5 + 1e-5)).all()


def shifted(img, dy, dx):
    """img [H, W] moved so out[i, j] = img[i + dy, j + dx], zero outside."""
    h, w = img.shape
    out = torch.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[i, j] = img[i + dy, j + dx]
    return out


def test_translation_shifts_by_at_most_the_ratio():
    x = torch.arange(1, 65, dtype=torch.float32).reshape(1, 1, 8, 8).repeat(10, 1, 1, 1)
    out = translation(x, ratio=0.25, pad="zero")
    for b in range(10):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(out[b, 0], shifted(x[b, 0], dy, dx))]
        assert len(matches) == 1
    edge = translation(torch.full((4, 1, 8, 8), -1.0), ratio=0.25, pad="edge")
    assert torch.equal(edge, torch.full((4, 1, 8, 8), -1.0))  # a black border stays black
    with pytest.raises(ValueError, match="'reflect'"):
        translation(x, pad="reflect")


def test_cutout_zeroes_one_rectangle_of_at_most_half_size():
    out = cutout(torch.ones(20, 1, 8, 8), ratio=0.5)
    for img in out[:, 0]:
        holes = (img == 0).nonzero()
        assert 4 <= len(holes) <= 16
        (r0, c0), (r1, c1) = holes.min(0).values.tolist(), holes.max(0).values.tolist()
        assert len(holes) == (r1 - r0 + 1) * (c1 - c0 + 1)  # a solid rectangle


def test_augment_policy_is_differentiable_and_validated():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    y = augment(x, DEFAULT_POLICY)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(augment(x, "none"), x) and torch.equal(augment(x, ""), x)
    with pytest.raises(ValueError, match="augmentation 'flip'"):
        augment(x, "color,flip")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(augment(x.detach().bfloat16(), DEFAULT_POLICY).float()).all()
    assert math.isfinite(augment(x.detach(), "translation,cutout").sum().item())


def test_adaptive_augment_probability_follows_the_critics_overfitting():
    from brainlib.networks.augment import AdaptiveAugment
    ada = AdaptiveAugment(target=0.6, speed_images=100, interval=2)
    x = torch.randn(8, 1, 16, 16)
    assert torch.equal(ada(x), x)  # p starts at 0: nothing is augmented
    ada.observe(torch.ones(10))  # every real scored positive: overfitting
    assert ada.p.item() == 0.0  # adjusted only every `interval` calls
    ada.observe(torch.ones(10))
    assert ada.p.item() == pytest.approx(20 / 100)  # up by the images seen / speed
    state = {k: v.clone() for k, v in ada.state_dict().items()}
    for _ in range(20):
        ada.observe(torch.ones(10))
    assert ada.p.item() == 1.0  # clamped
    assert (ada(x) != x).flatten(1).any(dim=1).all()  # p = 1: every image augmented
    ada.observe(-torch.ones(10))
    ada.observe(torch.tensor([1.0] * 5 + [-1.0] * 5))  # half positive, below the target
    assert ada.p.item() == pytest.approx(0.8)
    ada.load_state_dict(state)
    assert ada.p.item() == pytest.approx(0.2) and ada.calls == 2


def test_adaptive_loss_observes_the_real_scores_and_augments_both_batches():
    cfg = preset("smoke", augment="adaptive", loss="logistic-r1")
    loss_fn = make_loss(cfg)
    assert loss_fn.adaptive is not None and make_loss(preset("smoke")).adaptive is None
    loss_fn.adaptive.p.fill_(1.0)
    D = LinearCritic(16)
    real, fake = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)
    seen = []
    loss_fn.critic_loss(lambda x, label, alpha: seen.append(x) or D(x), real, fake, None, regularise=False)
    assert not torch.equal(seen[0], real) and not torch.equal(seen[1], fake)
    assert loss_fn.adaptive.count.item() == 6
