"""Counterfactuals: what a conditional model changes when it makes an NC brain more AD-like.

An edit (`edit_for(G)`) is one of two kinds, by the model's family:
- StyleGAN (`StyleEdit`): the NC-to-AD direction in W is the difference of the class means of
  w (the same z mapped with each label, averaged over many z). Strength s moves a slice's
  styles by s times that difference: s = 1 carries the NC mean to the AD mean. A real slice
  is projected first (brainlib.synthesis.projection).
- diffusion (`DiffusionEdit`): the slice is carried up the deterministic DDIM path under its
  own label (DDIM inversion) for the share s of the path, then denoised back as AD: s = 0 is
  the slice itself, s = 1 the whole path. A real slice is used as it is.
A strip shows one slice (sampled, or real) at a few strengths, and the difference maps against
strength 0 show which structures the model moves.

On data with a known class difference (the embedded phantom: larger ventricles, wider sulci,
medial-temporal loss) this can be checked: `agreement` correlates the mean counterfactual
difference map of many NC samples with the real mean AD - NC difference, over brain pixels.
References sit beside it: the same correlation between the difference maps of two random
halves of the real data (how well real data agrees with itself at half the size), between the
map of as many real images per class as generated ones and the map of the other real images
(real data at the counterfactual's sample size), and a null edit: for a StyleGAN a random
direction of the same length (what any move in W gives), for a diffusion model the round trip
under NC (what the inversion and denoising change without the class).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from brainlib.atomic import FolderExistsError, atomic_write, atomic_write_json
from brainlib.config import CLASS_LABELS
from brainlib.data.dataset import dataset_for_config, to_model_input
from brainlib.plots import pyplot
from brainlib.progress import progress_bar
from brainlib.rundir import DEFAULT_OUT_ROOT, run_dir_of
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.synthesis.projection import load_slice, project
from brainlib.synthesis.sampling import (
    class_labels,
    is_conditional,
    latents,
    load,
    model_classes,
    sample_images,
    styles,
    synthesize,
    trained_res,
)

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)  # StyleGAN: multiples of the NC-to-AD direction in W
# diffusion: shares of the DDIM path; 1 is the whole path (for a generated NC slice, about the AD
# image of its own noise), so the strip ends where a StyleGAN strip passes x1
DIFFUSION_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
PROJECTION_STEPS = 400
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
def sampled_styles(G, seed: int, *, class_name: str = "NC", psi: float = 1.0, n: int = 1,
                   start: int = 0) -> torch.Tensor:
    """w [n, w_dim] of images start .. start+n-1 of `seed` in that class (as `brainlib generate` makes them)."""
    return styles(G, latents(n, G.z_dim, seed=seed, start=start), class_labels(G, class_name, n), psi=psi).cpu()


class Edit(Protocol):
    """What a counterfactual needs of a model family: its slices, the edit, and a null edit."""

    default_strengths: tuple[float, ...]
    null_name: str  # what the null edit is, for the agreement's printout and figure

    def label(self, strength: float) -> str: ...
    def check(self, strengths: Sequence[float]) -> None: ...
    def sources(self, n: int, *, seed: int, start: int = 0) -> torch.Tensor: ...
    def apply(self, source: torch.Tensor, strength: float) -> torch.Tensor: ...  # images [B, 1, S, S], CPU
    def null(self, gen: torch.Generator) -> Edit: ...


class StyleEdit:
    """A StyleGAN's edit: a slice's styles ([B, w_dim] or [B, num_ws, w_dim]) moved by strength x
    direction in W; any real strength (s = 1 with the class direction: the NC mean to the AD mean)."""

    default_strengths = DEFAULT_STRENGTHS
    null_name = "random direction of the same length"

    def __init__(self, G, direction: torch.Tensor, *, source: str = "NC"):
        self.G, self.direction, self.source = G, direction, source

    def label(self, strength: float) -> str:
        return f"NC→AD ×{strength:g}"

    def check(self, strengths: Sequence[float]) -> None:
        pass

    def sources(self, n: int, *, seed: int, start: int = 0) -> torch.Tensor:
        return sampled_styles(self.G, seed, class_name=self.source, n=n, start=start)

    def apply(self, ws: torch.Tensor, strength: float) -> torch.Tensor:
        return render(self.G, shift(ws, self.direction, strength))

    def null(self, gen: torch.Generator) -> StyleEdit:
        random_dir = torch.randn(self.direction.shape, generator=gen)
        return StyleEdit(self.G, random_dir * self.direction.norm() / random_dir.norm(), source=self.source)


class DiffusionEdit:
    """A diffusion model's edit: images [B, 1, S, S] inverted up the DDIM path under the source
    label (NC) for the last k = round(strength x steps) of the sampler's steps (at least one when
    strength > 0), then denoised down the same timesteps under the target label (AD), both with
    the run's guidance. Strength 0 returns the images unchanged; 1 inverts the whole path.

    DDIM inversion rather than SDEdit (noising with fresh Gaussian noise, then denoising as
    AD): the noise it reaches is the slice's own, so the edit keeps what the class does not
    change (pose, outline, texture) where SDEdit redraws it from new noise, and it is
    deterministic without a seed: a slice always gets the same edit. A generated NC slice,
    inverted by the sampler that made it, comes back to about its own starting noise, so at
    strength 1 its edit is about the AD image of that noise (the StyleGAN's "same z, other
    label"). The null edit is the round trip under the source label: what the path alone
    changes. Cost: 2 k guided network evaluations per slice."""

    default_strengths = DIFFUSION_STRENGTHS

    def __init__(self, G: DiffusionSampler, *, source: str = "NC", target: str = "AD", steps: int | None = None):
        self.G, self.source, self.target = G, source, target
        self.sampler = G if steps is None else DiffusionSampler(G.denoiser, G.cfg, steps=steps, guidance=G.guidance)
        self.timesteps = self.sampler.timesteps()
        self.null_name = f"{source}→{source} round trip"

    def label(self, strength: float) -> str:
        return f"{self.source}→{self.target} {strength:.0%}"

    def check(self, strengths: Sequence[float]) -> None:
        bad = [s for s in strengths if not 0 <= s <= 1]
        if bad:
            raise ValueError(f"a diffusion model's counterfactual strengths are shares of the noise path, within "
                             f"[0, 1] (got {', '.join(f'{s:g}' for s in bad)})")

    def path_steps(self, strength: float) -> int:
        self.check([strength])
        return 0 if strength == 0 else max(1, round(strength * len(self.timesteps)))

    def sources(self, n: int, *, seed: int, start: int = 0) -> torch.Tensor:
        return sample_images(self.sampler, n, seed=seed, class_name=self.source, start=start)

    @torch.no_grad()
    def apply(self, images: torch.Tensor, strength: float) -> torch.Tensor:
        k = self.path_steps(strength)
        if k == 0:
            return images.clone()
        timesteps = self.timesteps[-k:]
        noised = self.sampler.invert(images.to(self.sampler.device), self._labels(self.source, len(images)),
                                     timesteps[::-1])
        edited = self.sampler.denoise(noised, self._labels(self.target, len(images)), timesteps=timesteps)
        return edited.float().clamp(-1, 1).cpu()

    def _labels(self, class_name: str, n: int) -> torch.Tensor:
        return class_labels(self.sampler, class_name, n).to(self.sampler.device)

    def null(self, gen: torch.Generator) -> DiffusionEdit:
        return DiffusionEdit(self.G, source=self.source, target=self.source, steps=self.sampler.steps)


def edit_for(G, *, direction: torch.Tensor | None = None, steps: int | None = None, class_name: str = "NC",
             seed: int = 0) -> Edit:
    """The NC-to-AD edit of a conditional model (slices of class_name as the source): a StyleGAN's
    along `direction` (default: class_direction), a diffusion model's over `steps` DDIM steps for
    the whole path (default: the run's sample_steps)."""
    require_conditional(G)
    if isinstance(G, DiffusionSampler):
        if direction is not None:
            raise ValueError("a diffusion model has no direction in W: its edit is the DDIM path (leave direction out)")
        return DiffusionEdit(G, source=class_name, steps=steps)
    if steps is not None:
        raise ValueError(f"DDIM steps (got {steps}) are a diffusion model's setting; a StyleGAN's edit has none")
    return StyleEdit(G, class_direction(G, seed=seed) if direction is None else direction, source=class_name)


@torch.no_grad()
def strip(edit: Edit, source: torch.Tensor,
          strengths: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, differences), each [len(strengths), 1, S, S], of one slice (a StyleGAN's styles
    [1, w_dim] or [1, num_ws, w_dim]; a diffusion model's image [1, 1, S, S]) edited at each
    strength (default: the edit's); differences are against strength 0."""
    if len(source) != 1:
        raise ValueError(f"a strip is of one slice: the source must hold one row, got {len(source)}")
    strengths = edit.default_strengths if strengths is None else strengths
    edit.check(strengths)
    images = torch.cat([edit.apply(source, s) for s in strengths])
    return images, images - edit.apply(source, 0.0)


def save_strip_figure(images: torch.Tensor, differences: torch.Tensor, titles: Sequence[str], path: str | Path,
                      *, title: str = "", reference: torch.Tensor | None = None) -> Path:
    """Top row: the slice at each strength, under `titles` (after `reference`, the real slice
    [1, S, S] of a projection, when given); bottom row: its difference from strength 0 (blue
    darker, red brighter, one symmetric scale for the row: the 99.5th percentile of |difference|)."""
    plt = pyplot()

    first = 0 if reference is None else 1
    k = len(titles) + first
    limit = max(float(torch.quantile(differences.abs().flatten(), 0.995)), 1e-6)
    fig, axes = plt.subplots(2, k, figsize=(1.7 * k + 0.6, 3.8), dpi=100, squeeze=False)
    if reference is not None:
        axes[0, 0].imshow(reference[0].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, 0].set_title("real slice", fontsize=9)
    for i, column in enumerate(titles, start=first):
        axes[0, i].imshow(images[i - first, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, i].set_title(column, fontsize=9)
        shown = axes[1, i].imshow(differences[i - first, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[1].tolist(), fraction=0.025, pad=0.01, label="change from strength 0")
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
def mean_changes(edits: Sequence[Edit], *, n: int = 200, strength: float = 1.0, seed: int = 0,
                 batch_size: int = 50, progress: bool = False) -> list[torch.Tensor]:
    """One map [S, S] per edit: the mean over n sampled slices (edits[0].sources of `seed`, the
    same for every edit) of the edited slice minus the unedited one."""

    totals = [torch.tensor(0.0)] * len(edits)
    with progress_bar(total=n, disable=not progress, desc="counterfactuals", unit="img") as bar:
        for lo in range(0, n, batch_size):
            b = min(batch_size, n - lo)
            source = edits[0].sources(b, seed=seed, start=lo)
            base = edits[0].apply(source, 0.0)
            totals = [total + (edit.apply(source, strength) - base).sum(0)[0]
                      for total, edit in zip(totals, edits, strict=True)]
            bar.update(b)
    return [total / n for total in totals]


def agreement(G, real_ad: torch.Tensor, real_nc: torch.Tensor, *, n: int = 200, strength: float = 1.0,
              seed: int = 0, direction: torch.Tensor | None = None, steps: int | None = None,
              progress: bool = False) -> dict:
    """How well the model's NC-to-AD counterfactual matches the real AD - NC difference.

    real_ad, real_nc: real images [N, 1, S, S] in [-1, 1] at the model's size. Returns the
    correlations (over brain pixels: mean real image above BRAIN_THRESHOLD) of the mean
    counterfactual difference map with the real mean difference map ("counterfactual"), of
    the two halves' real difference maps ("real_half_vs_half", the reference), of the map of
    min(n, half) real images per class with the map of the others ("real_same_size"), and of the
    null edit's map with the real map ("null", named by "null_name": a random direction for a
    StyleGAN, the NC round trip for a diffusion model), plus the maps. direction: a StyleGAN's
    (default: class_direction); steps: a diffusion model's DDIM steps (default: the run's)."""
    require_conditional(G)
    if min(len(real_ad), len(real_nc)) < 4:
        raise ValueError(f"agreement needs at least 4 real images per class (got AD {len(real_ad)}, NC {len(real_nc)})")
    if real_ad.shape[-1] != trained_res(G) or real_nc.shape[-1] != trained_res(G):
        raise ValueError(f"real images must be at the model's size ({trained_res(G)} px), got {real_ad.shape[-1]} px")
    edit = edit_for(G, direction=direction, steps=steps, seed=seed)
    edit.check([strength])
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
    cf_map, null_map = mean_changes([edit, edit.null(gen)], n=n, strength=strength, seed=seed, progress=progress)
    return {
        "counterfactual": map_correlation(cf_map, real_map, mask),
        "real_half_vs_half": map_correlation(half_a, half_b, mask),
        "real_same_size": map_correlation(few_map, rest_map, mask), "real_same_size_n": m,
        "null": map_correlation(null_map, real_map, mask), "null_name": edit.null_name,
        "n_generated": n, "strength": strength, "edit": edit.label(strength),
        "n_real": {"AD": len(real_ad), "NC": len(real_nc)},
        "brain_pixels": int(mask.sum()), "maps": {"real": real_map, "counterfactual": cf_map, "mask": mask},
    }


def format_agreement(result: dict) -> str:
    return (f"counterfactual agreement (correlation over {result['brain_pixels']} brain pixels with the real "
            f"AD-NC mean difference map): {result['counterfactual']:.3f}; real-vs-real reference (two halves of "
            f"the real data, {result['n_real']['AD']}+{result['n_real']['NC']} images): "
            f"{result['real_half_vs_half']:.3f}; real {result['real_same_size_n']} per class against the other "
            f"real images: {result['real_same_size']:.3f}; null ({result['null_name']}): {result['null']:.3f} "
            f"({result['n_generated']} NC samples, {result['edit']})")


def save_agreement_figure(result: dict, path: str | Path) -> Path:
    """Real mean AD - NC beside the mean counterfactual difference (each on its own symmetric scale)."""
    plt = pyplot()

    maps = result["maps"]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), dpi=100)
    for ax, key, title in zip(axes, ("real", "counterfactual"),
                              ("real: mean AD − mean NC", f"model: {result['edit']}, mean change"),
                              strict=True):
        m = maps[key].masked_fill(~maps["mask"], 0)
        limit = max(float(m.abs().max()), 1e-6)
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"correlation {result['counterfactual']:.2f} (real halves {result['real_half_vs_half']:.2f}, "
                 f"{result['null_name']} {result['null']:.2f})", fontsize=10)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return Path(path)


def real_class_images(cfg, res: int, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(AD, NC) real images [N, 1, res, res] in [-1, 1] of a run's dataset, every split."""

    ds = dataset_for_config(cfg.replace(class_name="both"), splits=None, progress=progress)
    labels = np.asarray(ds.labels)
    return tuple(to_model_input(torch.from_numpy(np.asarray(ds.images[labels == CLASS_LABELS[c]])), res)
                 for c in ("AD", "NC"))


def run_agreement(model: str | Path, *, n: int = 200, strength: float = 1.0, seed: int = 0, steps: int | None = None,
                  out_root: str | Path = DEFAULT_OUT_ROOT, progress: bool = True) -> tuple[dict, Path]:
    """The agreement of a conditional run (either family) on its own dataset; writes
    <run>/counterfactuals/agreement.{json,png} and returns (result, json path)."""

    G, cfg, _ = load(model, out_root=out_root)
    require_conditional(G)
    real_ad, real_nc = real_class_images(cfg, trained_res(G), progress=progress)
    result = agreement(G, real_ad, real_nc, n=n, strength=strength, seed=seed, steps=steps, progress=progress)
    folder = run_dir_of(model, out_root=out_root).counterfactuals
    save_agreement_figure(result, folder / "agreement.png")
    path = folder / "agreement.json"
    atomic_write_json(path, {k: v for k, v in result.items() if k != "maps"} | {"summary": format_agreement(result)})
    return result, path


def strip_file(model: str | Path, *, image: str | Path | None = None, seed: int = 0,
               strengths: Sequence[float] | None = None, out: str | Path | None = None, steps: int | None = None,
               per_layer: bool = False, class_name: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT,
               progress: bool = True) -> tuple[Path, str]:
    """The strip figure of a real slice (`image`) or of sample `seed` of class_name (default NC);
    returns (figure, a note). strengths: default the family's. steps: a StyleGAN's projection
    steps (default PROJECTION_STEPS), a diffusion model's DDIM steps (default the run's).

    Written to `out`, default <run>/counterfactuals/<image name or seed<n>>.png; an existing file is refused."""

    G, cfg, _ = load(model, out_root=out_root)
    require_conditional(G)
    diffusion = isinstance(G, DiffusionSampler)
    if diffusion and per_layer:
        raise ValueError("--per-layer is a StyleGAN projection setting; a diffusion model edits the slice itself")
    name = Path(image).name.split(".")[0] if image is not None else f"seed{seed}"
    path = Path(out) if out is not None else run_dir_of(model, out_root=out_root).counterfactuals / f"{name}.png"
    if path.exists():
        raise FolderExistsError(f"{path} already exists; choose another --out (the existing file is kept)")
    edit = edit_for(G, steps=steps if diffusion else None, class_name=class_name or "NC")
    strengths = edit.default_strengths if strengths is None else tuple(strengths)
    edit.check(strengths)
    reference = None
    if image is None:
        source, note = edit.sources(1, seed=seed), f"sample {seed} of class {class_name or 'NC'}"
    elif diffusion:
        source, note = load_slice(image, cfg, res=trained_res(G)), f"{image} as {class_name or 'NC'}"
    else:
        result = project(G, load_slice(image, cfg, res=trained_res(G)), class_name=class_name,
                         steps=steps or PROJECTION_STEPS, per_layer=per_layer, progress=progress)
        source, reference = result.ws, result.target[0]
        note = f"projection of {image}: {result.verdict()}"
    images, differences = strip(edit, source, strengths)
    save_strip_figure(images, differences, [edit.label(s) for s in strengths], path,
                      title=f"{Path(str(model)).name}: {note.split(':')[0]}", reference=reference)
    return path, note
