"""Differentiable augmentation (DiffAugment, Zhao et al. 2020, arXiv 2006.10738) for small
datasets: the same random transforms are applied to real AND generated images before the
discriminator, so D cannot overfit the few reals and the transforms do not leak into what G
makes. Every op is differentiable in the image, draws its randomness with torch on the
image's device, and works on single-channel images in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_POLICY = "color,translation,cutout"


def brightness(x: Tensor) -> Tensor:
    """Add one uniform offset in [-0.5, 0.5) per image."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)


def contrast(x: Tensor) -> Tensor:
    """Scale each image about its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125, pad: str = "edge") -> Tensor:
    """Shift each image by up to `ratio` of its size in x and y. Uncovered pixels repeat the
    edge (`pad="edge"`, the black background of a brain slice) or are 0 (`pad="zero"`)."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).reshape(1, h, 1) + ty  # [B, H, 1]
    cols = torch.arange(w, device=x.device).reshape(1, 1, w) + tx  # [B, 1, W]
    if pad == "zero":
        inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    elif pad != "edge":
        raise ValueError(f"translation padding {pad!r} must be 'edge' or 'zero'")
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(b, 1, h * w)
    out = x.reshape(b, x.shape[1], h * w).gather(2, index.expand(-1, x.shape[1], -1)).reshape(x.shape)
    return out * inside if pad == "zero" else out


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` times the image size at a random place per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).reshape(1, h, 1) - cy + ch // 2
    cols = torch.arange(w, device=x.device).reshape(1, 1, w) - cx + cw // 2
    hole = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


OPS = {"color": [brightness, contrast], "brightness": [brightness], "contrast": [contrast],
       "translation": [translation], "cutout": [cutout]}


def augment(x: Tensor, policy: str = DEFAULT_POLICY) -> Tensor:
    """Apply the comma-separated `policy` ("color", "translation", "cutout", or
    "brightness"/"contrast" alone) to a batch [B, C, H, W]; "" or "none" is the identity."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        if name == "none":
            continue
        if name not in OPS:
            raise ValueError(f"augmentation {name!r} is not one of {', '.join(OPS)}")
        for op in OPS[name]:
            x = op(x)
    return x


class AdaptiveAugment:
    """Augmentation whose strength follows the critic's overfitting (ADA, Karras et al. 2020,
    arXiv 2006.06676), with the DiffAugment ops above: each image is augmented with
    probability p. Every `interval` critic steps, p moves by (images seen) / `speed_images`
    up when the share of reals the critic scores positive, E[sign D(real)], is above `target`
    and down when below, so p stays 0 while the critic is not overfitting, as in a long run
    on plenty of data, and rises on the few hundred slices of a small study.
    Everything stays on the device: no host sync in the training step."""

    def __init__(self, policy: str = DEFAULT_POLICY, *, target: float = 0.6, speed_images: int = 20_000,
                 interval: int = 4, device: torch.device | str = "cpu"):
        self.policy, self.target, self.speed_images, self.interval = policy, target, speed_images, interval
        self.p = torch.zeros((), device=device)
        self.sign_sum = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)
        self.calls = 0

    def __call__(self, x: Tensor) -> Tensor:
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
        return torch.where(chosen, augment(x, self.policy), x)

    def observe(self, d_real: Tensor) -> None:
        """Record the critic's scores of (augmented) reals; adjust p every `interval` calls."""
        self.sign_sum += d_real.detach().float().sign().sum()
        self.count += d_real.shape[0]
        self.calls += 1
        if self.calls % self.interval == 0:
            overfitting = self.sign_sum / self.count - self.target
            self.p.copy_((self.p + overfitting.sign() * self.count / self.speed_images).clamp(0.0, 1.0))
            self.sign_sum.zero_()
            self.count.zero_()

    def state_dict(self) -> dict[str, Tensor]:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count,
                "calls": torch.tensor(self.calls)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name in ("p", "sign_sum", "count"):
            getattr(self, name).copy_(state[name])
        self.calls = int(state["calls"])
