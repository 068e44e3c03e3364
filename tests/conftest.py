"""Shared fixtures: a tiny embedded dataset built once per session, and a scratch cache."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # plots in tests never need a display
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as brainlib/__init__.py, before torch loads

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))  # the test machine has 2 shared cores

TINY_PHANTOM_PER_CLASS = 24


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> os.PathLike:
    """A small phantom (24 images per class, 80/20 train/test, 256x240 PNGs) built once per
    session in a temporary folder; returns its AD_NC root."""
    from brainlib.data.phantom import build_phantom
    out = tmp_path_factory.mktemp("phantom")
    return build_phantom(out=out, n_per_class=TINY_PHANTOM_PER_CLASS, seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_dataset_cache(tmp_path_factory) -> os.PathLike:
    """A cache folder for brainlib.data.load_dataset(..., cache_dir=...) outside the workbook."""
    return tmp_path_factory.mktemp("dataset_cache")
