"""Generation speed: images per second at 128 px, batched versus one at a time, and the
latent explorer's update latency (`LatentExplorer.render`) at 64 and 128 px.

    .venv/bin/python benchmarks/generation_speed.py [--quick] [--n 64] [--threads N]

Random weights at the paper preset's widths (speed does not depend on training). Batched is
`sampling.sample_images(G, n, batch_size=64)`; one at a time is the same call with
batch_size=1, interleaved round by round. Prints a table and writes
outputs/bench/generation_speed.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    format_table,
    gpu_peak_mb,
    interleaved,
    peak_rss_mb,
    reset_gpu_peak,
    resolve_device,
    set_threads,
    summary,
    write_result,
)
from brainlib.config import RunConfig, preset
from brainlib.networks.build import build_generator
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import StyleGenerator
from brainlib.synthesis.sampling import sample_images


def bench_config(preset_name: str, size: int) -> RunConfig:
    return preset(preset_name, image_size=size, run=f"bench-{size}")


def generator(cfg: RunConfig, device: torch.device) -> StyleGenerator:
    torch.manual_seed(0)
    return build_generator(network_settings(cfg)).to(device).eval().requires_grad_(False)


def batched_vs_single(G: StyleGenerator, n: int, batch: int, rounds: int, device: torch.device) -> dict:
    reset_gpu_peak(device)
    times = interleaved({"batched": lambda: sample_images(G, n, batch_size=batch),
                         "single": lambda: sample_images(G, n, batch_size=1)},
                        rounds=rounds, warmup=1, device=device)
    row = {"res": G.image_size, "n": n, "batch": batch}
    for who, seconds in times.items():
        row[f"{who}_img_s"] = n / summary(seconds)["median_s"]
    row["ratio"] = row["batched_img_s"] / row["single_img_s"]
    row["gpu_peak_mb"] = gpu_peak_mb(device)
    return row


def explorer_latency(G: StyleGenerator, cfg: RunConfig, repeats: int) -> dict:
    """Median and 90th-percentile seconds of LatentExplorer.render over slider-like changes."""
    from brainlib.synthesis.directions import compute_directions
    from brainlib.synthesis.explorer import LatentExplorer
    ex = LatentExplorer(G, cfg, directions=compute_directions(G, k=4, n_samples=500), k=4)
    changes = [dict(directions=[0.1 * (i % 7), 0.0, 0.0, 0.0]) if i % 3 else dict(seed=i) for i in range(repeats)]
    ex.render(seed=1)  # warm-up
    times = []
    for c in changes:
        t0 = time.perf_counter()
        ex.render(**c)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"res": G.image_size, "repeats": repeats, "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * times[max(0, int(0.9 * len(times)) - 1)]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke widths at 16 px, 8 images, 3 renders")
    p.add_argument("--n", type=int, default=64, help="images per timed call")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="explorer renders per size")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    name, gen_size, explorer_sizes = ("paper", 128, (64, 128))
    if args.quick:
        name, gen_size, explorer_sizes = "smoke", 16, (16,)
        args.n, args.batch, args.rounds, args.repeats = 8, 8, 1, 3
    rows = [batched_vs_single(generator(bench_config(name, gen_size), device), args.n, args.batch, args.rounds, device)]
    print(format_table(rows, ["res", "n", "batch", "batched_img_s", "single_img_s", "ratio"]))
    configs = [bench_config(name, s) for s in explorer_sizes]
    latency = [explorer_latency(generator(cfg, torch.device("cpu")), cfg, args.repeats) for cfg in configs]
    print(format_table(latency, ["res", "repeats", "median_ms", "p90_ms"]))
    result = {"preset_widths": name, "device": str(device), "generation": rows, "explorer": latency,
              "quick": args.quick, "peak_rss_mb": round(peak_rss_mb(), 1)}
    path = write_result("generation_speed", result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
