"""What older brainlib versions wrote, read as this one writes it: the one place that knows
an old checkpoint's metadata (as stylegan2-ada-pytorch's legacy.py)."""
from __future__ import annotations

from brainlib.config import RunConfig
from brainlib.networks.settings import network_settings


def upgrade_meta(meta: dict) -> dict:
    """A checkpoint's metadata as format 2 has it: the optimisers' state under "optimisers"
    (format 1 spelt it "optimizers") and the network settings under "networks".

    Format 1 held the run's config and, from a later version, "model_lrs": the learning
    rates the run started with, whose ratio gave the mapping network's multiplier. Without
    model_lrs the config's rates are taken (the ones the run started with, unless a resume
    changed them). Metadata without a config (a bare .pt file's) keeps what it has."""
    if meta.get("format_version", 1) >= 2:
        return meta
    meta = dict(meta)
    if "optimizers" in meta:
        meta["optimisers"] = meta.pop("optimizers")
    lrs = meta.pop("model_lrs", None) or {}
    if "networks" not in meta and "config" in meta:
        cfg = RunConfig.from_dict(meta["config"]).replace(**lrs)
        meta["networks"] = network_settings(cfg).to_dict()
    return meta
