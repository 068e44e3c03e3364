"""Training throughput: images per second for one full critic + generator step (gradient
penalty included) at each resolution, for the demo and paper model sizes, on this device.

    .venv/bin/python benchmarks/train_speed.py [--presets demo paper] [--steps 1] [--warmup 1] [--threads N]

Prints a table and writes outputs/bench/train_speed.json. A benchmark, not a test; the default
run takes about two minutes on a 2-core CPU (most of it the paper sizes). The timed step is
brainlib.train.Trainer.train_step,
the same code a run executes.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import atomic_write_json
from brainlib.config import preset, project_root
from brainlib.data import SliceDataset, to_model_input
from brainlib.train import Trainer


def _dataset(n: int, size: int) -> SliceDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return SliceDataset(images=images, labels=np.ones(n, np.int64), splits=np.array(["train"] * n),
                        sources=[""] * n, skipped=[], root=Path("memory"))


def measure(preset_name: str, steps: int, warmup: int, device: str) -> list[dict]:
    cfg = preset(preset_name, run="bench", device=device, out_root="/nonexistent")
    trainer = Trainer(cfg, _dataset(max(cfg.batch_sizes.values()), cfg.image_size))
    rows = []
    for i, res in enumerate(cfg.resolutions):
        B = cfg.batch_sizes[res]
        real = to_model_input(trainer.images_u8[:B], res)
        alpha = 1.0 if i == 0 else 0.5  # fading steps run both paths, as during the first half of a step
        for _ in range(warmup):
            trainer.train_step(real, None, res, alpha)
        if trainer.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            stats = trainer.train_step(real, None, res, alpha)
        float(stats["d_loss"])  # wait for the device
        seconds = (time.perf_counter() - t0) / steps
        rows.append({"preset": preset_name, "res": res, "batch": B, "seconds_per_step": round(seconds, 4),
                     "images_per_second": round(B / seconds, 1)})
        print(f"{preset_name:>6} {res:>4} px  batch {B:>4}  {seconds * 1000:8.1f} ms/step  {B / seconds:8.1f} img/s", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["demo", "paper"])
    p.add_argument("--steps", type=int, default=1, help="timed steps per resolution")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(project_root() / "outputs" / "bench" / "train_speed.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows = [r for name in args.presets for r in measure(name, args.steps, args.warmup, args.device)]
    result = {"device": args.device, "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "steps": args.steps, "warmup": args.warmup, "rows": rows}
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
