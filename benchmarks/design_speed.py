"""Training cost of whole designs side by side: seconds per step at each resolution of one
preset with different overrides (architecture, loss, schedule), timed in alternating rounds in
one process, and what the preset's schedule costs with each. The `equal_time_images` column
says how many images per resolution a design may see in the first design's time, which is how
a new design is held to "no slower than the current demo".

    .venv/bin/python benchmarks/design_speed.py --threads 1 \\
        --design v1: --design sg2:arch=stylegan2 --design sg2-direct:arch=stylegan2,start_res=64 \\
        --design 'wide:channels={"4":64,"8":64,"16":64,"32":32,"64":32},images_per_res=14343'

Each timed call is `Trainer.train_step`, the code a run executes, with the lazy penalty paid in
the expected share of steps (1 / reg_every). Writes outputs/bench/design_speed.json.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python benchmarks/design_speed.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, interleaved, set_threads, summary, write_result
from benchmarks.common import resolve_device as bench_device
from brainlib.config import parse_overrides, preset
from brainlib.data.dataset import SliceDataset, to_model_input
from brainlib.training.devices import precision
from brainlib.training.schedule import resolution_budget
from brainlib.training.trainer import Trainer


def parse_design(text: str) -> tuple[str, dict[str, str]]:
    """"name:key=value,key=value" -> (name, overrides); "name:" is the preset as it is. A value may
    be a JSON object with commas inside its braces: 'wide:channels={"32":64,"64":32}'."""
    name, _, pairs = text.partition(":")
    return name, parse_overrides([p for p in re.split(r",(?![^{]*})", pairs) if p])


def random_dataset(n: int, size: int) -> SliceDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return SliceDataset(images=images, labels=np.ones(n, np.int64), splits=np.array(["train"] * n),
                        sources=[""] * n, skipped=[], root=Path("memory"))


def measure(preset_name: str, designs: list[tuple[str, dict]], *, rounds: int, warmup: int, device: str,
            n_images: int = 1600) -> list[dict]:
    dev = bench_device(device)
    cfgs = {name: preset(preset_name, run="bench", device=str(dev), out_root="/nonexistent", **over)
            for name, over in designs}
    trainers = {name: Trainer(cfg, random_dataset(max(cfg.batch_sizes.values()), cfg.image_size))
                for name, cfg in cfgs.items()}
    step_seconds: dict[str, dict[int, float]] = {name: {} for name in cfgs}
    for res in sorted({r for cfg in cfgs.values() for r in cfg.resolutions}):
        contenders = {}
        for name, t in trainers.items():
            if res in cfgs[name].resolutions:
                for regularise in (True, False):
                    contenders[(name, regularise)] = _step(t, res, regularise)
        times = interleaved(contenders, rounds=rounds, warmup=warmup, device=dev)
        for name in cfgs:
            if (name, True) in times:
                k = cfgs[name].reg_every
                reg, noreg = (summary(times[(name, r)])["median_s"] for r in (True, False))
                step_seconds[name][res] = (reg + (k - 1) * noreg) / k
    rows = []
    for name, cfg in cfgs.items():
        steps = {res: resolution_budget(cfg, res, n_images)[1] / cfg.batch_sizes[res] for res in cfg.resolutions}
        seconds = sum(steps[res] * step_seconds[name][res] for res in cfg.resolutions)
        rows.append({"design": name, "overrides": dict(designs)[name], "precision": precision(cfg, dev),
                     "ms_per_step": {r: round(s * 1000, 1) for r, s in step_seconds[name].items()},
                     "schedule_seconds": round(seconds, 1)})
    reference = rows[0]["schedule_seconds"]
    for row, cfg in zip(rows, cfgs.values(), strict=True):
        row["time_ratio"] = round(row["schedule_seconds"] / reference, 3)
        images = resolution_budget(cfg, cfg.resolutions[-1], n_images)[1]
        row["equal_time_images"] = int(images / row["time_ratio"])
    return rows


def _step(trainer: Trainer, res: int, regularise: bool):
    B = trainer.cfg.batch_sizes[res]
    real = trainer._to_device_layout(to_model_input(trainer.images_u8[:B], res))
    alpha = 1.0 if res == trainer.cfg.resolutions[0] else 0.5

    def step():
        trainer.position.critic_steps = 0 if regularise else 1  # the lazy penalty: paid when 0
        return trainer.train_step(real, None, res, alpha)
    return step


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--design", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                   help="a design to time (repeat); the first is the reference")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    rows = measure(args.preset, [parse_design(d) for d in args.design], rounds=args.rounds,
                   warmup=args.warmup, device=args.device)
    for row in rows:
        row["steps"] = " ".join(f"{r}px {ms:.0f}ms" for r, ms in row["ms_per_step"].items())
    print(format_table(rows, ["design", "precision", "steps", "schedule_seconds", "time_ratio", "equal_time_images"]))
    path = write_result("design_speed", {"preset": args.preset, "rows": rows}, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
