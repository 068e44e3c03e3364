"""A smoke conditional (class both) run trained on the tiny phantom, for the synthetic-data tests."""
from __future__ import annotations

from pathlib import Path


def train_smoke_both(out_root: Path, phantom: Path, cache_dir: Path) -> str:
    """Train `smoke-both` under out_root (about 15 s on two cores) and return its run name."""
    from brainlib.config import preset
    from brainlib.data.dataset import load_dataset
    from brainlib.training.trainer import train

    cfg = preset("smoke", class_name="both", run="smoke-both", out_root=str(out_root), data_root=str(phantom))
    train(cfg, dataset=load_dataset(phantom, splits=["train"], image_size=16, cache_dir=cache_dir, progress=False))
    return cfg.run
