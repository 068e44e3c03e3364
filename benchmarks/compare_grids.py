"""Generated slices of several runs beside real held-out slices, in one PNG for the docs.

    .venv/bin/python benchmarks/compare_grids.py --run outputs/bench/class_quality_runs/<run> \
        --label demo --run <other run> --label demo-sg2 --out docs/compare.png

Each panel is a 4x4 grid (16 images, seed 0, no truncation, EMA generator); the last panel is 16
slices of the first run's class from its dataset's `test` split (the held-out images evaluate
uses as the floor), at the same resolution. Panels are upscaled nearest-neighbour so the texture
the metrics see is visible.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainlib.synthesis.sampling import load, sample_images, to_uint8

PER_PANEL = 16


def tile(images_u8: np.ndarray, cols: int = 4, gap: int = 2) -> np.ndarray:
    """[16, S, S] uint8 -> one [4S + 3 gap, 4S + 3 gap] grid on white."""
    n, s, _ = images_u8.shape
    rows = -(-n // cols)
    out = np.full((rows * s + (rows - 1) * gap, cols * s + (cols - 1) * gap), 255, np.uint8)
    for i, img in enumerate(images_u8):
        r, c = divmod(i, cols)
        out[r * (s + gap):r * (s + gap) + s, c * (s + gap):c * (s + gap) + s] = img
    return out


def held_out_slices(cfg, class_name: str, res: int, n: int, seed: int) -> torch.Tensor:
    from brainlib.eval.evaluate import _subset, real_images
    _, held, _ = real_images(cfg, res, False, seed, classes=[class_name])
    return _subset(held[class_name], n, seed)


def figure(runs: list[Path], labels: list[str], out: Path, *, scale: int = 3, seed: int = 0) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [load(run.name, out_root=run.parent) for run in runs]
    panels = [to_uint8(sample_images(G, PER_PANEL, seed=seed)) for G, _, _ in loaded]
    _, cfg, meta = loaded[0]
    class_name = cfg.class_name
    real = to_uint8(held_out_slices(cfg, class_name, int(meta["res"]), PER_PANEL, seed))
    names = [*labels, f"real held-out {class_name}"]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.5), layout="constrained")
    for ax, images, name in zip(axes, [*panels, real], names, strict=True):
        ax.imshow(np.kron(tile(images), np.ones((scale, scale), np.uint8)), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, type=Path, help="a run folder (repeat)")
    p.add_argument("--label", action="append", default=[], help="the panel title of each --run, in order")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    labels = args.label or [r.name for r in args.run]
    if len(labels) != len(args.run):
        p.error(f"give one --label per --run ({len(args.run)} runs, {len(labels)} labels)")
    print(figure(args.run, labels, args.out, seed=args.seed))


if __name__ == "__main__":
    main()
