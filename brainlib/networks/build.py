"""The generator and critic that network settings name: StyleGAN v1 (`stylegan1.py`, the
original recipe) or StyleGAN2 (`stylegan2.py`), by `settings.arch`; the sizes of a run's networks."""
from __future__ import annotations

from brainlib.config import RunConfig
from brainlib.networks.diffusion import build_denoiser
from brainlib.networks.settings import NetworkSettings, network_settings
from brainlib.networks.stylegan1 import Discriminator, Generator, StyleGenerator
from brainlib.networks.stylegan2 import ResidualDiscriminator, SkipGenerator

GENERATORS = {"stylegan1": Generator, "stylegan2": SkipGenerator}
DISCRIMINATORS = {"stylegan1": Discriminator, "stylegan2": ResidualDiscriminator}


def build_generator(settings: NetworkSettings) -> StyleGenerator:
    return GENERATORS[settings.arch](settings)


def build_discriminator(settings: NetworkSettings) -> Discriminator:
    return DISCRIMINATORS[settings.arch](settings)


def parameter_counts(settings: NetworkSettings) -> dict[str, int]:
    """Parameters of the mapping network, the synthesis network, G and D."""
    G, D = build_generator(settings), build_discriminator(settings)
    mapping = sum(p.numel() for p in G.mapping.parameters())
    total_g = sum(p.numel() for p in G.parameters())
    return {"mapping": mapping, "synthesis": total_g - mapping, "generator": total_g,
            "discriminator": sum(p.numel() for p in D.parameters())}


def model_parameter_counts(cfg: RunConfig) -> dict[str, int]:
    """Parameters per network of cfg's model: a StyleGAN's (parameter_counts), or a diffusion
    model's one network, its denoiser (the U-Net)."""
    if cfg.diffusion:
        return {"denoiser": sum(p.numel() for p in build_denoiser(cfg).parameters())}
    return parameter_counts(network_settings(cfg))
