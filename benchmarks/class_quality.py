"""The demo target's two figures for one per-class run: train a preset (with overrides) for one
class, as `make workbook` does, then SWD and C2ST of its images beside their real-vs-real floors.

    .venv/bin/python benchmarks/class_quality.py --name demo --class AD
    .venv/bin/python benchmarks/class_quality.py --name fast --class AD --set lr=0.002
    .venv/bin/python benchmarks/class_quality.py --quick --data <tiny dataset> --results <dir>

quality_per_minute.py ranks configurations of one class-conditional model at a fixed number
of seconds and measures every figure; this script answers the question the demo preset is
held to: how far is a per-class run from the targets (SWD <= 2x its floor, C2ST <= 0.75), and
in how many minutes on this machine. The procedure is that of brainlib.eval.evaluate (the same
SWD and C2ST code and sizes, the `test` split as the held-out floor, at most 400 images a
side), without the encoder figures. The schedule is the preset's (images per resolution),
so a row's images do not depend on the machine's load; its minutes do, and the load average
is recorded. Each row is one line of `<results>/class_quality.jsonl`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

if __package__ in (None, ""):  # `python benchmarks/class_quality.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainlib.atomic import file_lock
from brainlib.config import parse_overrides, preset, project_root
from brainlib.data.devsets import DEVELOPMENT_SETS


def measure(run_dir: Path, class_name: str, *, n: int, seed: int, quick: bool) -> dict:
    """SWD (per set, and normalised by the training images' statistics), the power spectrum's
    distance per band, and C2ST, each with its floor, of `n` images of the run's EMA generator."""
    from brainlib.eval.c2st import c2st, half_resolution
    from brainlib.eval.evaluate import EvalSizes, _subset, real_images, swd_section
    from brainlib.eval.spectrum import spectra_to_reference
    from brainlib.synthesis.sampling import load, sample_images

    sizes = EvalSizes.quick() if quick else EvalSizes()
    G, cfg, meta = load(run_dir.name, out_root=run_dir.parent)
    res = int(meta["res"])
    generated = sample_images(G, n, seed=seed, res=res)
    train, held, notes = real_images(cfg, res, False, seed)
    train, held = train[class_name], held[class_name]
    m = min(len(generated), len(held))
    gen_m, held_m = _subset(generated, m, seed), _subset(held, m, seed + 1)
    swd, swd_ref = (swd_section(generated, train, held_m, sizes, seed, normalise=normalise)
                    for normalise in ("per_set", "reference"))
    spectrum = spectra_to_reference(train, {"generated": gen_m, "floor": held_m})
    seeds = tuple(range(seed, seed + sizes.c2st_seeds))
    two_sample = c2st(gen_m, train, held_m, seeds=seeds, epochs=sizes.c2st_epochs)
    half = c2st(*map(half_resolution, (gen_m, train, held_m)), seeds=seeds, epochs=sizes.c2st_epochs)

    def side(section: dict, key: str) -> dict:
        return {lvl: pair[key] for lvl, pair in section["levels"].items()}

    return {"compared": m, "swd_x1e3": swd["mean"]["generated"], "swd_floor": swd["mean"]["floor"],
            "swd_ratio": swd["mean"]["ratio"], "swd_levels": side(swd, "generated"),
            "swd_floor_levels": side(swd, "floor"), "swd_ref_x1e3": swd_ref["mean"]["generated"],
            "swd_ref_floor": swd_ref["mean"]["floor"], "swd_ref_levels": side(swd_ref, "generated"),
            "swd_ref_floor_levels": side(swd_ref, "floor"), "spectrum_bands": spectrum["generated"]["bands"],
            "spectrum_floor_bands": spectrum["floor"]["bands"],
            "c2st": two_sample["c2st"], "c2st_floor": two_sample["c2st_floor"], "c2st_std": two_sample["c2st_std"],
            "c2st_seeds": two_sample["c2st_seeds"], "c2st_half_res": half["c2st"],
            "c2st_half_res_floor": half["c2st_floor"], "floor_note": notes["note"]}


def run_row(args: argparse.Namespace) -> dict:
    from brainlib.data.devsets import development_set
    from brainlib.training.devices import precision, resolve_device
    from brainlib.training.metrics_log import read_metrics
    from brainlib.training.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    cfg = preset(args.preset, **overrides).replace(
        run=f"{args.name}-{args.class_name}-{stamp}", out_root=args.runs, class_name=args.class_name,
        data_root=args.data or str(development_set(args.dataset)), checkpoint_minutes=1e6).validate()
    load_before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    run_dir = Path(train(cfg))
    train_seconds = time.perf_counter() - t0
    load_after = [round(v, 2) for v in os.getloadavg()]
    batches = [r for r in read_metrics(run_dir) if r.get("kind") == "batch"]
    figures = measure(run_dir, args.class_name, n=args.n, seed=args.seed, quick=args.quick)
    return {"name": args.name, "class": args.class_name, "preset": args.preset, "overrides": overrides,
            "images_seen": int(batches[-1]["images_seen"]) if batches else 0,
            "train_minutes": round(train_seconds / 60, 2), "torch_threads": torch.get_num_threads(),
            "precision": precision(cfg, resolve_device(cfg.device)),
            "loadavg_before": load_before, "loadavg_after": load_after, **figures,
            "grid": str(sorted((run_dir / "samples").glob("*.png"))[-1]), "run_dir": str(run_dir),
            "config": cfg.to_dict(), "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}


def append_row(row: dict, results: Path) -> Path:
    """One JSON line more in <results>/class_quality.jsonl (appends under a lock, never rewrites)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / "class_quality.jsonl"
    with file_lock(results / ".class_quality.lock"), open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    bench = project_root() / "outputs" / "bench"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default=None, help="the row's name (default: the preset)")
    p.add_argument("--preset", default="demo")
    p.add_argument("--class", dest="class_name", default="AD", choices=("AD", "NC"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RunConfig override (repeat)")
    p.add_argument("--data", default=None, help="dataset root with train/ and test/ (default: the embedded one)")
    p.add_argument("--dataset", choices=DEVELOPMENT_SETS, default="phantom",
                   help="without --data: the embedded phantom or colin27 (real MRI texture, make devset)")
    p.add_argument("--n", type=int, default=400, help="generated images (compared: at most the held-out count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, as a run)")
    p.add_argument("--runs", default=str(bench / "class_quality_runs"))
    p.add_argument("--results", default=str(bench))
    p.add_argument("--keep-run", action="store_true", help="keep the run's checkpoints")
    p.add_argument("--quick", action="store_true", help="test mode: smoke preset, 16 images, quick metric sizes")
    args = p.parse_args(argv)
    if args.quick:
        args.preset = "smoke" if args.preset == "demo" else args.preset
        args.n = 16 if args.n == 400 else args.n
    args.name = args.name or args.preset
    return args


def _ratios(values: dict, floors: dict) -> str:
    return " ".join(f"{k}:{values[k] / floors[k]:.2f}x" if floors[k] > 0 else f"{k}:n/a" for k in values)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    row = run_row(args)
    path = append_row(row, Path(args.results))
    if not args.keep_run:
        shutil.rmtree(Path(row["run_dir"]) / "checkpoints", ignore_errors=True)
    print(f"{row['name']} {row['class']}: {row['images_seen']} images in {row['train_minutes']:.1f} min "
          f"({row['torch_threads']} threads, {row['precision']}, load {row['loadavg_before'][0]:.1f}); "
          f"SWD {row['swd_x1e3']:.1f} x1e3 = {row['swd_ratio']:.2f}x floor {row['swd_floor']:.1f}; "
          f"train-normalised SWD per band: {_ratios(row['swd_ref_levels'], row['swd_ref_floor_levels'])}; "
          f"spectrum per band: {_ratios(row['spectrum_bands'], row['spectrum_floor_bands'])}; "
          f"C2ST {row['c2st']:.3f} (floor {row['c2st_floor']:.3f}), at half resolution {row['c2st_half_res']:.3f} "
          f"(floor {row['c2st_half_res_floor']:.3f}); grid {row['grid']}")
    print(f"row appended to {path}")
    return row


if __name__ == "__main__":
    main()
