"""Counterfactuals: what a conditional model changes when it makes an NC brain more AD-like.

The NC-to-AD direction in W is the difference of the class means of w (the same z mapped
with each label, averaged over many z). Strength s moves a slice's styles by s times that
difference: s = 1 carries the NC mean to the AD mean. A strip shows one slice (sampled, or
projected with brainlib.synthesis.projection) at a few strengths, and the difference maps against
strength 0 show which structures the model moves.

On data with a known class difference (the embedded phantom: larger ventricles, wider sulci,
medial-temporal loss) this can be checked: `agreement` correlates the mean counterfactual
difference map of many NC samples with the real mean AD - NC difference, over brain pixels.
References sit beside it: the same correlation between the difference maps of two random
halves of the real data (how well real data agrees with itself at half the size), between the
map of as many real images per class as generated ones and the map of the other real images
(real data at the counterfactual's sample size), and the counterfactual along a random
direction of the same length (what any move in W gives).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import FolderExistsError, atomic_write, atomic_write_json
from brainlib.config import CLASS_LABELS
from brainlib.data.dataset import dataset_for_config, to_model_input
from brainlib.plots import pyplot
from brainlib.rundir import DEFAULT_OUT_ROOT, run_dir_of
from brainlib.synthesis.projection import load_slice, project
from brainlib.synthesis.sampling import (
    class_labels,
    is_conditional,
    latents,
    load,
    model_classes,
    styles,
    synthesize,
    trained_res,
)

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)
BRAIN_THRESHOLD = -0.8  # a pixel is brain when the mean real image is above this ([-1, 1]; about 25 of 255)


def require_conditional(G) -> None:
    if not is_conditional(G):
        raise ValueError(f"counterfactuals need a conditional model (trained with --class both); this one "
                         f"was trained on {'+'.join(model_classes(G))} only")


@torch.no_grad()
def class_direction(G, *, n_samples: int = 10_000, seed: int = 0) -> torch.Tensor:
    """mean w(AD) - mean w(NC) [w_dim], each z mapped with both labels."""

    require_conditional(G)
    z = latents(n_samples, G.z_dim, seed=seed)
    means = {c: styles(G, z, torch.full((n_samples,), label)).float().mean(0).cpu()
             for c, label in CLASS_LABELS.items()}
    return means["AD"] - means["NC"]


@torch.no_grad()
def render(G, ws: torch.Tensor) -> torch.Tensor:
    """Images [B, 1, S, S] in [-1, 1] of styles ws, with the fixed noise maps (only w varies)."""
    return synthesize(G, ws, noise_mode="const").float().clamp(-1, 1).cpu()


def shift(ws: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """ws ([B, w_dim] or [B, num_ws, w_dim]) moved by strength x direction in every layer."""
    if strength == 0:
        return ws
    return ws + strength * direction.to(ws)


@torch.no_grad()
def strip(G, ws: torch.Tensor, strengths: Sequence[float] = DEFAULT_STRENGTHS,
          direction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, differences), each [len(strengths), 1, S, S], of one slice's styles ws ([1, w_dim]
    or [1, num_ws, w_dim]) moved along the direction; differences are against strength 0."""
    if len(ws) != 1:
        raise ValueError(f"a strip is of one slice: ws must hold one row, got {len(ws)}")
    direction = class_direction(G) if direction is None else direction
    base = render(G, ws)
    images = torch.cat([render(G, shift(ws, direction, s)) for s in strengths])
    return images, images - base


@torch.no_grad()
def sampled_styles(G, seed: int, *, class_name: str = "NC", psi: float = 1.0) -> torch.Tensor:
    """w [1, w_dim] of image 0 of `seed` in that class (as `brainlib generate` makes it)."""
    return styles(G, latents(1, G.z_dim, seed=seed), class_labels(G, class_name, 1), psi=psi).cpu()


def save_strip_figure(images: torch.Tensor, differences: torch.Tensor, strengths: Sequence[float], path: str | Path,
                      *, title: str = "", reference: torch.Tensor | None = None) -> Path:
    """Top row: the slice at each strength (after `reference`, the real slice [1, S, S] of a
    projection, when given); bottom row: its difference from strength 0 (blue darker, red
    brighter, one symmetric scale for the row: the 99.5th percentile of |difference|)."""
    plt = pyplot()

    first = 0 if reference is None else 1
    k = len(strengths) + first
    limit = max(float(torch.quantile(differences.abs().flatten(), 0.995)), 1e-6)
    fig, axes = plt.subplots(2, k, figsize=(1.7 * k + 0.6, 3.8), dpi=100, squeeze=False)
    if reference is not None:
        axes[0, 0].imshow(reference[0].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, 0].set_title("real slice", fontsize=9)
    for i, s in enumerate(strengths, start=first):
        axes[0, i].imshow(images[i - first, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, i].set_title(f"NC→AD ×{s:g}", fontsize=9)
        shown = axes[1, i].imshow(differences[i - first, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[1].tolist(), fraction=0.025, pad=0.01, label="change from ×0")
    if title:
        fig.suptitle(title, fontsize=10)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------
# Agreement with the real class difference


def map_correlation(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Pearson correlation of two maps over the pixels of mask."""
    x, y = a[mask].double(), b[mask].double()
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float((x @ y) / denom) if denom > 0 else 0.0


def real_difference(ad: torch.Tensor, nc: torch.Tensor) -> torch.Tensor:
    """mean AD - mean NC [S, S] of real images [N, 1, S, S] in [-1, 1]."""
    return ad.mean(0)[0] - nc.mean(0)[0]


@torch.no_grad()
def counterfactual_difference(G, direction: torch.Tensor, *, n: int = 200, strength: float = 1.0, seed: int = 0,
                              batch_size: int = 50) -> torch.Tensor:
    """Mean over n sampled NC slices of image(w + strength x direction) - image(w): [S, S]."""

    total = None
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        w = styles(G, latents(b, G.z_dim, seed=seed, start=lo), class_labels(G, "NC", b)).cpu()
        diff = (render(G, shift(w, direction, strength)) - render(G, w)).sum(0)[0]
        total = diff if total is None else total + diff
    return total / n


def agreement(G, real_ad: torch.Tensor, real_nc: torch.Tensor, *, n: int = 200, strength: float = 1.0,
              seed: int = 0, direction: torch.Tensor | None = None) -> dict:
    """How well the model's NC-to-AD counterfactual matches the real AD - NC difference.

    real_ad, real_nc: real images [N, 1, S, S] in [-1, 1] at the model's size. Returns the
    correlations (over brain pixels: mean real image above BRAIN_THRESHOLD) of the mean
    counterfactual difference map with the real mean difference map ("counterfactual"), of
    the two halves' real difference maps ("real_half_vs_half", the reference), of the map of
    min(n, half) real images per class with the map of the others ("real_same_size"), and of a
    random direction's counterfactual with the real map ("random_direction"), plus the maps."""
    require_conditional(G)
    if min(len(real_ad), len(real_nc)) < 4:
        raise ValueError(f"agreement needs at least 4 real images per class (got AD {len(real_ad)}, NC {len(real_nc)})")
    if real_ad.shape[-1] != trained_res(G) or real_nc.shape[-1] != trained_res(G):
        raise ValueError(f"real images must be at the model's size ({trained_res(G)} px), got {real_ad.shape[-1]} px")
    direction = class_direction(G, seed=seed) if direction is None else direction
    real_map = real_difference(real_ad, real_nc)
    mask = torch.cat([real_ad, real_nc]).mean(0)[0] > BRAIN_THRESHOLD
    gen = torch.Generator().manual_seed(seed)
    halves = []
    for x in (real_ad, real_nc):
        perm = torch.randperm(len(x), generator=gen)
        halves.append((x[perm[:len(x) // 2]], x[perm[len(x) // 2:]]))
    half_a = real_difference(halves[0][0], halves[1][0])
    half_b = real_difference(halves[0][1], halves[1][1])
    m = min(n, len(real_ad) // 2, len(real_nc) // 2)
    few = [torch.randperm(len(x), generator=gen) for x in (real_ad, real_nc)]
    few_map = real_difference(real_ad[few[0][:m]], real_nc[few[1][:m]])
    rest_map = real_difference(real_ad[few[0][m:]], real_nc[few[1][m:]])
    random_dir = torch.randn(direction.shape, generator=gen)
    random_dir = random_dir * direction.norm() / random_dir.norm()
    cf_map = counterfactual_difference(G, direction, n=n, strength=strength, seed=seed)
    random_map = counterfactual_difference(G, random_dir, n=n, strength=strength, seed=seed)
    return {
        "counterfactual": map_correlation(cf_map, real_map, mask),
        "real_half_vs_half": map_correlation(half_a, half_b, mask),
        "real_same_size": map_correlation(few_map, rest_map, mask), "real_same_size_n": m,
        "random_direction": map_correlation(random_map, real_map, mask),
        "n_generated": n, "strength": strength, "n_real": {"AD": len(real_ad), "NC": len(real_nc)},
        "brain_pixels": int(mask.sum()), "maps": {"real": real_map, "counterfactual": cf_map, "mask": mask},
    }


def format_agreement(result: dict) -> str:
    return (f"counterfactual agreement (correlation over {result['brain_pixels']} brain pixels with the real "
            f"AD-NC mean difference map): {result['counterfactual']:.3f}; real-vs-real reference (two halves of "
            f"the real data, {result['n_real']['AD']}+{result['n_real']['NC']} images): "
            f"{result['real_half_vs_half']:.3f}; real {result['real_same_size_n']} per class against the other "
            f"real images: {result['real_same_size']:.3f}; random direction of the same length: "
            f"{result['random_direction']:.3f} ({result['n_generated']} NC samples, strength {result['strength']:g})")


def save_agreement_figure(result: dict, path: str | Path) -> Path:
    """Real mean AD - NC beside the mean counterfactual difference (each on its own symmetric scale)."""
    plt = pyplot()

    maps = result["maps"]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), dpi=100)
    for ax, key, title in zip(axes, ("real", "counterfactual"),
                              ("real: mean AD − mean NC", f"model: NC→AD ×{result['strength']:g}, mean change"),
                              strict=True):
        m = maps[key].masked_fill(~maps["mask"], 0)
        limit = max(float(m.abs().max()), 1e-6)
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"correlation {result['counterfactual']:.2f} (real halves {result['real_half_vs_half']:.2f}, "
                 f"random direction {result['random_direction']:.2f})", fontsize=10)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return Path(path)


def real_class_images(cfg, res: int, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(AD, NC) real images [N, 1, res, res] in [-1, 1] of a run's dataset, every split."""

    ds = dataset_for_config(cfg.replace(class_name="both"), splits=None, progress=progress)
    labels = np.asarray(ds.labels)
    return tuple(to_model_input(torch.from_numpy(np.asarray(ds.images[labels == CLASS_LABELS[c]])), res)
                 for c in ("AD", "NC"))


def run_agreement(model: str | Path, *, n: int = 200, strength: float = 1.0, seed: int = 0,
                  out_root: str | Path = DEFAULT_OUT_ROOT, progress: bool = True) -> tuple[dict, Path]:
    """The agreement of a conditional run on its own dataset; writes
    <run>/counterfactuals/agreement.{json,png} and returns (result, json path)."""

    G, cfg, _ = load(model, out_root=out_root)
    require_conditional(G)
    real_ad, real_nc = real_class_images(cfg, trained_res(G), progress=progress)
    result = agreement(G, real_ad, real_nc, n=n, strength=strength, seed=seed)
    folder = run_dir_of(model, out_root=out_root).counterfactuals
    save_agreement_figure(result, folder / "agreement.png")
    path = folder / "agreement.json"
    atomic_write_json(path, {k: v for k, v in result.items() if k != "maps"} | {"summary": format_agreement(result)})
    return result, path


def strip_file(model: str | Path, *, image: str | Path | None = None, seed: int = 0,
               strengths: Sequence[float] = DEFAULT_STRENGTHS, out: str | Path | None = None, steps: int = 400,
               per_layer: bool = False, class_name: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT,
               progress: bool = True) -> tuple[Path, str]:
    """The strip figure of a projected slice (`image`) or of NC sample `seed`; returns (figure, a note).

    Written to `out`, default <run>/counterfactuals/<image name or seed<n>>.png; an existing file is refused."""

    G, cfg, _ = load(model, out_root=out_root)
    require_conditional(G)
    name = Path(image).name.split(".")[0] if image is not None else f"seed{seed}"
    path = Path(out) if out is not None else run_dir_of(model, out_root=out_root).counterfactuals / f"{name}.png"
    if path.exists():
        raise FolderExistsError(f"{path} already exists; choose another --out (the existing file is kept)")
    if image is not None:
        result = project(G, load_slice(image, cfg, res=G.trained_res), class_name=class_name, steps=steps,
                         per_layer=per_layer, progress=progress)
        ws, reference = result.ws, result.target[0]
        note = f"projection of {image}: {result.verdict()}"
    else:
        ws, reference = sampled_styles(G, seed, class_name=class_name or "NC"), None
        note = f"sample {seed} of class {class_name or 'NC'}"
    images, differences = strip(G, ws, strengths)
    save_strip_figure(images, differences, strengths, path, title=f"{Path(str(model)).name}: {note.split(':')[0]}",
                      reference=reference)
    return path, note
