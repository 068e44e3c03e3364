"""Classifier two-sample test (C2ST): can a small CNN tell two image sets apart?

Train a classifier on half of set A against half of set B, score it on the
other halves. Accuracy 0.5 means the sets are indistinguishable to it; 1.0
means every image gives itself away. Reported as the mean over a few seeds,
beside the floor (real training images against real held-out images), which is
what 0.5 looks like for finite samples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from brainlib.data.dataset import to_model_input
from brainlib.eval.features import fit

C2ST_SIZE = 64  # images are compared at most at this size: enough for texture, fast on a CPU


class TwoSampleCritic(nn.Module):
    """Four strided conv layers, global average pool, one logit."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers, c_in = [], 1
        for c_out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def _prepare(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images at most C2ST_SIZE px (the shared conversion of brainlib.eval.features)."""
    return to_model_input(images, min(images.shape[-1], C2ST_SIZE))


def c2st_accuracy(a: torch.Tensor, b: torch.Tensor, *, seed: int = 0, epochs: int = 8,
                  batch_size: int = 64, lr: float = 2e-3) -> float:
    """Held-out accuracy of a CNN trained to separate set `a` (label 0) from `b` (label 1).

    Both sets are cut to the same size so that chance is exactly 0.5; each is
    split in half by a seeded permutation, one half to train, one to score.
    After training, the BatchNorm statistics are re-estimated on the whole training half:
    with 120 images a side, 8 epochs are 16 steps, after which the running statistics
    still carried their initial values, and a classifier that had separated the sets
    scored 0.5 on the held-out halves.
    """
    gen = torch.Generator().manual_seed(seed)
    n = min(len(a), len(b))
    if n < 8:
        raise ValueError(f"C2ST needs at least 8 images per set, got {len(a)} and {len(b)}")
    a = _prepare(a)[torch.randperm(len(a), generator=gen)[:n]]
    b = _prepare(b)[torch.randperm(len(b), generator=gen)[:n]]
    half = n // 2
    x_train = torch.cat([a[:half], b[:half]])
    y_train = torch.cat([torch.zeros(half), torch.ones(half)])
    x_test = torch.cat([a[half:], b[half:]])
    y_test = torch.cat([torch.zeros(n - half), torch.ones(n - half)])

    torch.manual_seed(seed)
    model = TwoSampleCritic()
    fit(model, len(x_train), lambda idx: F.binary_cross_entropy_with_logits(model(x_train[idx]), y_train[idx]),
        gen=gen, epochs=epochs, batch_size=batch_size, lr=lr)
    _recalibrate_batchnorm(model, x_train, batch_size)
    with torch.no_grad():
        logits = torch.cat([model(x_test[i:i + 256]) for i in range(0, len(x_test), 256)])
    return float(((logits > 0).float() == y_test).float().mean())


def _recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace BatchNorm running statistics by their average over `x` in batches; leave the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            if len(x) - i > 1:  # one image has no batch statistics
                model(x[i:i + batch_size])
    model.eval()


def half_resolution(images: torch.Tensor) -> torch.Tensor:
    """2x2 area averaging: what is left when pixel-scale texture is removed."""
    return F.avg_pool2d(torch.as_tensor(images).float(), 2)


def c2st(generated: torch.Tensor, real_train: torch.Tensor, real_heldout: torch.Tensor, *,
         seeds: tuple[int, ...] = (0, 1, 2), epochs: int = 8) -> dict[str, float]:
    """C2ST of generated vs real training images, with its real-vs-real floor.

    The floor uses real training images against real held-out images at the
    same sample size, so both numbers carry the same finite-sample noise.
    Run it on `half_resolution` images too: a high full-size figure with a low half-size
    one says the texture is wrong and the anatomy is not.
    """
    n = min(len(generated), len(real_train), len(real_heldout))
    gen_acc = [c2st_accuracy(generated[:n], real_train, seed=s, epochs=epochs) for s in seeds]
    floor_acc = [c2st_accuracy(real_heldout[:n], real_train, seed=s, epochs=epochs) for s in seeds]
    value, floor = sum(gen_acc) / len(gen_acc), sum(floor_acc) / len(floor_acc)
    spread = float(torch.tensor(gen_acc).std()) if len(seeds) > 1 else 0.0
    return {"c2st": value, "c2st_floor": floor, "c2st_std": spread, "c2st_n": n, "c2st_seeds": len(seeds)}
