"""Pictures of a run: sample grids, loss curves and the texture probe's figures (matplotlib Agg, files
written atomically)."""
from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from brainlib.atomic import atomic_write, atomic_write_bytes
from brainlib.config import RunConfig
from brainlib.rundir import RunDir

CLASS_COLOURS = {"AD": "tab:red", "NC": "tab:blue"}  # the same in every figure
LOSS_KEYS = ("d_loss", "g_loss")
LOSS_LABELS = {"d_loss": "critic (D)", "g_loss": "generator (G)", "loss": "denoiser"}


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Save images in [-1, 1] ([N,1,H,W] or [N,H,W]) as one PNG grid, `nrow` images per row."""

    images = images.detach().float().cpu()
    if images.dim() == 3:
        images = images[:, None]
    images = (images.clamp(-1, 1) + 1) / 2
    path = Path(path)
    atomic_write(path, lambda tmp: save_image(images, tmp, nrow=nrow, padding=2, pad_value=1.0, format="png"))
    return path


def save_step_figures(run: RunDir, checkpoint: str, samples: torch.Tensor, nrow: int, rows: list[dict]) -> None:
    """After a resolution step: the fixed latents' sample grid, named as the step's checkpoint,
    and the loss curves so far."""
    save_grid(samples, run.checkpoint_grid(checkpoint), nrow=nrow)
    plot_losses_per_batch(rows, run.loss_per_batch_plot)
    plot_losses_per_epoch(rows, run.loss_per_epoch_plot)
    save_texture_plot(run, rows)


def pyplot(headless: bool = True):
    """matplotlib.pyplot, imported on first use: `headless` selects the Agg backend first, for
    figures written to files from any thread; a figure a notebook shows inline keeps the
    notebook's backend. That choice must come before pyplot's import, hence lazy."""
    import matplotlib
    if headless:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _batch_rows(rows: Iterable[dict], keys: Sequence[str] = LOSS_KEYS) -> list[dict]:
    return [r for r in rows if r.get("kind", "batch") == "batch" and any(k in r for k in keys)]


def _panels(rows: list[dict], steps: Sequence[int] | None) -> dict[int, list[dict]]:
    by_step: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        if steps is None or r["step"] in steps:
            by_step[r["step"]].append(r)
    return dict(sorted(by_step.items()))


def _title(kind: str, steps: list[int]) -> str:
    if not steps:
        return f"Loss per {kind}: no data"
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]} to {steps[-1]}"
    return f"Loss per {kind}: {span}"


def loss_figure(panels: dict, keys: Sequence[str], *, kind: str, point, ylabel: str, **style):
    """One panel per resolution step, one line per loss key; `point(i, row)` gives x for row i.

    Constrained layout keeps the figure title clear of the panels' titles at any panel count."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False, layout="constrained")
    for ax, (step, rs) in zip(axes[0], panels.items(), strict=False):
        for key in keys:
            pts = [(point(i, r), r[key]) for i, r in enumerate(rs) if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=LOSS_LABELS.get(key, key), **style)
        ax.set_title(f"step {step}: {rs[0]['res']} px")
        ax.set_xlabel(kind)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # batches and epochs are counts
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if panels:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(_title(kind, list(panels)))
    return fig


def plot_losses_per_batch(rows: Iterable[dict], path: str | Path, *, steps: Sequence[int] | None = None,
                          keys: Sequence[str] = LOSS_KEYS) -> Path:
    """One panel per resolution step: critic and generator loss for every logged batch.

    `rows` are metrics.jsonl records (`kind == "batch"`, with `step`, `res`, `images_seen`)."""
    fig = loss_figure(_panels(_batch_rows(rows, keys), steps), keys, kind="batch", point=lambda i, r: i,
                      ylabel="loss", lw=0.8)
    return _save_figure(fig, path)


def epoch_means(rows: Iterable[dict], keys: Sequence[str] = LOSS_KEYS) -> list[dict]:
    """Mean of each loss per (step, epoch), in order: the numbers behind plot_losses_per_epoch."""
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in _batch_rows(rows, keys):
        groups[(r["step"], r.get("epoch", 0))].append(r)
    out = []
    for (step, epoch), rs in sorted(groups.items()):
        row = {"step": step, "epoch": epoch, "res": rs[0]["res"], "batches": len(rs)}
        for key in keys:
            vals = [r[key] for r in rs if r.get(key) is not None]
            row[key] = sum(vals) / len(vals) if vals else None
        out.append(row)
    return out


def plot_losses_per_epoch(rows: Iterable[dict], path: str | Path, *, steps: Sequence[int] | None = None,
                          keys: Sequence[str] = LOSS_KEYS) -> Path:
    """One panel per resolution step: the mean critic and generator loss of each epoch."""
    fig = loss_figure(_panels(epoch_means(rows, keys), steps), keys, kind="epoch",
                      point=lambda i, r: r["epoch"] + 1, ylabel="mean loss", marker="o", ms=3, lw=1)
    return _save_figure(fig, path)


def plot_denoising_loss(rows: Iterable[dict], path: str | Path, *, objective: str) -> Path:
    """A diffusion run's loss: the denoiser's mean squared error to its objective's target, per
    logged batch over the images seen, with a running mean (the per-batch loss is noisy: each
    batch draws its own noise levels). `rows` are metrics.jsonl records."""
    pts = [(r["images_seen"], r["loss"]) for r in _batch_rows(rows, ("loss",)) if r.get("loss") is not None]
    fig, ax = pyplot().subplots(figsize=(6.4, 3.6), layout="constrained")
    if pts:
        x, y = zip(*pts, strict=True)
        window = len(y) // 25  # a running mean once there are enough batches to smooth
        ax.plot(x, y, lw=0.6 if window > 1 else 1.2, alpha=0.35 if window > 1 else 1.0, color="tab:purple",
                label="per batch")
        if window > 1:
            mean = torch.tensor(y).unfold(0, window, 1).mean(1).tolist()
            ax.plot(x[window - 1:], mean, lw=1.6, color="tab:purple", label=f"mean of {window} batches")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("images seen")
    ax.set_ylabel(f"MSE to the {objective} target")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Denoising loss per batch" + ("" if pts else ": no data"))
    return _save_figure(fig, path)


def loss_plots(cfg: RunConfig) -> list[Path]:
    """The loss figures cfg's trainer writes: a StyleGAN's per batch and per epoch (a panel per
    resolution step), a diffusion model's denoising loss per batch (plot_denoising_loss)."""
    run = RunDir(cfg.run_dir)
    return [run.loss_per_batch_plot] if cfg.diffusion else [run.loss_per_batch_plot, run.loss_per_epoch_plot]
TEXTURE_PANELS = {"swd_reference": "train-normalised SWD (x1e3)", "spectrum": "power spectrum distance (log10)"}


def save_texture_plot(run: RunDir, rows: Iterable[dict]) -> Path | None:
    """plots/texture.png from a run's metrics.jsonl rows, when they hold a texture probe."""
    probes = [r for r in rows if r.get("kind") == "texture"]
    return plot_texture(probes, run.texture_plot) if probes else None


def plot_texture(rows: Sequence[dict], path: str | Path) -> Path:
    """The texture probe's figures (metrics.jsonl rows of kind "texture", training/texture_probe.py)
    against the images seen: one panel per figure, one line per band (finest darkest), each band's
    real-vs-real floor dashed in its colour, the best score's probe marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(TEXTURE_PANELS), figsize=(4.6 * len(TEXTURE_PANELS), 3.4), squeeze=False,
                             layout="constrained")
    x = [r["images_seen"] / 1000 for r in rows]
    best = min(range(len(rows)), key=lambda i: rows[i]["score"]) if rows else None
    for ax, (key, label) in zip(axes[0], TEXTURE_PANELS.items(), strict=True):
        bands = list(rows[-1][key]) if rows else []
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, max(1, len(bands))))
        for band, colour in zip(bands, colours, strict=False):
            ax.plot(x, [r[key].get(band) for r in rows], "o-", ms=3, lw=1.2, color=colour, label=f"{band} px")
            ax.axhline(rows[-1]["floor"][key][band], color=colour, ls="--", lw=0.8)
        if best is not None:
            ax.axvline(x[best], color="0.6", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("thousand images seen")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if bands:
            ax.legend(fontsize=7, title="band", title_fontsize=7)
    note = (f"best: {rows[best]['images_seen']:,} images, score {rows[best]['score']:.2f} (1 = real vs real)"
            if rows else "no probe yet")
    fig.suptitle(f"Texture probe ({rows[-1]['images'] if rows else 0} slices; dashed: real vs real): {note}",
                 fontsize=9)
    return _save_figure(fig, path)
