"""The generator and critic a config names: StyleGAN v1 (`models.py`, the original recipe) or
StyleGAN2 (`stylegan2.py`), by `cfg.arch`."""
from __future__ import annotations

from brainlib.config import RunConfig
from brainlib.networks.stylegan1 import Discriminator, Generator, StyleGenerator
from brainlib.networks.stylegan2 import ResidualDiscriminator, SkipGenerator

GENERATORS = {"stylegan1": Generator, "stylegan2": SkipGenerator}
DISCRIMINATORS = {"stylegan1": Discriminator, "stylegan2": ResidualDiscriminator}


def build_generator(cfg: RunConfig) -> StyleGenerator:
    return GENERATORS[cfg.arch](cfg)


def build_discriminator(cfg: RunConfig) -> Discriminator:
    return DISCRIMINATORS[cfg.arch](cfg)


def parameter_counts(cfg: RunConfig) -> dict[str, int]:
    """Parameters of the mapping network, the synthesis network, G and D."""
    G, D = build_generator(cfg), build_discriminator(cfg)
    mapping = sum(p.numel() for p in G.mapping.parameters())
    total_g = sum(p.numel() for p in G.parameters())
    return {"mapping": mapping, "synthesis": total_g - mapping, "generator": total_g,
            "discriminator": sum(p.numel() for p in D.parameters())}
