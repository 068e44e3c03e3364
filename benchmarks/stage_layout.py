"""Where a progressive run loses the brain's layout: each end-of-step checkpoint of a run
(01-8px, 02-16px, ...), its EMA generator's images against the real training slices of its
class, in two figures that read the same at every resolution, beside their real-vs-real floors
(the held-out split against the same training slices):

- layout SWD (`brainlib.eval.metrics.layout_swd`, x1e3): images pooled to 8x8, so it compares where
  brain, ventricles and background sit, and how much that varies, not texture;
- pixel spread: the standard deviation across images at each pixel, averaged over pixels
  (generated / held-out real; below 1 means the images vary less than real slices do).

A final SWD (the pyramid SWD of class_quality.py) says how far a run ends from real slices;
this says at which step the coarse layout drifted away.

    .venv/bin/python benchmarks/stage_layout.py outputs/demo-AD outputs/demo-NC
    .venv/bin/python benchmarks/stage_layout.py RUN_DIR --n 400 --threads 1

Prints a table per run and writes outputs/bench/stage_layout.json.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

if __package__ in (None, ""):  # `python benchmarks/stage_layout.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, set_threads, write_result

STAGE_CHECKPOINT = re.compile(r"^\d\d-\d+px\.safetensors$")


def stage_checkpoints(run_dir: Path) -> list[Path]:
    """The run's end-of-step checkpoints in training order (01-8px, 02-16px, ...)."""
    found = sorted(p for p in (run_dir / "checkpoints").glob("*.safetensors") if STAGE_CHECKPOINT.match(p.name))
    if not found:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'}: no end-of-step checkpoints (NN-<res>px.safetensors); "
                                "class_quality.py keeps them only with --keep-run")
    return found


@torch.no_grad()
def measure_stage(checkpoint: Path, *, n: int, seed: int) -> dict:
    from brainlib.eval.evaluate import _subset, real_images
    from brainlib.eval.metrics import layout_swd
    from brainlib.synthesis.sampling import load, sample_images

    G, cfg, meta = load(checkpoint)
    res = int(meta["res"])
    generated = sample_images(G, n, seed=seed, res=res)
    train, held, _ = real_images(cfg, res, False, seed)
    train, held = train[cfg.class_name], held[cfg.class_name]
    m = min(len(generated), len(held))  # equal sizes, so the two figures compare
    generated, held = _subset(generated, m, seed), _subset(held, m, seed + 1)
    gen_swd, floor_swd = (layout_swd(x, train, seed=seed) for x in (generated, held))
    gen_spread, real_spread = (float(x.std(0).mean()) for x in (generated, held))
    return {"stage": checkpoint.stem, "res": res, "compared": len(generated),
            "layout_swd_x1e3": gen_swd, "layout_swd_floor": floor_swd, "layout_ratio": gen_swd / floor_swd,
            "pixel_spread": gen_spread, "pixel_spread_real": real_spread, "spread_ratio": gen_spread / real_spread}


def measure_run(run_dir: Path, *, n: int, seed: int) -> dict:
    stages = [measure_stage(ck, n=n, seed=seed) for ck in stage_checkpoints(run_dir)]
    return {"run_dir": str(run_dir), "stages": stages}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders with checkpoints/NN-<res>px.safetensors")
    p.add_argument("--n", type=int, default=400, help="generated images (compared: at most the held-out count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON path (default: outputs/bench/stage_layout.json)")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    result = {"n": args.n, "seed": args.seed, "torch_threads": threads,
              "runs": [measure_run(run, n=args.n, seed=args.seed) for run in args.runs]}
    columns = ["stage", "compared", "layout_swd_x1e3", "layout_swd_floor", "layout_ratio", "spread_ratio"]
    for run in result["runs"]:
        print(run["run_dir"])
        print(format_table(run["stages"], columns))
    print(f"written to {write_result('stage_layout', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
