"""The diffusion family's speed beside the StyleGAN demo's, in one process on this device.

    .venv/bin/python benchmarks/diffusion_speed.py [--threads 1] [--steps 10 25 50] [--rounds 3] [--quick]

Rows: training images per second of `diffusion-demo` (one DiffusionTrainer.train_step: noise,
denoiser forward and backward, Adam, EMA) and of the StyleGAN `demo` at each resolution
(Trainer.train_step: critic and generator steps, the penalty paid one step in reg_every),
timed in alternating rounds (benchmarks.common.interleaved) so that load from other processes
falls on all alike; the StyleGAN demo's whole schedule in seconds and the diffusion images
that fit in it; then sampling images per second of the diffusion demo for
each DDIM step count, without and with classifier-free guidance (a conditional model: two
network evaluations per step), interleaved as well. Each in the precision a run uses here by default. Writes
outputs/bench/diffusion_speed.json (--quick: the smoke presets, outputs/bench/quick/).
A benchmark, not a test: two to three minutes at one thread.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # `python benchmarks/diffusion_speed.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, interleaved, peak_rss_mb, resolve_device, set_threads, summary, write_result
from brainlib.config import preset
from brainlib.data.dataset import SliceDataset, to_model_input
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.training.devices import precision
from brainlib.training.diffusion_trainer import DiffusionTrainer
from brainlib.training.trainer import Trainer


def _dataset(n: int, size: int) -> SliceDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = np.arange(n) % 2
    return SliceDataset(images=images, labels=labels, splits=np.array(["train"] * n), sources=[""] * n,
                        skipped=[], root=Path("memory"))


def training_rows(diffusion: str, stylegan: str, device: torch.device, rounds: int, warmup: int) -> list[dict]:
    """img/s of the diffusion preset's training step and of the StyleGAN preset's at each of its
    resolutions (fading steps at alpha 0.5, as in their first part), timed interleaved; the
    StyleGAN's whole schedule in seconds, and the diffusion images that fit in the same time."""
    dcfg = preset(diffusion, run="bench", device=str(device), out_root="/nonexistent")
    gcfg = preset(stylegan, run="bench", device=str(device), out_root="/nonexistent")
    dB = dcfg.diffusion_batch
    dtrainer = DiffusionTrainer(dcfg, _dataset(dB, dcfg.image_size))
    gtrainer = Trainer(gcfg, _dataset(max(gcfg.batch_sizes.values()), gcfg.image_size))
    dx = dtrainer._layout(to_model_input(dtrainer.images_u8, dcfg.image_size))
    k = gcfg.reg_every

    def stylegan_step(res: int, alpha: float, regularise: bool):
        x = gtrainer._to_device_layout(to_model_input(gtrainer.images_u8[:gcfg.batch_sizes[res]], res))
        gtrainer.position.critic_steps = 0 if regularise else 1  # the lazy penalty on this step or not
        return gtrainer.train_step(x, None, res, alpha)

    contenders = {"diffusion": lambda: dtrainer.train_step(dx, None)}
    for i, res in enumerate(gcfg.resolutions):
        alpha = 1.0 if i == 0 else 0.5
        contenders[f"{res}_reg"] = lambda res=res, alpha=alpha: stylegan_step(res, alpha, True)
        if k > 1:
            contenders[f"{res}_noreg"] = lambda res=res, alpha=alpha: stylegan_step(res, alpha, False)
    med = {who: summary(s)["median_s"] for who, s in interleaved(contenders, rounds=rounds, warmup=warmup,
                                                                  device=device).items()}
    d_img_s = dB / med["diffusion"]
    rows, run_seconds = [], 0.0
    for res in gcfg.resolutions:
        B = gcfg.batch_sizes[res]
        seconds = (med[f"{res}_reg"] + (k - 1) * med.get(f"{res}_noreg", 0.0)) / k
        images = gcfg.images_per_res if isinstance(gcfg.images_per_res, int) else gcfg.images_per_res[res]
        run_seconds += images / (B / seconds)
        rows.append({"what": "train", "preset": stylegan, "res": res, "batch": B, "reg_every": k,
                     "precision": precision(gcfg, device), "seconds_per_batch": round(seconds, 4),
                     "img_per_s": round(B / seconds, 2), "images": images})
    rows.append({"what": "train", "preset": diffusion, "res": dcfg.image_size, "batch": dB,
                 "precision": precision(dcfg, device), "seconds_per_batch": round(med["diffusion"], 4),
                 "img_per_s": round(d_img_s, 2), "images": dcfg.train_images})
    rows.append({"what": "budget", "diffusion_preset": diffusion, "stylegan_run_seconds": round(run_seconds, 1),
                 "diffusion_run_seconds": round(dcfg.train_images / d_img_s, 1),
                 "diffusion_images_in_stylegan_time": int(run_seconds * d_img_s)})
    return rows


def sampling_rows(diffusion: str, device: torch.device, step_counts: list[int], n: int, rounds: int) -> list[dict]:
    """img/s of DDIM sampling per step count, without and with guidance, timed interleaved."""
    cfg = preset(diffusion, class_name="both", run="bench", device=str(device))
    trainer = DiffusionTrainer(cfg, _dataset(cfg.diffusion_batch, cfg.image_size))  # weights as a run starts
    labels = torch.ones(n, dtype=torch.long)
    settings = [(steps, guidance) for guidance in (0.0, cfg.guidance) for steps in step_counts]
    contenders = {(steps, guidance): lambda steps=steps, guidance=guidance: DiffusionSampler(
        trainer.ema, cfg, steps=steps, guidance=guidance).sample(labels, list(range(n)), batch_size=n)
        for steps, guidance in settings}
    times = interleaved(contenders, rounds=rounds, warmup=0, device=device)
    med = {k: summary(s)["median_s"] for k, s in times.items()}
    rows = []
    for (steps, guidance), seconds in med.items():
        rows.append({"what": "sample", "preset": diffusion, "res": cfg.image_size, "steps": steps,
                     "guidance": guidance, "batch": n, "precision": precision(cfg, device),
                     "seconds": round(seconds, 3), "img_per_s": round(n / seconds, 2)})
        print(f"sampling {steps:>3} steps, guidance {guidance:g}: {n / seconds:7.2f} img/s", flush=True)
    return rows


def budget_row(rows: list[dict], cfg) -> None:
    """Add to the budget row the training images that fit in the StyleGAN demo's time once
    1,000 images at the preset's sampling steps (one class, no guidance) are generated too."""
    budget = next(r for r in rows if r["what"] == "budget")
    train = next(r for r in rows if r["what"] == "train" and r["preset"] == budget["diffusion_preset"])
    sample = [r for r in rows if r["what"] == "sample" and r["steps"] == cfg.sample_steps and r["guidance"] == 0]
    if sample:
        left = budget["stylegan_run_seconds"] - 1000 / sample[0]["img_per_s"]
        budget["diffusion_images_with_1000_samples"] = int(max(left, 0.0) * train["img_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the demos are quoted)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50], help="DDIM step counts to time")
    p.add_argument("--n", type=int, default=8, help="images per sampling measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="the smoke presets, 1 round (for tests)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    threads = set_threads(args.threads)
    device = resolve_device(args.device)
    diffusion, stylegan = ("diffusion-smoke", "smoke") if args.quick else ("diffusion-demo", "demo")
    rounds, steps = (1, [2, 4]) if args.quick else (args.rounds, args.steps)
    print(f"torch {torch.__version__}, {threads} threads, {device}")
    rows = training_rows(diffusion, stylegan, device, rounds, args.warmup)
    print(format_table(rows[:-1], ["preset", "res", "batch", "precision", "img_per_s", "images"]), flush=True)
    print(rows[-1], flush=True)
    rows += sampling_rows(diffusion, device, steps, args.n, rounds)
    budget_row(rows, preset(diffusion))
    print(next(r for r in rows if r["what"] == "budget"), flush=True)
    path = write_result("diffusion_speed", {"rows": rows, "rounds": rounds, "peak_rss_mb": peak_rss_mb(),
                                            "quick": args.quick}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
