"""Projection: the latent that makes a trained generator reproduce one given slice.

    result = project(G, load_slice("scan.png", cfg), class_name="NC")
    folder = project_file("demo-both", "scan.png")        # what `brainlib project` does

The slice is read and preprocessed exactly as the training data is (brainlib.data.dataset:
greyscale, the run's padding, antialiased resize to the model's size, [-1, 1]). Starting
from the mean w of the class (or of every class), Adam moves w to lower

    loss = L1(G(w), x) + MS_SSIM_WEIGHT * (1 - MS-SSIM(G(w), x))

(pixels and structure; no network weights to download). Options: one w per style input
(`per_layer`, more freedom, less like a sample of the model) and the fixed noise maps
(`optimise_noise`, regularised towards white noise). Early steps add a decaying random
perturbation to w so the search looks around before it settles.

Quality is PSNR (dB, images in [0, 1], whole frame) and SSIM (brainlib.eval.metrics.ssim)
against the preprocessed slice. A fit below POOR_FIT_PSNR dB is reported as poor: the
projection then shows what the model can make near this brain, not this brain, and
edits of it (counterfactuals) say little about the slice.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from brainlib.atomic import FolderExistsError, new_folder
from brainlib.data.dataset import to_model_input
from brainlib.data.decoding import decode_file
from brainlib.data.slices import SkippedFile
from brainlib.eval.metrics import ms_ssim, ssim
from brainlib.plots import pyplot
from brainlib.progress import progress_bar
from brainlib.rundir import DEFAULT_OUT_ROOT, run_dir_of
from brainlib.synthesis.sampling import (
    class_labels,
    is_conditional,
    latents,
    load,
    png_bytes,
    styles,
    to_uint8,
    trained_alpha,
    trained_res,
)
from brainlib.training.checkpoints import file_sha256, resolve_checkpoint

POOR_FIT_PSNR = 20.0  # dB; below it the projection is reported as a poor fit
MS_SSIM_WEIGHT = 0.5
NOISE_REG_WEIGHT = 1e3


@dataclass
class Projection:
    """The fitted styles `ws` [1, num_ws, w_dim], the image they make, the target, the fit curve."""
    ws: torch.Tensor
    image: torch.Tensor
    target: torch.Tensor
    curve: list[dict] = field(default_factory=list)
    noise: dict[str, torch.Tensor] | None = None
    class_name: str | None = None

    @property
    def psnr(self) -> float:
        return float(psnr(self.image, self.target)[0])

    @property
    def ssim(self) -> float:
        return float(ssim(self.image, self.target)[0])

    @property
    def start_psnr(self) -> float:
        return self.curve[0]["psnr"] if self.curve else float("nan")

    @property
    def poor_fit(self) -> bool:
        return self.psnr < POOR_FIT_PSNR

    def verdict(self) -> str:
        head = f"PSNR {self.psnr:.2f} dB (from {self.start_psnr:.2f} at the start), SSIM {self.ssim:.3f}"
        if self.poor_fit:
            return (f"{head}: POOR FIT (below {POOR_FIT_PSNR:g} dB). The projection is an image the model can "
                    "make near this slice, not this slice; edits of it say little about this brain. Try more "
                    "--steps, --per-layer, or a slice like the training data (orientation, contrast, framing).")
        return f"{head}: good fit (at least {POOR_FIT_PSNR:g} dB)"


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per pair of images in [-1, 1], measured in [0, 1] over the whole frame -> [N]."""
    mse = (((x.clamp(-1, 1) - y) / 2) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def load_slice(path: str | Path, cfg, *, res: int | None = None, slice_index: int | None = None) -> torch.Tensor:
    """One slice as the model's training data: float [1, 1, res, res] in [-1, 1] (res: cfg.image_size,
    or a lower resolution the checkpoint stopped at, reached by area averaging as in training).

    2D images (PNG, JPEG, TIFF, BMP) are read as brainlib.data.dataset reads them; for a volume,
    `slice_index` picks one of the slices the loader would take (its position along the axis)."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist (expected one 2D slice: PNG, JPEG, TIFF, BMP, "
                                "or a NIfTI volume with a slice index)")
    try:
        slices = decode_file(path, image_size=cfg.image_size, pad_to_square=cfg.pad_to_square,
                             nifti_axis=2, nifti_band=(0.25, 0.75))
    except SkippedFile as e:
        raise ValueError(f"{path} cannot be used as a slice: {e}") from None
    if len(slices) > 1:
        found = {int(src.rsplit("#", 1)[1]): a for src, a in slices}
        if slice_index not in found:
            raise ValueError(f"{path} is a volume with {len(found)} usable slices ({min(found)}..{max(found)}); "
                             "choose one with slice_index (--slice)")
        image = found[slice_index]
    else:
        image = slices[0][1]
    return to_model_input(torch.from_numpy(np.ascontiguousarray(image))[None], res or cfg.image_size)


@torch.no_grad()
def mean_style(G, class_name: str | None, *, n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """(mean w [w_dim] of the class, or of every class for None; rms distance of w from it)."""

    z = latents(n, G.z_dim, seed=seed)
    if class_name is None and is_conditional(G):
        label = torch.arange(n) % 2
    else:
        label = class_labels(G, class_name, n)
    w = styles(G, z, label).float().cpu()
    mean = w.mean(0)
    return mean, float(((w - mean) ** 2).sum(1).mean().sqrt())


def _noise_buffers(G) -> dict[str, torch.Tensor]:
    """The generator's fixed noise maps (noise_mode "const"), by buffer name."""
    return {name: buf for name, buf in G.named_buffers() if name.endswith("const_noise")}


def _set_buffer(G, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    G.get_submodule(owner)._buffers[leaf] = value


def noise_regulariser(maps: list[torch.Tensor]) -> torch.Tensor:
    """Squared neighbour correlations of each noise map at every scale down to 8 px (0 for white noise)."""
    total = torch.zeros(())
    for n in maps:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def project(G, target: torch.Tensor, *, class_name: str | None = None, steps: int = 400, lr: float = 0.05,
            per_layer: bool = False, optimise_noise: bool = False, seed: int = 0,
            progress: bool = False) -> Projection:
    """Fit styles (and optionally noise) so that G reproduces `target` [1, 1, S, S] in [-1, 1]."""


    res = trained_res(G)
    if target.shape != (1, 1, res, res):
        raise ValueError(f"the target must be one slice [1, 1, {res}, {res}] (the model's size); "
                         f"got {list(target.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    if class_name is not None:
        class_labels(G, class_name, 1)  # a class the model cannot make fails here
    alpha = trained_alpha(G)
    num_ws = G.num_ws_at(res)
    w0, w_spread = mean_style(G, class_name, seed=seed)
    start = w0.reshape(1, 1, -1).repeat(1, num_ws if per_layer else 1, 1)
    w = start.clone().requires_grad_(True)
    params = [w]
    maps: dict[str, torch.Tensor] = {}
    if optimise_noise:
        G = copy.deepcopy(G)
        maps = {k: v.detach().clone().requires_grad_(True) for k, v in _noise_buffers(G).items()}
        if not maps:
            raise ValueError("this generator has no fixed noise maps to optimise; project without --noise")
        for name, value in maps.items():
            _set_buffer(G, name, value)
        params += list(maps.values())
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    target = target.float()

    def render(ws: torch.Tensor) -> torch.Tensor:
        ws = ws.expand(-1, num_ws, -1) if ws.shape[1] == 1 else ws
        return G.synthesize(ws, res=res, alpha=alpha, noise_mode="const")

    curve = []
    bar = progress_bar(range(steps + 1), total=steps + 1, desc="project", unit="step", disable=not progress)
    for step in bar:
        t = step / steps
        with torch.no_grad():
            image = render(w).clamp(-1, 1)
            curve.append({"step": step, "psnr": float(psnr(image, target)[0])})
        if step == steps:
            break
        for g in opt.param_groups:  # warm up over 5%, cosine down over the last 25%
            g["lr"] = lr * min(1.0, t / 0.05 + 1e-3) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / 0.25)))
        jitter = 0.05 * w_spread * max(0.0, 1 - t / 0.75) ** 2
        out = render(w + jitter * torch.randn(w.shape, generator=gen))
        loss = (out - target).abs().mean() + MS_SSIM_WEIGHT * (1 - ms_ssim(out, target)).mean()
        if maps:
            loss = loss + NOISE_REG_WEIGHT * noise_regulariser(list(maps.values()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in params:  # MS-SSIM's clamped fractional powers can give NaN gradients at zero
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
        opt.step()
        curve[-1]["loss"] = float(loss.detach())
        if maps:
            with torch.no_grad():
                for n in maps.values():
                    n.sub_(n.mean()).div_(n.std().clamp_min(1e-8))
        if progress and step % max(1, steps // 10) == 0:
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}", psnr=f"{curve[-1]['psnr']:.2f} dB")
    ws = w.detach().expand(-1, num_ws, -1).clone()
    return Projection(ws=ws, image=image.detach(), target=target, curve=curve,
                      noise={k: v.detach() for k, v in maps.items()} or None, class_name=class_name)


# ----------------------------------------------------------------------
# Files


def plot_fit_curve(result: Projection, path: Path) -> None:
    plt = pyplot()
    steps = [c["step"] for c in result.curve]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(steps, [c["psnr"] for c in result.curve], color="black", lw=1.2)
    ax.axhline(POOR_FIT_PSNR, color="tab:red", ls="--", lw=1, label=f"poor fit below {POOR_FIT_PSNR:g} dB")
    ax.set(xlabel="step", ylabel="PSNR (dB)", title=f"projection: {result.psnr:.2f} dB, SSIM {result.ssim:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def save_projection(result: Projection, folder: str | Path, info: dict) -> Path:
    """Write target.png, projected.png, latent.safetensors, fit_curve.png and projection.json
    into a new folder (refused if it exists with files; written whole or not at all)."""


    with new_folder(Path(folder)) as tmp:
        (tmp / "target.png").write_bytes(png_bytes(to_uint8(result.target)[0]))
        (tmp / "projected.png").write_bytes(png_bytes(to_uint8(result.image)[0]))
        tensors = {"ws": result.ws[0].contiguous()}
        tensors.update({f"noise/{k}": v.contiguous() for k, v in (result.noise or {}).items()})
        save_file(tensors, str(tmp / "latent.safetensors"), metadata={"class_name": str(result.class_name)})
        plot_fit_curve(result, tmp / "fit_curve.png")
        report = {**info, "class_name": result.class_name, "psnr_db": round(result.psnr, 3),
                  "ssim": round(result.ssim, 4), "start_psnr_db": round(result.start_psnr, 3),
                  "poor_fit": result.poor_fit, "poor_fit_below_db": POOR_FIT_PSNR, "verdict": result.verdict(),
                  "curve": result.curve}
        (tmp / "projection.json").write_text(json.dumps(report, indent=2))
    return Path(folder)


def load_latent(folder: str | Path) -> torch.Tensor:
    """The projected styles [1, num_ws, w_dim] saved by save_projection."""
    return load_file(str(Path(folder) / "latent.safetensors"))["ws"][None]


def project_file(model: str | Path, image: str | Path, *, out: str | Path | None = None,
                 class_name: str | None = None, slice_index: int | None = None, steps: int = 400,
                 per_layer: bool = False, optimise_noise: bool = False, seed: int = 0,
                 out_root: str | Path = DEFAULT_OUT_ROOT, progress: bool = True) -> tuple[Path, Projection]:
    """Load the run, project the slice, write the folder (default <run>/projections/<image name>)."""

    G, cfg, meta = load(model, out_root=out_root)
    target = load_slice(image, cfg, res=G.trained_res, slice_index=slice_index)
    stem = Path(image).name.split(".")[0] + ("" if slice_index is None else f"-{slice_index}")
    folder = Path(out) if out is not None else run_dir_of(model, out_root=out_root).projections / stem
    if folder.exists() and any(folder.iterdir()):  # checked before the minutes of fitting, and again on writing
        raise FolderExistsError(f"{folder} already exists and is not empty; choose another --out")
    result = project(G, target, class_name=class_name, steps=steps, per_layer=per_layer,
                     optimise_noise=optimise_noise, seed=seed, progress=progress)
    ckpt = resolve_checkpoint(model, out_root)
    info = {"model": str(model), "checkpoint": str(ckpt), "checkpoint_sha256": file_sha256(ckpt),
            "image": str(image), "slice_index": slice_index, "res": int(G.trained_res), "steps": steps,
            "per_layer": per_layer, "optimise_noise": optimise_noise, "seed": seed,
            "loss": f"L1 + {MS_SSIM_WEIGHT:g} x (1 - MS-SSIM)"}
    return save_projection(result, folder, info), result
