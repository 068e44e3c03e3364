"""Images from a trained generator: seeded, truncated, mixed, interpolated.

Reproducibility is the point of this module. Image `i` of seed `s` always has
the same latent z and, with `noise_mode="random"`, the same per-pixel noise:
both are drawn from a `torch.Generator` seeded by `(s, i)` alone, so the picture
does not depend on `n`, on the batch size or on anything run before it. With
the same checkpoint and options, the PNGs written on the CPU are byte-identical
run after run. (Across different batch sizes the floats can differ in the last
bits, since the CPU's convolution kernels depend on the batch; the uint8 images
then agree to within one grey level.)

Noise modes, as in `Generator.synthesize`: "random" (the trained behaviour,
seeded per image here), "const" (one fixed noise map shared by every image),
"none" (no noise). `noise_strength` scales the noise. Generation defaults to
"random": it is what the model was trained with, and per-image seeding makes it
as reproducible as "const". Figures that vary one factor (truncation sweeps,
mixing matrices, interpolation strips) default to "const" so only that factor
changes. Per-image synthesis costs nothing on the CPU (measured at 128 px,
paper widths: 0.30 s/image one by one against 0.43 s/image in a batch of 32).

Class names follow `config.CLASS_LABELS` (NC = 0, AD = 1). A conditional model
needs a class; a single-class model accepts None or its own class only.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from brainlib.atomic import atomic_write_json, check_free_space, new_folder
from brainlib.config import CLASS_LABELS, RunConfig, check_psi, check_seed
from brainlib.networks.layers import NOISE_MODES
from brainlib.progress import progress_bar
from brainlib.rundir import DEFAULT_OUT_ROOT, run_dir_of
from brainlib.synthesis.diffusion_sampling import DiffusionSampler, is_diffusion_run, load_diffusion
from brainlib.training.checkpoints import load_generator, resolve_checkpoint, snapshot_checkpoint

# ----------------------------------------------------------------------
# Seeds and latents

def image_seed(seed: int, index: int) -> int:
    """The 64-bit seed of image `index` under run seed `seed` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0])


def latents(n: int, z_dim: int, *, seed: int = 0, start: int = 0) -> torch.Tensor:
    """z for images start .. start+n-1 of `seed`: float32 [n, z_dim], each row from its own generator."""
    rows = [torch.randn(z_dim, generator=torch.Generator().manual_seed(image_seed(seed, start + i)))
            for i in range(n)]
    return torch.stack(rows) if rows else torch.empty(0, z_dim)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation between Gaussian latents (keeps their norm typical)."""
    t = torch.as_tensor(t, dtype=a.dtype).reshape(-1, *([1] * (a.dim() - 1)))
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    # The formula is exact at the ends only up to rounding; make them the endpoints themselves.
    return torch.where(t == 0, a, torch.where(t == 1, b, out))


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=a.dtype).reshape(-1, *([1] * (a.dim() - 1)))
    return torch.where(t == 0, a, torch.where(t == 1, b, a + (b - a) * t))


# ----------------------------------------------------------------------
# Classes

def model_classes(G) -> list[str]:
    """The classes a generator (or a diffusion run's sampler) can make: ["AD", "NC"] if
    conditional, else its own class."""
    if isinstance(G, DiffusionSampler):
        return list(G.cfg.classes)
    settings = getattr(G, "settings", None)
    if settings is None:
        raise ValueError("the generator carries no network settings (G.settings); build it with "
                         "networks.build or load it with checkpoints.load_generator")
    return list(settings.classes)


def is_conditional(G) -> bool:
    return len(model_classes(G)) > 1


def class_labels(G, class_name: str | None, n: int) -> torch.Tensor | None:
    """Labels [n] for a conditional model, None for a single-class one; a class the model cannot make is an error."""
    classes = model_classes(G)
    if class_name is not None and class_name not in CLASS_LABELS:
        raise ValueError(f"class {class_name!r} is not one of {', '.join(CLASS_LABELS)}")
    if len(classes) == 1:
        if class_name not in (None, classes[0]):
            raise ValueError(f"this model was trained on {classes[0]} only and cannot make {class_name}; "
                             f"use the {class_name} run, or a conditional (class both) model")
        return None
    if class_name is None:
        raise ValueError("this model is conditional: choose a class, AD or NC")
    return torch.full((n,), CLASS_LABELS[class_name], dtype=torch.long)


# ----------------------------------------------------------------------
# Mapping and synthesis

def _device(G) -> torch.device:
    return next(G.parameters()).device


def trained_res(G) -> int:
    """The resolution G was trained up to: set by `load`, else the configured image size."""
    return int(getattr(G, "trained_res", None) or G.image_size)


def trained_alpha(G) -> float:
    """The fade-in alpha of the checkpoint at its resolution (1 unless `load` found a run mid-fade)."""
    return float(getattr(G, "trained_alpha", 1.0))


def load(model: str | Path, *, out_root: str | Path = DEFAULT_OUT_ROOT, device: str = "cpu"):
    """checkpoints.load_generator, with the checkpoint's resolution and alpha recorded on G
    (G.trained_res, G.trained_alpha) so every sampler here uses them by default.

    Returns (G, cfg, meta). A diffusion run gives a DiffusionSampler as G (diffusion_sampling.py)."""

    if is_diffusion_run(model, out_root):
        return load_diffusion(model, out_root=out_root, device=device)
    G, cfg, meta = load_generator(model, out_root=out_root, device=device)
    G.trained_res, G.trained_alpha = int(meta["res"]), float(meta["alpha"])
    return G, cfg, meta


def default_mix_layer(G) -> int:
    """The crossover of 03_samples' style mixing: the coarse half of the style inputs from one latent."""
    return G.num_ws_at(trained_res(G)) // 2


def describe(G, cfg: RunConfig, meta: dict) -> str:
    """What a loaded run is (03_samples' first lines): its size, classes and its family's own
    settings; for a StyleGAN where the style mixing crosses over, for a diffusion model what
    it has instead of a W space."""
    res = trained_res(G)
    if cfg.diffusion:
        guidance = f", guidance {G.guidance}" if is_conditional(G) else ""
        return (f"{res} px, a {cfg.objective} diffusion model, classes {cfg.classes}, {G.steps} DDIM steps{guidance}, "
                f"finished {meta['finished']}\n  no W space: the grids and its explorer (seed, "
                f"{'class, guidance, ' if is_conditional(G) else ''}DDIM steps), none of the StyleGAN figures")
    mix = default_mix_layer(G)
    return (f"{res} px, {G.num_ws_at(res)} style inputs, classes {cfg.classes}, z_dim {cfg.z_dim}, w_dim {cfg.w_dim}, "
            f"finished {meta['finished']}\n  style mixing: styles 0..{mix - 1} (4..{4 * 2 ** ((mix - 1) // 2)} px) "
            f"from the row, {mix}.. from the column")


@torch.no_grad()
def styles(G, z: torch.Tensor, label: torch.Tensor | None = None, *, psi: float = 1.0) -> torch.Tensor:
    """w [B, w_dim] for z, truncated towards G.w_avg by psi (psi=1: none, psi=0: the average image)."""
    dev = _device(G)
    return G.map(z.to(dev), None if label is None else label.to(dev), psi=psi)


def mix_styles(w: torch.Tensor, w_mix: torch.Tensor, mix_layer: int | None, num_ws: int) -> torch.Tensor:
    """Per-layer styles [B, num_ws, w_dim]: w for layers < mix_layer, w_mix from mix_layer on.

    mix_layer None (or >= num_ws) means no mixing; 0 means every layer from w_mix."""
    ws = w.unsqueeze(1).repeat(1, num_ws, 1)
    if mix_layer is not None and mix_layer < num_ws:
        if mix_layer < 0:
            raise ValueError(f"mix_layer must be between 0 and {num_ws} (got {mix_layer})")
        ws[:, mix_layer:] = w_mix.unsqueeze(1) if w_mix.dim() == 2 else w_mix[:, mix_layer:]
    return ws


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (which the noise layers draw from) without disturbing the caller's."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def synthesize(G, ws: torch.Tensor, *, res: int | None = None, noise_mode: str = "random",
               noise_strength: float = 1.0, noise_seeds: Sequence[int] | None = None) -> torch.Tensor:
    """Images [B, 1, res, res] from styles ws ([B, w_dim] or [B, num_ws, w_dim]), on ws's device.

    With noise_mode "random", image b gets the noise of `noise_seeds[b]`: each image is
    synthesised under its own seed so its noise does not depend on the batch around it."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
    res = res or trained_res(G)
    alpha = trained_alpha(G) if res == trained_res(G) else 1.0
    ws = ws.to(_device(G))
    if noise_strength == 0:
        noise_mode = "none"  # the same image, without drawing (and discarding) noise
    if noise_mode != "random":
        return G.synthesize(ws, res=res, alpha=alpha, noise_mode=noise_mode, noise_strength=noise_strength)
    if noise_seeds is None or len(noise_seeds) != len(ws):
        raise ValueError("noise_mode 'random' needs one noise seed per image")
    out = []
    for w_one, s in zip(ws, noise_seeds, strict=True):
        with _seeded(int(s), ws.device):
            out.append(G.synthesize(w_one[None], res=res, alpha=alpha, noise_mode="random",
                                    noise_strength=noise_strength))
    return torch.cat(out)


def _progress(total: int, enabled: bool, desc: str):
    return progress_bar(total=total, disable=not enabled, desc=desc, unit="img")


@torch.no_grad()
def sample_images(G, n: int, *, seed: int = 0, class_name: str | None = None, psi: float = 1.0,
                  batch_size: int = 64, res: int | None = None, noise_mode: str = "random",
                  noise_strength: float = 1.0, mix_seed: int | None = None, mix_layer: int | None = None,
                  start: int = 0, progress: bool = False) -> torch.Tensor:
    """n images of `seed`: float32 [n, 1, S, S] in [-1, 1] on the CPU.

    Image i uses z = latents(seed)[start+i] and the noise of image_seed(seed, start+i).
    mix_seed/mix_layer: image i takes its styles from layer mix_layer on from image i
    of mix_seed (style mixing)."""
    if n <= 0:
        raise ValueError(f"the number of images must be positive (got {n})")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive (got {batch_size})")
    if isinstance(G, DiffusionSampler):
        return _sample_diffusion(G, n, seed=seed, class_name=class_name, psi=psi, res=res, start=start,
                                 batch_size=batch_size, progress=progress)
    res = res or trained_res(G)
    z_dim = G.z_dim
    out = torch.empty(n, 1, res, res)
    with _progress(n, progress, "generating") as bar:
        for lo in range(0, n, batch_size):
            b = min(batch_size, n - lo)
            idx = range(start + lo, start + lo + b)
            label = class_labels(G, class_name, b)
            w = styles(G, latents(b, z_dim, seed=seed, start=start + lo), label, psi=psi)
            if mix_layer is not None:
                if mix_seed is None:
                    raise ValueError("style mixing needs mix_seed as well as mix_layer")
                w_mix = styles(G, latents(b, z_dim, seed=mix_seed, start=start + lo), label, psi=psi)
                w = mix_styles(w, w_mix, mix_layer, G.num_ws_at(res))
            img = synthesize(G, w, res=res, noise_mode=noise_mode, noise_strength=noise_strength,
                             noise_seeds=[image_seed(seed, i) for i in idx])
            out[lo:lo + b] = img.float().clamp(-1, 1).cpu()
            bar.update(b)
    return out


def _sample_diffusion(G, n: int, *, seed: int, class_name: str | None, psi: float, res: int | None, start: int,
                      batch_size: int, progress: bool) -> torch.Tensor:
    """sample_images for a DiffusionSampler: image i starts from the noise of image_seed(seed, start + i)."""
    if psi != 1.0:
        raise ValueError(f"truncation (psi={psi}) is a StyleGAN setting; a diffusion model samples with psi 1 "
                         f"(its guidance scale, cfg.guidance, plays a similar part)")
    if res not in (None, trained_res(G)):
        raise ValueError(f"a diffusion model samples at its trained size {trained_res(G)} px only (asked for {res})")
    seeds = [image_seed(seed, start + i) for i in range(n)]
    return G.sample(class_labels(G, class_name, n), seeds, batch_size=batch_size, progress=progress)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """[n, 1, S, S] or [n, S, S] floats in [-1, 1] -> uint8 [n, S, S] (rounded, clipped)."""
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected greyscale images [n, 1, S, S], got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected images [n, 1, S, S] or [n, S, S], got shape {tuple(x.shape)}")
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------
# Figures' raw material: sweeps, mixing matrices, interpolation strips

@torch.no_grad()
def truncation_sweep(G, seeds: Sequence[int], psis: Sequence[float], *, class_name: str | None = None,
                     noise_mode: str = "const") -> torch.Tensor:
    """Images [len(seeds) * len(psis), 1, S, S], row-major: one row per seed, one column per psi."""
    rows = [torch.cat([sample_images(G, 1, seed=s, psi=p, class_name=class_name, noise_mode=noise_mode)
                       for p in psis]) for s in seeds]
    return torch.cat(rows)


@torch.no_grad()
def style_mixing_matrix(G, row_seeds: Sequence[int], col_seeds: Sequence[int], mix_layer: int, *,
                        class_name: str | None = None, psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
    """A (1 + rows) x (1 + cols) grid as [N, 1, S, S], row-major, top-left blank (-1).

    First row: the column sources; first column: the row sources; cell (r, c): the
    coarse styles (layers < mix_layer) of row seed r with the fine ones of column seed c."""
    def one(seed: int, mix_seed: int | None = None) -> torch.Tensor:
        return sample_images(G, 1, seed=seed, psi=psi, class_name=class_name, noise_mode=noise_mode,
                             mix_seed=mix_seed, mix_layer=None if mix_seed is None else mix_layer)[0]

    res = trained_res(G)
    cells = [torch.full((1, res, res), -1.0)] + [one(c) for c in col_seeds]
    for r in row_seeds:
        cells += [one(r)] + [one(r, c) for c in col_seeds]
    return torch.stack(cells)


@torch.no_grad()
def interpolation_strip(G, seed_a: int, seed_b: int, steps: int = 8, *, space: str = "z",
                        class_name: str | None = None, psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
    """Images [steps, 1, S, S] from image 0 of seed_a to image 0 of seed_b.

    space "z": spherical interpolation of the latents; "w": linear interpolation of the
    styles. The noise is held fixed along the strip (seed_a's with mode "random")."""
    if steps < 2:
        raise ValueError(f"an interpolation strip needs at least 2 steps (got {steps})")
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w' (got {space!r})")
    z = torch.cat([latents(1, G.z_dim, seed=seed_a), latents(1, G.z_dim, seed=seed_b)])
    t = torch.linspace(0, 1, steps)
    label = class_labels(G, class_name, steps)
    if space == "z":
        w = styles(G, slerp(z[0:1], z[1:2], t), label, psi=psi)
    else:
        ends = styles(G, z, None if label is None else label[:2], psi=psi)
        w = lerp(ends[0:1], ends[1:2], t)
    img = synthesize(G, w, noise_mode=noise_mode, noise_seeds=[image_seed(seed_a, 0)] * steps)
    return img.float().clamp(-1, 1).cpu()


@torch.no_grad()
def noise_variations(G, seed: int, n: int = 8, *, class_name: str | None = None, psi: float = 1.0,
                     noise_strength: float = 1.0) -> torch.Tensor:
    """Image 0 of `seed` (the same w) under n different noise draws: [n, 1, S, S]."""
    w = styles(G, latents(1, G.z_dim, seed=seed), class_labels(G, class_name, 1), psi=psi).repeat(n, 1)
    img = synthesize(G, w, noise_mode="random", noise_strength=noise_strength,
                     noise_seeds=[image_seed(seed, 1_000_000 + k) for k in range(n)])
    return img.float().clamp(-1, 1).cpu()


# ----------------------------------------------------------------------
# PNG files

def png_bytes(image_u8: np.ndarray, size: int | None = None, text: dict[str, str] | None = None) -> bytes:
    """A greyscale PNG of one uint8 [S, S] image, optionally resized (antialiased) to size x size,
    with `text` as tEXt chunks (in the dict's order).

    Deterministic: PIL writes no timestamp, and optimize is off."""

    img = Image.fromarray(np.ascontiguousarray(image_u8), mode="L")
    if size is not None and size != img.width:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6, pnginfo=info)
    return buf.getvalue()


def write_pngs(images_u8: np.ndarray, folder: Path, *, size: int | None = None, start: int = 0) -> None:
    """img_<start>.png, img_<start+1>.png ... into folder (which must exist)."""
    for i, im in enumerate(images_u8):
        (Path(folder) / f"img_{start + i}.png").write_bytes(png_bytes(im, size))


class OutputExistsError(FileExistsError, ValueError):
    """The output folder exists already: we never write into or over it."""


def _check_output_name(output: str) -> None:
    if not output or output in (".", "..") or "/" in output or "\\" in output:
        raise ValueError(f"--output {output!r} must be a plain folder name (no slashes), e.g. 'AD_seed0'")


def png_size_bound(side: int, text_bytes: int = 0) -> int:
    """The most bytes a greyscale side x side PNG can take: its pixels stored (PNG deflate
    never grows data by more than a few bytes per block), a filter byte per row, the chunks."""
    return side * (side + 1) + 1024 + text_bytes


def max_output_size(trained: int) -> int:
    """The largest --size generate writes: 4x the trained size, or 1024 px if that is more."""
    return max(4 * trained, 1024)


def generate_to_folder(model: str | Path, output: str, n: int, seed: int = 0, class_name: str | None = None,
                       psi: float = 1.0, size: int | None = None, out_root: str | Path = DEFAULT_OUT_ROOT, *,
                       batch_size: int = 64, noise_mode: str = "random", progress: bool = True,
                       steps: int | None = None, guidance: float | None = None, snapshot: str = "latest") -> Path:
    """Write img_0.png .. img_{n-1}.png (greyscale, the trained size unless `size`) and return the folder.

    The folder is <run dir>/generated_images/<output>/, and <output>.json beside it records the
    checkpoint (with its sha256) and the options, to reproduce the images. Everything is checked
    (the disk's free space too) before anything is written; the images are written to a hidden
    temporary folder (atomic.new_folder) that is renamed into place at the end, so an error,
    Ctrl-C or SIGTERM leaves nothing behind, and an existing folder is never overwritten.
    `steps` and `guidance` (a diffusion run's DDIM steps and guidance scale) default to the
    run's config. `snapshot="best"` samples the run's best snapshot (training/texture_probe.py)."""
    if n is None or int(n) <= 0:
        raise ValueError(f"--n must be a positive number of images (got {n})")
    _check_output_name(output)
    check_seed(seed)
    check_psi(psi)
    if size is not None and size <= 0:
        raise ValueError(f"--size must be a positive number of pixels (got {size})")

    model = snapshot_checkpoint(model, snapshot, out_root)
    G, cfg, meta = load(model, out_root=out_root)
    if (steps is not None or guidance is not None) and not cfg.diffusion:
        raise ValueError("--steps and --guidance are settings of a diffusion model; this run is a StyleGAN")
    if steps is not None and not 1 <= steps <= cfg.diffusion_timesteps:
        raise ValueError(f"--steps must be within [1, {cfg.diffusion_timesteps}] (got {steps})")
    if guidance is not None and guidance < 0:
        raise ValueError(f"--guidance must be 0 (none) or positive (got {guidance})")
    if cfg.diffusion:
        G.steps, G.guidance = G.steps if steps is None else steps, G.guidance if guidance is None else guidance
    class_labels(G, class_name, 1)  # a class the model cannot make fails here, before any writing
    if size is not None and size > max_output_size(trained_res(G)):
        raise ValueError(f"--size {size} is too large for a model trained at {trained_res(G)} px; "
                         f"at most {max_output_size(trained_res(G))}")
    run = run_dir_of(model, out_root=out_root)
    folder = run.generated_images(output)
    if folder.exists():
        raise OutputExistsError(f"{folder} already exists; choose another --output name "
                              f"(nothing was written, the existing images are kept)")
    check_free_space(folder, n, png_size_bound(size or trained_res(G)))
    with new_folder(folder) as tmp, _progress(n, progress and n > batch_size, f"generate {output}") as bar:
        for lo in range(0, n, batch_size):
            imgs = sample_images(G, min(batch_size, n - lo), seed=seed, class_name=class_name, psi=psi,
                                 batch_size=batch_size, noise_mode=noise_mode, start=lo,
                                 progress=progress and cfg.diffusion)  # diffusion: progress per step
            write_pngs(to_uint8(imgs), tmp, size=size, start=lo)
            bar.update(len(imgs))
    atomic_write_json(run.generated_record(output), {
        "checkpoint": str(resolve_checkpoint(model, out_root)), "checkpoint_sha256": meta.get("sha256"),
        "n": n, "seed": seed, "class_name": class_name, "psi": psi, "size": size or trained_res(G),
        "noise_mode": noise_mode, "files": f"img_0.png .. img_{n - 1}.png",
        **({"steps": G.steps, "guidance": G.guidance} if cfg.diffusion else {})})
    return folder
