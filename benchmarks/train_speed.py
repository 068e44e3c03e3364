"""Training throughput: images per second for one full critic + generator step (gradient
penalty included) at each resolution, for the demo and paper model sizes, on this device.

    .venv/bin/python benchmarks/train_speed.py [--presets demo paper] [--steps 1] [--warmup 1] [--threads N]
    .venv/bin/python benchmarks/train_speed.py --baseline [--quick] [--bf16] [--set reg_every=4]

Prints a table and writes outputs/bench/train_speed.json (with --baseline:
outputs/bench/train_vs_baseline.json, see `compare_with_baseline`). A benchmark, not a test; the default
run takes about two minutes on a 2-core CPU (most of it the paper sizes). The timed step is
brainlib.training.trainer.Trainer.train_step,
the same code a run executes.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # `python benchmarks/train_speed.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainlib.atomic import atomic_write_json
from brainlib.config import preset, project_root
from brainlib.data.dataset import SliceDataset, to_model_input
from brainlib.training.devices import precision
from brainlib.training.trainer import Trainer

_DEFAULT_OUT = str(project_root() / "outputs" / "bench" / "train_speed.json")


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
        print(f"{preset_name:>6} {res:>4} px  batch {B:>4}  {seconds * 1000:8.1f} ms/step  {B / seconds:8.1f} img/s",
              flush=True)
    return rows


def compare_with_baseline(presets: list[str], *, data=None, limit: int | None = None, rounds: int = 3,
                          warmup: int = 1, device: str = "auto", overrides: dict | None = None,
                          bf16: bool = False, resolutions: list[int] | None = None) -> list[dict]:
    """brainlib's step beside benchmarks/baseline.py's, interleaved in the same process.

    Each timed call is a whole training step *including getting the batch*: for brainlib an
    index into the cached uint8 array and `to_model_input`; for the baseline `next()` on its
    decoding DataLoader (a new epoch re-decodes the files). The rounds alternate baseline/ours
    after `warmup` untimed calls of each. brainlib runs in float32 (`cpu_bf16=False`, unless the
    overrides say otherwise); with `bf16`, a third contender runs its step with `cpu_bf16=True`, bf16
    autocast (the penalty stays float32, see losses.py), which a run uses by default on CPUs with
    bf16 instructions (`default_precision` in each row).

    Lazy penalty: brainlib's steps with and without the penalty are timed as separate
    contenders (the trainer's counter is set before each), and brainlib's mean step is
    (with + (k - 1) * without) / k for reg_every = k: exact in expectation, and k times
    cheaper to measure than rounds of k steps."""
    from benchmarks.baseline import BaselineTrainer, endless, folder_loader
    from benchmarks.common import cached_images, dataset_root, gpu_peak_mb, interleaved, summary
    from benchmarks.common import resolve_device as bench_device
    from brainlib.data.dataset import to_model_input

    root = dataset_root(data)
    dev = bench_device(device)
    rows = []
    for name in presets:
        cfg = preset(name, run="bench", device=str(dev), out_root="/nonexistent")
        ours_cfg = cfg.replace(cpu_bf16=False).replace(**(overrides or {})).validate()
        k = ours_cfg.reg_every
        dataset = cached_images(root, cfg.image_size, limit)
        base = BaselineTrainer(cfg, dev)
        ours = Trainer(ours_cfg, dataset)
        ours_bf16 = Trainer(ours_cfg.replace(cpu_bf16=True), dataset) if bf16 else None
        n = ours.n_images
        for i, res in enumerate(cfg.resolutions):
            if resolutions and res not in resolutions:
                continue
            B = min(cfg.batch_sizes[res], n)
            alpha = 1.0 if i == 0 else 0.5  # fading steps run both paths, as in the first part of a step
            base_batches = endless(folder_loader(root / "train", res, B, limit=limit))
            order = {"perm": torch.randperm(n), "pos": 0}

            def cached_batch() -> torch.Tensor:
                if order["pos"] + B > n:
                    order["perm"], order["pos"] = torch.randperm(n), 0
                idx = order["perm"][order["pos"]:order["pos"] + B]
                order["pos"] += B
                return ours._to_device_layout(to_model_input(ours.images_u8[idx], res))

            def ours_step(trainer, regularise: bool):
                # choose whether this critic step pays the lazy penalty (Trainer: critic_steps % k == 0)
                trainer.position.critic_steps = 0 if regularise else 1
                return trainer.train_step(cached_batch(), None, res, alpha)

            contenders = {"baseline": lambda: base.train_step(next(base_batches), res, alpha),
                          "ours_reg": lambda: ours_step(ours, True)}
            if k > 1:
                contenders["ours_noreg"] = lambda: ours_step(ours, False)
            if ours_bf16 is not None:
                contenders["bf16_reg"] = lambda: ours_step(ours_bf16, True)
                if k > 1:
                    contenders["bf16_noreg"] = lambda: ours_step(ours_bf16, False)
            times = interleaved(contenders, rounds=rounds, warmup=warmup, device=dev)
            med = {who: summary(seconds)["median_s"] for who, seconds in times.items()}
            # a lazy penalty is paid once every k steps: the mean step is (reg + (k - 1) noreg) / k
            seconds = {"baseline": med["baseline"],
                       "ours": (med["ours_reg"] + (k - 1) * med.get("ours_noreg", 0.0)) / k}
            if ours_bf16 is not None:
                seconds["ours_bf16"] = (med["bf16_reg"] + (k - 1) * med.get("bf16_noreg", 0.0)) / k
            row = {"preset": name, "res": res, "batch": B, "reg_every": k, "rounds": rounds,
                   "default_precision": precision(cfg, dev),
                   "seconds_median": {who: round(v, 4) for who, v in med.items()}}
            for who, s in seconds.items():
                row[f"{who}_img_s"] = round(B / s, 2)
            row["ratio"] = round(row["ours_img_s"] / row["baseline_img_s"], 2)
            if ours_bf16 is not None:
                row["bf16_ratio"] = round(row["ours_bf16_img_s"] / row["baseline_img_s"], 2)
            if dev.type == "cuda":
                row["gpu_peak_mb"] = gpu_peak_mb(dev)
            rows.append(row)
            extra = f"  bf16 {row['ours_bf16_img_s']:7.2f} img/s ({row['bf16_ratio']:.2f}x)" if bf16 else ""
            print(f"{name:>6} {res:>4} px  batch {B:>3}  baseline {row['baseline_img_s']:7.2f} img/s  "
                  f"ours {row['ours_img_s']:7.2f} img/s  ({row['ratio']:.2f}x){extra}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["demo", "paper"])
    p.add_argument("--steps", type=int, default=1, help="timed steps per resolution")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=_DEFAULT_OUT)
    p.add_argument("--baseline", action="store_true", help="interleaved comparison with benchmarks/baseline.py")
    p.add_argument("--quick", action="store_true", help="with --baseline: smoke preset, 32 images, 1 round")
    p.add_argument("--bf16", action="store_true", help="with --baseline: also time CPU bf16 autocast (cpu_bf16=True)")
    p.add_argument("--data", default=None, help="with --baseline: image folder (default: the phantom dataset)")
    p.add_argument("--limit", type=int, default=None, help="with --baseline: use this many images")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--res", type=int, nargs="+", default=None, help="with --baseline: only these resolutions")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="with --baseline: brainlib overrides (default reg_every=4)")
    args = p.parse_args()
    if args.baseline:
        return _main_baseline(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows = [r for name in args.presets for r in measure(name, args.steps, args.warmup, args.device)]
    result = {"device": args.device, "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "steps": args.steps, "warmup": args.warmup, "rows": rows}
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


def _main_baseline(args) -> None:
    from benchmarks.common import peak_rss_mb, set_threads, write_result
    from brainlib.config import parse_overrides
    set_threads(args.threads)
    overrides = parse_overrides(args.set) if args.set else {"reg_every": 4}
    presets = ["smoke"] if args.quick else args.presets
    limit = 32 if args.quick and args.limit is None else args.limit
    rounds = 1 if args.quick else args.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; brainlib with {overrides}")
    rows = compare_with_baseline(presets, data=args.data, limit=limit, rounds=rounds, warmup=args.warmup,
                                 device=args.device, overrides=overrides, bf16=args.bf16, resolutions=args.res)
    out = args.out if args.out != _DEFAULT_OUT else str(Path(_DEFAULT_OUT).with_name("train_vs_baseline.json"))
    path = write_result("train_vs_baseline", {"overrides": overrides, "rows": rows, "peak_rss_mb": peak_rss_mb(),
                                              "quick": args.quick}, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
