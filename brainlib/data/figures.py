"""Figures about a dataset (for 01_data): sample grids, intensity histograms, class means
and their difference. Generated-image grids and loss curves live in plots.py."""
from __future__ import annotations

import numpy as np

from brainlib.config import CLASS_LABELS
from brainlib.data.dataset import SliceDataset
from brainlib.plots import CLASS_COLOURS, pyplot



def _class_indices(dataset: SliceDataset) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(dataset.labels == label) for name, label in sorted(CLASS_LABELS.items())
            if (dataset.labels == label).any()}


def sample_grid(dataset: SliceDataset, per_class: int = 8, seed: int = 0):
    """One row of randomly chosen images per class."""
    plt = pyplot(headless=False)
    groups = _class_indices(dataset)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(groups), per_class, figsize=(1.6 * per_class, 1.7 * len(groups)), squeeze=False)
    for row, (name, idx) in enumerate(groups.items()):
        chosen = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(dataset.images[chosen[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"{name} (n={len(idx)})", loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def intensity_histograms(dataset: SliceDataset, max_images: int = 500, foreground: int = 10):
    """Pixel intensity distribution per class (foreground pixels, density), from up to max_images each."""
    plt = pyplot(headless=False)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.arange(foreground, 257)
    for name, idx in _class_indices(dataset).items():
        pixels = np.asarray(dataset.images[idx[:max_images]]).ravel()
        ax.hist(pixels[pixels >= foreground], bins=bins, density=True, histtype="step",
                color=CLASS_COLOURS[name], label=f"{name} ({min(len(idx), max_images)} images)")
    ax.set_xlabel(f"intensity (pixels >= {foreground})")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return fig


def class_means(dataset: SliceDataset) -> dict[str, np.ndarray]:
    """Mean image per class, float32 in 0..255."""
    return {name: np.asarray(dataset.images[idx], dtype=np.float32).mean(axis=0)
            for name, idx in _class_indices(dataset).items()}


def mean_and_difference(dataset: SliceDataset):
    """Mean image per class and the AD minus NC difference (blue: darker in AD)."""
    plt = pyplot(headless=False)
    means = class_means(dataset)
    panels = len(means) + (1 if len(means) == 2 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.4), squeeze=False)
    for ax, (name, mean) in zip(axes[0], means.items()):
        ax.imshow(mean, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"mean {name}")
        ax.axis("off")
    if len(means) == 2:
        diff = means["AD"] - means["NC"]
        limit = max(float(np.abs(diff).max()), 1e-6)
        ax = axes[0, -1]
        shown = ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title("AD - NC")
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
