"""Does the generator copy its training images?

For each generated image: its nearest training image, in encoder features and
in pixels (L2 at the generated size, at most 64 px). The yardstick is how close
real held-out images come to the training set: a generated image is flagged
when it is closer to a training image than the 1st percentile of the held-out
images' nearest distances. A generator that samples the data distribution has
about 1% flagged (the floor, by construction); a copier has many more.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import atomic_write
from brainlib.data.dataset import to_model_input
from brainlib.plots import pyplot

PIXEL_RES = 64
THRESHOLD_PERCENTILE = 1.0


def nearest(queries: np.ndarray | torch.Tensor, references: np.ndarray | torch.Tensor,
            chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance to, and index of, the nearest reference row for each query row."""
    q = torch.as_tensor(np.asarray(queries), dtype=torch.float32).flatten(1)
    r = torch.as_tensor(np.asarray(references), dtype=torch.float32).flatten(1)
    if len(r) == 0:
        raise ValueError("nearest neighbours need at least one reference")
    dist, idx = [], []
    for i in range(0, len(q), chunk):
        d = torch.cdist(q[i:i + chunk], r)
        best = d.min(dim=1)
        dist.append(best.values)
        idx.append(best.indices)
    return torch.cat(dist).double().numpy(), torch.cat(idx).numpy()


def pixel_vectors(images) -> torch.Tensor:
    x = to_model_input(images)
    return to_model_input(x, min(x.shape[-1], PIXEL_RES)).flatten(1)


def copy_test(generated: np.ndarray, train: np.ndarray, heldout: np.ndarray) -> dict:
    """Nearest-training distances of generated and held-out vectors and the share under the
    held-out 1st percentile. Returns JSON-able numbers plus "_gen_nearest" (dist, idx)."""
    gen_d, gen_i = nearest(generated, train)
    held_d, _ = nearest(heldout, train)
    threshold = float(np.percentile(held_d, THRESHOLD_PERCENTILE))
    share = float((gen_d < threshold).mean())
    floor = float((held_d < threshold).mean())
    return {"threshold": threshold, "share": share, "floor": floor,
            "median_nn_generated": float(np.median(gen_d)), "median_nn_heldout": float(np.median(held_d)),
            "_gen_nearest": (gen_d, gen_i)}


def memorisation(generated, train, heldout, *, gen_features: np.ndarray | None = None,
                 train_features: np.ndarray | None = None, heldout_features: np.ndarray | None = None) -> dict:
    """Copy tests in pixels and (when features are given) encoder features.

    {"pixels": {...}, "encoder": {...}} with threshold, share (of generated images
    flagged), floor (share of held-out images flagged, ~1%), median distances,
    and the per-image nearest training index/distance under "_gen_nearest".
    """
    out = {"pixels": copy_test(pixel_vectors(generated), pixel_vectors(train), pixel_vectors(heldout))}
    if gen_features is not None:
        out["encoder"] = copy_test(gen_features, train_features, heldout_features)
    return out


def flagged(result: dict) -> np.ndarray:
    """Boolean mask over generated images: closer to training than the held-out 1st percentile."""
    dist, _ = result["_gen_nearest"]
    return dist < result["threshold"]


def public(result: dict) -> dict:
    """The JSON-able part of a memorisation() result (drops the per-image arrays)."""
    return {space: {k: v for k, v in r.items() if not k.startswith("_")} for space, r in result.items()}


def save_closest_pairs(generated, train, result: dict, path: str | Path, *, k: int = 8,
                       title: str = "") -> Path:
    """PNG of the k generated images closest (in pixels) to a training image:
    each row is generated | nearest training image, with the distance and the flag."""
    plt = pyplot()
    dist, idx = result["pixels"]["_gen_nearest"]
    threshold = result["pixels"]["threshold"]
    order = np.argsort(dist)[:k]
    g, t = to_model_input(generated), to_model_input(train)
    fig, axes = plt.subplots(len(order), 2, figsize=(3.2, 1.6 * len(order)), squeeze=False)
    for row, i in enumerate(order):
        for col, (img, label) in enumerate([(g[i, 0], f"gen {i}"), (t[idx[i], 0], f"train {idx[i]}")]):
            ax = axes[row, col]
            ax.imshow(img.numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(label, fontsize=7)
        flag = "COPY?" if dist[i] < threshold else "ok"
        axes[row, 0].set_ylabel(f"d={dist[i]:.2f}\n{flag}", fontsize=7)
    fig.suptitle(title or f"closest pairs (pixel L2; flag if d < {threshold:.2f})", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
