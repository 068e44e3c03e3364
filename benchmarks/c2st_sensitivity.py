"""What a C2ST reading means: the same test, run on real held-out images that were changed
by a known, small amount, against the real training images.

    .venv/bin/python benchmarks/c2st_sensitivity.py [--class AD] [--res 64]   # ~5 min on 2 cores
    .venv/bin/python benchmarks/c2st_sensitivity.py --quick --data <tiny dataset> --out <json>

The demo target asks for C2ST <= 0.75 (brainlib.eval.c2st: a small CNN, held-out accuracy, 0.5 =
indistinguishable). Before reading a generator's 0.99 as "bad images", calibrate: unchanged
held-out images give the floor; adding faint noise, blurring slightly or quantising coarser
shows how small a change the classifier already separates perfectly. Uses the code and sizes of
brainlib.eval.evaluate (at most 400 images a side, the `test` split held out). Prints a table and
writes outputs/bench/c2st_sensitivity.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.transforms.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import dataset_root, format_table, set_threads, write_result
from brainlib.data.devsets import DEVELOPMENT_SETS
from brainlib.eval.c2st import c2st_accuracy

BACKGROUND = -0.95  # pixels darker than this are background in [-1, 1] images


def gaussian_noise(sigma: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def change(x, gen):
        return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    return change


def background_noise(sigma: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Half-normal noise on background pixels only: a background that is not quite black."""
    def change(x, gen):
        lifted = (x + sigma * torch.randn(x.shape, generator=gen).abs()).clamp(-1, 1)
        return torch.where(x < BACKGROUND, lifted, x)
    return change


def blur(sigma: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def change(x, gen):
        return TF.gaussian_blur(x, kernel_size=5, sigma=sigma)
    return change


def quantise(levels: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def change(x, gen):
        return torch.round((x + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return change


def brightness(shift: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def change(x, gen):
        return torch.where(x < BACKGROUND, x, (x + shift).clamp(-1, 1))
    return change


# (name, what it does in grey levels of an 8-bit image, the change)
CHANGES: list[tuple[str, str, Callable]] = [
    ("unchanged (floor)", "-", lambda x, gen: x),
    ("noise sd 0.01", "N(0, 1.3 levels) on every pixel", gaussian_noise(0.01)),
    ("noise sd 0.03", "N(0, 3.8 levels) on every pixel", gaussian_noise(0.03)),
    ("noise sd 0.1", "N(0, 13 levels) on every pixel", gaussian_noise(0.1)),
    ("background noise 0.06", "|N(0, 7.6 levels)| on background pixels", background_noise(0.06)),
    ("brain +0.02", "+2.6 levels on brain pixels", brightness(0.02)),
    ("blur sd 0.5 px", "Gaussian blur, sigma 0.5 px", blur(0.5)),
    ("blur sd 1 px", "Gaussian blur, sigma 1 px", blur(1.0)),
    ("32 grey levels", "quantised to 32 levels", quantise(32)),
]


def real_sets(data: str | None, class_name: str, res: int, n: int,
              dataset: str = "phantom") -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, held-out images) of one class at `res`, as brainlib.eval.evaluate reads them."""
    from brainlib.config import preset
    from brainlib.eval.evaluate import _subset, real_images

    cfg = preset("demo", data_root=str(dataset_root(data, dataset)))
    train, held, _ = real_images(cfg, res, False, 0)
    held = held[class_name]
    return train[class_name], _subset(held, min(n, len(held)), 1)


def measure(train: torch.Tensor, held: torch.Tensor, *, seeds: int, epochs: int) -> list[dict]:
    rows = []
    for name, what, change in CHANGES:
        changed = change(held, torch.Generator().manual_seed(0))
        accs = torch.tensor([c2st_accuracy(changed, train, seed=s, epochs=epochs) for s in range(seeds)])
        rows.append({"change": name, "what": what, "c2st": round(float(accs.mean()), 3),
                     "c2st_std": round(float(accs.std()), 3) if seeds > 1 else 0.0,
                     "max_abs_change": round(float((changed - held).abs().max()), 3)})
        print(f"  {name:24s} C2ST {rows[-1]['c2st']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset root with train/ and test/ (default: the embedded one)")
    p.add_argument("--dataset", choices=DEVELOPMENT_SETS, default="phantom",
                   help="without --data: the embedded phantom or colin27 (real MRI texture, make devset)")
    p.add_argument("--class", dest="class_name", default="AD", choices=("AD", "NC"))
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--n", type=int, default=400, help="held-out images at most (as brainlib.eval.evaluate)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="one seed, two epochs (tests)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from brainlib.eval.evaluate import EvalSizes
    sizes = EvalSizes.quick() if args.quick else EvalSizes()
    t0 = time.perf_counter()
    train, held = real_sets(args.data, args.class_name, args.res, args.n, args.dataset)
    print(f"== C2ST of changed real held-out images against real training images "
          f"({args.class_name}, {args.res} px, {len(held)} a side, {sizes.c2st_seeds} seeds)")
    rows = measure(train, held, seeds=sizes.c2st_seeds, epochs=sizes.c2st_epochs)
    print(format_table(rows, ["change", "what", "c2st", "c2st_std"]))
    result = {"class": args.class_name, "res": args.res, "compared": len(held), "seeds": sizes.c2st_seeds,
              "epochs": sizes.c2st_epochs, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
              "quick": args.quick}
    print(f"wrote {write_result('c2st_sensitivity', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
