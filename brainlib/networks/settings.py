"""The settings a generator and critic are built from: a run's architecture, apart from its
schedule, loss and learning rates.

`mapping_lr_mul` is the mapping network's equalised-learning-rate multiplier
(layers.EqualLinear): the weights are stored scaled by it, so it is part of what they mean.
A run fixes it when it starts (`mapping_lr / lr`, StyleGAN's 0.01), its checkpoints record
it, and a resume with other learning rates keeps it; the optimiser's mapping group runs at
`mapping_lr / mapping_lr_mul` (training/trainer.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from brainlib.config import ConfigError, ModelClasses, RunConfig


@dataclass(frozen=True)
class NetworkSettings(ModelClasses):
    arch: str  # stylegan1 or stylegan2
    class_name: str  # AD, NC, or both (class-conditional)
    image_size: int
    z_dim: int
    w_dim: int
    mapping_layers: int
    channels: dict[int, int]  # width per resolution
    mbstd_group: int
    noise_max_res: int | None  # noise inputs up to this resolution; None: every layer
    composite: bool  # tissue through a learned mask over black (stylegan1.composite_on_black)
    mapping_lr_mul: float
    critic_highpass: bool = False  # a second critic head on the finest band (stylegan1.HighpassHead)
    highpass_unshuffle: bool = False  # that head reads 2x2 pixel blocks at half the resolution
    lowpass_from: int | None = None  # Kaiser low-pass resampling from this resolution up (stylegan1.has_lowpass)
    output_lowpass: bool = False  # the full-size image through the loader's Lanczos response (stylegan1.Generator)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": {str(r): c for r, c in self.channels.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        # settings added later have defaults that build what the older code built
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if not required <= set(d) <= names:
            raise ConfigError(f"network settings must name {', '.join(sorted(required))} "
                              f"(and may name {', '.join(sorted(names - required))}); got {', '.join(sorted(d))}")
        return cls(**{**d, "channels": {int(r): int(c) for r, c in d["channels"].items()}})

    def changed_from(self, other: NetworkSettings) -> dict[str, tuple[Any, Any]]:
        """{setting: (other's, this one's)} for the settings that shape the weights' tensors:
        all but the mapping multiplier, which follows the learning rates."""
        return {f.name: (getattr(other, f.name), getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "mapping_lr_mul" and getattr(other, f.name) != getattr(self, f.name)}


def network_settings(cfg: RunConfig) -> NetworkSettings:
    """The networks `cfg` describes, for a run that starts with its learning rates."""
    return NetworkSettings(
        arch=cfg.arch, class_name=cfg.class_name, image_size=cfg.image_size, z_dim=cfg.z_dim, w_dim=cfg.w_dim,
        mapping_layers=cfg.mapping_layers, channels=dict(cfg.channels), mbstd_group=cfg.mbstd_group,
        noise_max_res=cfg.noise_max_res, composite=cfg.composite, mapping_lr_mul=cfg.mapping_lr / cfg.lr,
        critic_highpass=cfg.critic_highpass, highpass_unshuffle=cfg.highpass_unshuffle,
        lowpass_from=cfg.lowpass_from,
        output_lowpass=cfg.output_lowpass)
