"""Directions in W space for the explorer's sliders (the GANSpace idea).

Sample many z, map them to w, and take the principal components of the w cloud:
moving w along the first few components changes the image the most, and the
spread along each (its standard deviation, the square root of the explained
variance) gives a natural slider unit. A slider at +2 moves w two standard
deviations along that component.

Computing them takes a few seconds, so they are cached next to the checkpoint
in `<checkpoints>/directions/<checkpoint>-<key>.safetensors` with a JSON
sidecar; the key hashes the checkpoint's bytes and the settings, so a retrained
checkpoint of the same name never reuses stale directions.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.synthesis.sampling import class_labels, is_conditional, styles
from brainlib.training.checkpoints import file_sha256

CACHE_VERSION = 1


@dataclass
class Directions:
    """Principal directions of w: `components` [k, w_dim] (unit rows, by decreasing variance),
    `stds` [k] (the spread along each), `explained` [k] (fraction of the total variance),
    `mean` [w_dim] (the mean of the sampled w)."""
    mean: torch.Tensor
    components: torch.Tensor
    stds: torch.Tensor
    explained: torch.Tensor

    @property
    def k(self) -> int:
        return len(self.components)

    def shift(self, w: torch.Tensor, amounts) -> torch.Tensor:
        """w [B, w_dim] moved by amounts[i] standard deviations along component i (len(amounts) <= k)."""
        a = torch.as_tensor(list(amounts), dtype=w.dtype, device=w.device)
        if len(a) > self.k:
            raise ValueError(f"{len(a)} slider values for only {self.k} directions")
        if len(a) == 0:
            return w
        step = (a * self.stds[:len(a)].to(w)) @ self.components[:len(a)].to(w)
        return w + step

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "components": self.components, "stds": self.stds, "explained": self.explained}


@torch.no_grad()
def compute_directions(G, *, k: int = 16, n_samples: int = 10_000, seed: int = 0, class_name: str | None = None,
                       batch_size: int = 2000) -> Directions:
    """The top-k principal components of n_samples w vectors (psi = 1).

    For a conditional model with class_name None, the samples alternate NC and AD."""
    w_dim = G.w_dim
    if not 1 <= k <= w_dim:
        raise ValueError(f"k must be between 1 and w_dim={w_dim} (got {k})")
    if n_samples <= k:
        raise ValueError(f"n_samples={n_samples} must exceed k={k}")
    ws = []
    for lo in range(0, n_samples, batch_size):
        b = min(batch_size, n_samples - lo)
        if is_conditional(G) and class_name is None:
            label = torch.arange(lo, lo + b) % 2
        else:
            label = class_labels(G, class_name, b)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + lo)  # one stream per batch is enough here
        ws.append(styles(G, torch.randn(b, G.z_dim, generator=gen), label).float().cpu())
    w = torch.cat(ws).double()
    mean = w.mean(0)
    _, s, vh = torch.linalg.svd(w - mean, full_matrices=False)
    var = s**2 / (len(w) - 1)
    comps = vh[:k]
    # SVD signs are arbitrary; fix them (largest entry positive) so the sliders mean the same every time.
    flip = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * flip
    return Directions(mean=mean.float(), components=comps.float().contiguous(),
                      stds=var[:k].sqrt().float(), explained=(var[:k] / var.sum()).float())


def cache_paths(checkpoint: str | Path, settings: dict) -> tuple[Path, Path, str]:
    """(safetensors path, JSON path, key) of the directions cached for this checkpoint and settings."""
    checkpoint = Path(checkpoint)
    payload = json.dumps({"checkpoint_sha256": file_sha256(checkpoint), "version": CACHE_VERSION, **settings},
                         sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    stem = checkpoint.name.removesuffix(".safetensors")
    folder = checkpoint.parent / "directions"
    return folder / f"{stem}-{key}.safetensors", folder / f"{stem}-{key}.json", key


def directions_for_checkpoint(G, checkpoint: str | Path, *, k: int = 16, n_samples: int = 10_000, seed: int = 0,
                              class_name: str | None = None) -> tuple[Directions, Path]:
    """The directions of G (loaded from `checkpoint`), from the cache when there, else computed and cached.

    Returns (directions, the safetensors file)."""

    settings = {"k": k, "n_samples": n_samples, "seed": seed, "class_name": class_name}
    st_path, json_path, key = cache_paths(checkpoint, settings)
    if st_path.exists() and json_path.exists():
        try:
            if json.loads(json_path.read_text()).get("key") == key:
                return Directions(**load_file(st_path)), st_path
        except (OSError, ValueError, TypeError):
            pass  # an unreadable cache is recomputed and rewritten
    d = compute_directions(G, k=k, n_samples=n_samples, seed=seed, class_name=class_name)
    atomic_write(st_path, lambda tmp: save_file(d.tensors(), str(tmp)))
    atomic_write_json(json_path, {"key": key, "checkpoint": Path(checkpoint).name, **settings,
                                  "stds": d.stds.tolist(), "explained": d.explained.tolist()})
    return d, st_path
