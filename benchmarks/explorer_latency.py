"""How long one slider move takes in the latent explorer (render + PNG for display), CPU.

Random weights at the paper preset's widths, at 64 and 128 px. Prints a table and writes
outputs/bench/explorer_latency.json. Usage: python benchmarks/explorer_latency.py [--threads N]
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from brainlib.config import preset
from brainlib.networks.build import build_generator
from brainlib.networks.settings import network_settings
from brainlib.synthesis.directions import compute_directions
from brainlib.synthesis.explorer import LatentExplorer


def time_updates(size: int, repeats: int) -> dict:
    cfg = preset("paper", image_size=size, run=f"bench-{size}")
    torch.manual_seed(0)
    G = build_generator(network_settings(cfg)).eval().requires_grad_(False)
    ex = LatentExplorer(G, cfg, directions=compute_directions(G, k=6, n_samples=2000), k=6)
    moves = [dict(directions=[0.1 * (i % 7)] + [0.0] * 5) if i % 3 else dict(seed=i) for i in range(repeats)]
    ex.update(seed=1)  # warm-up
    times = []
    for m in moves:
        t0 = time.perf_counter()
        ex.update(**m)
        ex.display_png()
        times.append(time.perf_counter() - t0)
    return {"size": size, "repeats": repeats, "median_s": statistics.median(times),
            "p90_s": sorted(times)[int(0.9 * len(times)) - 1], "max_s": max(times)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [time_updates(s, args.repeats) for s in (64, 128)]
    for r in rows:
        print(f"{r['size']:>4} px  median {1000 * r['median_s']:.0f} ms  p90 {1000 * r['p90_s']:.0f} ms  "
              f"max {1000 * r['max_s']:.0f} ms  ({r['repeats']} updates, {args.threads} threads)")
    out = Path(__file__).resolve().parents[1] / "outputs" / "bench" / "explorer_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "machine": platform.processor()
                               or platform.machine(), "preset": "paper widths, random weights", "results": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
