"""Smoke runs trained on the tiny phantom for the synthetic-data tests: a conditional (class both)
StyleGAN, and the diffusion family's runs."""
from __future__ import annotations

from pathlib import Path


def train_smoke(out_root: Path, phantom: Path, cache_dir: Path, *, preset_name: str = "smoke",
                class_name: str = "both") -> str:
    """Train `<preset_name>-<class_name>` under out_root on the phantom's train split and return its run
    name (`smoke-both`: about 15 s on two cores)."""
    from brainlib.config import preset
    from brainlib.data.dataset import load_dataset
    from brainlib.training.trainer import train

    cfg = preset(preset_name, class_name=class_name, run=f"{preset_name}-{class_name}", out_root=str(out_root),
                 data_root=str(phantom))
    train(cfg, dataset=load_dataset(phantom, classes=tuple(cfg.classes), splits=["train"], image_size=16,
                                    cache_dir=cache_dir, progress=False))
    return cfg.run

