"""How cost scales: brainlib's training step time against resolution and batch size, torch
threads 1 vs 2, epoch time against dataset size (1x, 2x, 4x), 2-process CPU DDP beside one
process, and an ESTIMATE of the paper recipe's time on one H100 from counted FLOPs.

    .venv/bin/python benchmarks/scaling.py [--quick] [--preset demo] [--no-ddp] [--no-estimate]

DDP runs `torchrun --nproc_per_node 2` (gloo, one thread per process) on this script's
--ddp-worker mode: the same global batch, each process taking half, as brainlib.training.trainer does.
The H100 figure is not a measurement: FLOPs of one generator + critic step per resolution are
counted on the CPU with torch.utils.flop_counter.FlopCounterMode (batch 2, per image), times
the images of the paper schedule, divided by an assumed sustained fraction of the H100's
dense bf16 peak; a kernel-launch floor (aten ops per step x an assumed launch cost) is given
beside it, because at batch 8 and 128 px the GPU is more likely launch-bound than FLOP-bound.
Prints tables and writes outputs/bench/scaling.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ROOT,
    format_table,
    interleaved,
    peak_rss_mb,
    resolve_device,
    set_threads,
    summary,
    write_result,
)
from benchmarks.train_speed import _dataset
from brainlib.config import preset
from brainlib.data.dataset import to_model_input
from brainlib.training.trainer import Trainer

H100_BF16_DENSE_TFLOPS = 989.0  # SXM, dense (no sparsity), NVIDIA datasheet
ASSUMED_MFU = 0.05  # sustained fraction: small convs (16-256 channels), batch 8-128: far from peak
ASSUMED_LAUNCH_US = 6.0  # per aten op on the GPU, eager PyTorch (CUDA graphs would cut it)


def trainer_for(preset_name: str, *, batch: int | None = None, **overrides) -> Trainer:
    cfg = preset(preset_name, run="bench", out_root="/nonexistent", **overrides)
    n = max(batch or 0, max(cfg.batch_sizes.values()))
    return Trainer(cfg, _dataset(n, cfg.image_size))


def step_fn(trainer: Trainer, res: int, batch: int, alpha: float = 1.0):
    real = trainer._to_device_layout(to_model_input(trainer.images_u8[:batch], res))
    return lambda: trainer.train_step(real, None, res, alpha)


def step_vs_resolution_and_batch(preset_name: str, rounds: int, batches: list[int]) -> list[dict]:
    """ms per step and img/s at every resolution at the preset's batch, and at `batches` at the top one."""
    trainer = trainer_for(preset_name, batch=max(batches))
    cfg = trainer.cfg
    cases = [(res, cfg.batch_sizes[res]) for res in cfg.resolutions]
    cases += [(cfg.image_size, b) for b in batches if b != cfg.batch_sizes[cfg.image_size]]
    rows = []
    for res, batch in cases:
        times = interleaved({"step": step_fn(trainer, res, batch)}, rounds=rounds, warmup=1,
                            device=trainer.device)["step"]
        s = summary(times)["median_s"]
        rows.append({"preset": preset_name, "res": res, "batch": batch, "ms_per_step": 1000 * s,
                     "img_s": batch / s, "us_per_image_px": 1e6 * s / (batch * res * res)})
    return rows


def threads_compare(preset_name: str, res: int, rounds: int, warmup: int = 1) -> dict:
    """The same step at 1 and 2 torch threads, interleaved (others' load hurts 2 threads most)."""
    trainer = trainer_for(preset_name)
    batch = trainer.cfg.batch_sizes[res]
    fn = step_fn(trainer, res, batch)
    default = torch.get_num_threads()

    def at(n):
        def run():
            torch.set_num_threads(n)
            fn()
        return run
    times = interleaved({"1": at(1), "2": at(2)}, rounds=rounds, warmup=warmup, device=trainer.device)
    torch.set_num_threads(default)
    return {"preset": preset_name, "res": res, "batch": batch,
            **{f"threads_{k}_img_s": batch / summary(v)["median_s"] for k, v in times.items()}}


# ----------------------------------------------------------------------
# DDP


def ddp_worker(args) -> None:
    """One process of the torchrun run: time train_step on this rank's share of each global batch."""
    from brainlib.training import distributed as dist
    torch.set_num_threads(1)
    cfg = preset(args.preset, run="bench", out_root="/nonexistent", reg_every=args.reg_every)
    dist.init_from_env(torch.device("cpu"))
    try:
        trainer = Trainer(cfg, _dataset(max(cfg.batch_sizes.values()), cfg.image_size))
        world, rank = dist.world_size(), dist.rank()
        res = args.res
        batch = cfg.batch_sizes[res]
        real = to_model_input(trainer.images_u8[:batch][rank::world], res)
        for _ in range(cfg.reg_every):
            trainer.train_step(real, None, res, 1.0)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(real, None, res, 1.0)
        dist.barrier()
        seconds = (time.perf_counter() - t0) / args.steps
        if rank == 0:
            Path(args.ddp_out).write_text(json.dumps({"world": world, "res": res, "global_batch": batch,
                                                      "seconds_per_step": seconds, "img_s": batch / seconds}))
    finally:
        dist.shutdown()


def ddp_compare(preset_name: str, res: int, steps: int, reg_every: int) -> list[dict]:
    """Global images per second with 1 and 2 CPU processes (torchrun, gloo), run one after the other."""
    rows = []
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ddp.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   str(Path(__file__).resolve()), "--ddp-worker", "--preset", preset_name, "--res", str(res),
                   "--steps", str(steps), "--reg-every", str(reg_every), "--ddp-out", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(f"torchrun with {nproc} processes failed:\n{done.stderr[-2000:]}")
            rows.append({"preset": preset_name, "processes": nproc, **json.loads(out.read_text())})
    rows[1]["speedup"] = rows[1]["img_s"] / rows[0]["img_s"]
    return rows


# ----------------------------------------------------------------------
# H100 estimate


class OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts aten ops: on a GPU each is at least one kernel launch."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


class _NoModuleTracker:
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_step(trainer: Trainer, res: int, batch: int, regularise: bool) -> tuple[float, int]:
    """(FLOPs, aten ops) of one train_step with or without the penalty."""
    from torch.utils.flop_counter import FlopCounterMode
    real = to_model_input(trainer.images_u8[:batch], res)
    alpha = 0.5 if res > trainer.cfg.start_res else 1.0
    flops, ops = FlopCounterMode(display=False), OpCounter()
    flops.mod_tracker = _NoModuleTracker()  # totals only; its per-module hooks trip on no_grad inputs
    for mode in (flops, ops):
        trainer.position.critic_steps = 0 if regularise else 1
        with mode:
            trainer.train_step(real, None, res, alpha)
    return float(flops.get_total_flops()), ops.ops


def h100_estimate(preset_name: str = "paper", images: int = 15_000, epochs: float = 12.0, reg_every: int = 4,
                  count_batch: int = 2) -> dict:
    """Estimated hours for the preset's schedule on one H100 (see the module docstring)."""
    trainer = trainer_for(preset_name)
    cfg = trainer.cfg
    rows, total_s, total_floor_s = [], 0.0, 0.0
    for res in cfg.resolutions:
        f_reg, ops_reg = count_step(trainer, res, count_batch, True)
        f_no, ops_no = count_step(trainer, res, count_batch, False)
        flops_per_image = (f_reg + (reg_every - 1) * f_no) / reg_every / count_batch
        ops_per_step = (ops_reg + (reg_every - 1) * ops_no) / reg_every
        n = images * epochs
        steps = n / cfg.batch_sizes[res]
        flop_s = n * flops_per_image / (ASSUMED_MFU * H100_BF16_DENSE_TFLOPS * 1e12)
        launch_s = steps * ops_per_step * ASSUMED_LAUNCH_US * 1e-6
        total_s += max(flop_s, launch_s)
        total_floor_s += launch_s
        rows.append({"res": res, "batch": cfg.batch_sizes[res], "gflop_per_image": flops_per_image / 1e9,
                     "aten_ops_per_step": ops_per_step, "flop_bound_min": flop_s / 60,
                     "launch_bound_min": launch_s / 60})
    return {"ESTIMATE": True, "preset": preset_name, "images": images, "epochs_per_res": epochs,
            "reg_every": reg_every, "assumptions": {
                "h100_bf16_dense_tflops": H100_BF16_DENSE_TFLOPS, "sustained_fraction": ASSUMED_MFU,
                "launch_us_per_aten_op": ASSUMED_LAUNCH_US,
                "note": "per resolution the larger of the FLOP time and the launch floor; excludes "
                        "data loading (the uint8 array sits on the GPU), checkpoints and samples"},
            "rows": rows, "estimated_hours": total_s / 3600, "launch_floor_hours": total_floor_s / 3600}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke preset, one round, estimate on smoke widths")
    p.add_argument("--preset", default="demo")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--no-ddp", action="store_true")
    p.add_argument("--no-estimate", action="store_true")
    p.add_argument("--ddp-res", type=int, default=32)
    p.add_argument("--ddp-steps", type=int, default=8)
    p.add_argument("--data", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    # the torchrun worker
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--res", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--reg-every", type=int, default=4)
    p.add_argument("--ddp-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args)
    set_threads(args.threads)
    if args.quick:
        args.preset, args.rounds, args.batches, args.ddp_res, args.ddp_steps = "smoke", 1, [4], 16, 2
    result: dict = {"preset": args.preset, "quick": args.quick, "device": str(resolve_device())}
    result["steps"] = step_vs_resolution_and_batch(args.preset, args.rounds, args.batches)
    print(format_table(result["steps"], ["preset", "res", "batch", "ms_per_step", "img_s", "us_per_image_px"]))
    top = preset(args.preset).image_size
    result["threads"] = threads_compare(args.preset, top, args.rounds, warmup=0 if args.quick else 1)
    print(format_table([result["threads"]], ["preset", "res", "batch", "threads_1_img_s", "threads_2_img_s"]))
    from benchmarks.common import dataset_root
    from benchmarks.data_speed import epoch_scaling
    result["epoch_scaling"] = epoch_scaling(dataset_root(args.data), limit=64 if args.quick else 1024,
                                            res=top, batch=8)
    print(format_table(result["epoch_scaling"], ["factor", "images", "epoch_s", "us_per_image"]))
    if not args.no_ddp:
        result["ddp"] = ddp_compare(args.preset, args.ddp_res, args.ddp_steps, args.reg_every)
        print(format_table(result["ddp"], ["preset", "processes", "res", "global_batch", "img_s", "speedup"]))
    if not args.no_estimate:
        est = h100_estimate("smoke" if args.quick else "paper", images=64 if args.quick else 15_000,
                            reg_every=args.reg_every)
        result["h100_estimate"] = est
        print("H100 ESTIMATE (counted FLOPs / assumed sustained fraction; not a measurement):")
        print(format_table(est["rows"], ["res", "batch", "gflop_per_image", "aten_ops_per_step",
                                         "flop_bound_min", "launch_bound_min"]))
        print(f"estimated {est['estimated_hours']:.2f} h for {est['preset']} ({est['images']} images x "
              f"{est['epochs_per_res']:g} epochs per resolution, {ASSUMED_MFU:.0%} of "
              f"{H100_BF16_DENSE_TFLOPS:g} TFLOPS, {ASSUMED_LAUNCH_US:g} us per op)")
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = write_result("scaling", result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
