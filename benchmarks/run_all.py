"""Every speed benchmark in one go, and one combined table of brainlib against the baseline.

    .venv/bin/python benchmarks/run_all.py            # 10-22 minutes on 2 cores (CPU-dependent), 1 thread
    .venv/bin/python benchmarks/run_all.py --quick    # smoke sizes, well under a minute (tests)

Runs, in this order: training throughput beside benchmarks/baseline.py (train_speed.py
--baseline: the demo preset with rounds, the paper preset with one round; brainlib in float32
and, in the bf16 column, with CPU bf16 autocast, a run's default on CPUs with bf16 instructions
on every preset), data_speed.py, generation_speed.py, scaling.py (with the DDP comparison and
the H100 estimate). Each writes its own JSON under outputs/bench/; this script writes
outputs/bench/run_all.json with all of them and the combined rows.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import data_speed, generation_speed, scaling
from benchmarks.common import format_table, machine, peak_rss_mb, set_threads, write_result
from benchmarks.train_speed import compare_with_baseline


def training(quick: bool, data, reg_every: int) -> list[dict]:
    overrides = {"reg_every": reg_every}
    if quick:
        return compare_with_baseline(["smoke"], data=data, limit=32, rounds=1, overrides=overrides, bf16=True)
    rows = compare_with_baseline(["demo"], data=data, limit=1024, rounds=3, overrides=overrides, bf16=True)
    rows += compare_with_baseline(["paper"], data=data, limit=512, rounds=1, overrides=overrides, bf16=True)
    return rows


def combined_rows(results: dict) -> list[dict]:
    """One line per comparison: what, baseline, brainlib, unit, ratio (higher = brainlib better)."""
    rows = []
    for r in results["training"]:
        rows.append({"benchmark": "train step", "case": f"{r['preset']} {r['res']} px b{r['batch']}",
                     "baseline": r["baseline_img_s"], "brainlib": r["ours_img_s"], "unit": "img/s",
                     "ratio": r["ratio"], "bf16_ratio": r.get("bf16_ratio"), "default": r["default_precision"]})
    for r in results["data"]["rows"]:
        decode = min(v for k, v in r.items() if k.startswith("decode_w"))
        rows.append({"benchmark": "data epoch", "case": f"{r['images']} img to {r['res']} px",
                     "baseline": decode, "brainlib": r["cached_epoch_s"], "unit": "s", "ratio": r["speedup"]})
    for r in results["generation"]["generation"]:
        rows.append({"benchmark": "generate", "case": f"{r['res']} px, batch {r['batch']} vs 1",
                     "baseline": r["single_img_s"], "brainlib": r["batched_img_s"], "unit": "img/s",
                     "ratio": round(r["ratio"], 2)})
    for r in results["generation"]["explorer"]:
        rows.append({"benchmark": "explorer render", "case": f"{r['res']} px median", "brainlib": r["median_ms"],
                     "unit": "ms"})
    ddp = results["scaling"].get("ddp")
    if ddp:
        rows.append({"benchmark": "DDP 2 proc", "case": f"{ddp[0]['preset']} {ddp[0]['res']} px",
                     "baseline": ddp[0]["img_s"], "brainlib": ddp[1]["img_s"], "unit": "img/s (1 vs 2 proc)",
                     "ratio": round(ddp[1]["speedup"], 2)})
    est = results["scaling"].get("h100_estimate")
    if est:
        rows.append({"benchmark": "H100 ESTIMATE", "case": f"{est['preset']} schedule", "brainlib":
                     est["estimated_hours"], "unit": "hours (estimate)"})
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", default=None, help="image folder with a train/ split (default: the phantom)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for every contender (default 1: on 2 shared cores 2 threads collapse; "
                        "scaling.py shows both)")
    p.add_argument("--reg-every", type=int, default=4, help="brainlib's lazy penalty interval")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    t0 = time.perf_counter()
    quick = ["--quick"] if args.quick else []
    common = quick + (["--data", args.data] if args.data else []) + ["--threads", str(args.threads)]
    results: dict = {"machine": machine(), "quick": args.quick, "reg_every": args.reg_every}
    print("== training throughput, brainlib vs baseline (interleaved)", flush=True)
    results["training"] = training(args.quick, args.data, args.reg_every)
    print("== data", flush=True)
    results["data"] = data_speed.main(common + ([] if args.quick else ["--limit", "1024", "--repeats", "1"]))
    print("== generation", flush=True)
    results["generation"] = generation_speed.main(quick + ["--threads", str(args.threads)])
    print("== scaling", flush=True)
    results["scaling"] = scaling.main(common + ["--reg-every", str(args.reg_every)])
    torch.set_num_threads(args.threads)
    results["rows"] = combined_rows(results)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(f"\n== brainlib vs baseline ({results['machine']['time']}, {args.threads} thread(s), "
          f"reg_every={args.reg_every}, {results['seconds']} s)")
    print(format_table(results["rows"], ["benchmark", "case", "baseline", "brainlib", "unit", "ratio", "bf16_ratio",
                                         "default"]))
    path = write_result("run_all", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
