"""Training of the diffusion family: a U-Net denoiser (networks/unet.py) on one noise path
(networks/diffusion.py), with an EMA copy for sampling.

One batch (`DiffusionTrainer.train_step`): timesteps, noise and, for a conditional model,
which labels are dropped to "no class" (classifier-free guidance) are drawn from the
trainer's own seeded generator for the whole global batch, so a resumed run and a run under
torchrun see the same draws; then the denoiser's loss (mean squared error to the
objective's target, in float32), Adam, the EMA. The run folder is a StyleGAN run's:
config.json, metrics.jsonl, checkpoints/ (safetensors, atomic, `--resume` exact on the CPU;
`--resume --set train_images=<more>` trains a finished run longer, keeping its final checkpoint),
samples/ (the EMA denoiser's grid from fixed seeds at each checkpoint) and plots/.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from brainlib.config import RunConfig
from brainlib.data.dataset import to_model_input
from brainlib.networks.diffusion import ARCHITECTURE, NoisePath, build_denoiser
from brainlib.networks.unet import NULL_CLASS
from brainlib.plots import plot_denoising_loss, save_grid, save_texture_plot
from brainlib.progress import progress_bar
from brainlib.rundir import RunDir, images_name
from brainlib.synthesis.diffusion_sampling import DiffusionSampler, grid_labels, grid_seeds
from brainlib.training import checkpoints as ckpt
from brainlib.training import distributed as dist
from brainlib.training.devices import autocast_dtype, precision, resolve_device
from brainlib.training.divergence import diverged, first_non_finite, weights_finite
from brainlib.training.metrics_log import MetricsLog, read_metrics
from brainlib.training.schedule import Position, diffusion_batch_size, ema_beta, epoch_permutation
from brainlib.training.texture_probe import TextureTracker, snapshot_meta

NOISE_SEED_OFFSET = 104_729  # the trainer's noise generator is seeded with seed + this
# settings that shape the denoiser: a resumed run must keep them
ARCHITECTURE_FIELDS = ("family", "image_size", "unet_channels", "unet_blocks", "unet_attention", "objective",
                       "diffusion_timesteps", "class_name")


def diffusion_channels_last(cfg: RunConfig, device: torch.device) -> bool:
    """The setting when given; by default NHWC on CUDA only. On the CPU the U-Net's bf16 training
    step is 1.4x faster in NCHW even on AVX-512 (its GroupNorms; docs/architecture.md), unlike
    the StyleGAN's (devices.use_channels_last)."""
    return cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"


class DiffusionTrainer:
    def __init__(self, cfg: RunConfig, dataset, *, resume: bool = False, max_steps: int | None = None):
        self.cfg, self.max_steps = cfg, max_steps
        self.resumed_changes: dict = {}  # the settings a resume changed (none: they are its config's)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.main = self.rank == 0
        self.device = dist.device_for_rank(resolve_device(cfg.device))
        self.cuda = self.device.type == "cuda"
        self.run_dir = Path(cfg.run_dir)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.net, self.ema = build_denoiser(cfg), build_denoiser(cfg)
        self.ema.load_state_dict(self.net.state_dict())
        self.channels_last = diffusion_channels_last(cfg, self.device)
        for m in (self.net, self.ema):
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.ema.eval().requires_grad_(False)
        self.path = NoisePath(cfg.objective, cfg.diffusion_timesteps)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.net_train = self.net
        if self.world > 1:
            ids = [self.device.index] if self.cuda else None
            self.net_train = DistributedDataParallel(self.net, device_ids=ids)
        if cfg.compile:
            self.net_train = torch.compile(self.net_train)
        # drawn on the device: no host-to-device copy (and wait) per batch on CUDA
        self.noise = torch.Generator(device=self.device).manual_seed(cfg.seed + NOISE_SEED_OFFSET)

        self.images_u8 = torch.from_numpy(np.array(dataset.images, dtype=np.uint8, copy=True)).to(self.device)
        self.labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long).to(self.device)
        self.n_images = len(self.images_u8)
        if self.n_images == 0:
            raise ValueError(f"the dataset at {getattr(dataset, 'root', '?')} holds no images "
                             f"for classes {cfg.classes}")
        self.batch = diffusion_batch_size(cfg, self.n_images)
        if self.batch % self.world:
            raise ValueError(f"diffusion_batch {self.batch} does not split over {self.world} processes")

        self.position = Position()
        self.finished = False
        checkpoint = ckpt.latest_checkpoint(self.run_dir) if resume else None
        if checkpoint:
            self._restore(checkpoint)
        self.log = MetricsLog(self.run_dir, flush_every=25 if self.cuda else 1)
        self.last_checkpoint_time = time.monotonic()
        self.texture = TextureTracker(cfg, self.run_dir, self.n_images, images_seen=self.position.images_seen,
                                      best=ckpt.best_record(self.run_dir) if checkpoint else None)

    # ------------------------------------------------------------------
    # the recipe

    def draws(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(timesteps [n], noise [n,1,S,S], label dropped [n]) for the global batch, this rank's shard."""
        S, g, dev = self.cfg.image_size, self.noise, self.device
        t = torch.randint(0, self.path.T, (n,), generator=g, device=dev)
        eps = torch.randn(n, 1, S, S, generator=g, device=dev)
        drop = torch.rand(n, generator=g, device=dev) < self.cfg.class_dropout
        shard = slice(self.rank, None, self.world)
        return t[shard], eps[shard], drop[shard]

    def train_step(self, x0: torch.Tensor, label: torch.Tensor | None) -> dict:
        t, eps, drop = self.draws(x0.shape[0] * self.world)
        eps = self._layout(eps)
        if label is not None:
            label = torch.where(drop, torch.full_like(label, NULL_CLASS), label)
        x_t = self.path.noised(x0, eps, t)
        with self._autocast():
            prediction = self.net_train(x_t, t.float(), label)
        loss = F.mse_loss(prediction.float(), self.path.target(x0, eps, t))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.update_ema(x0.shape[0] * self.world)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        beta = ema_beta(images, self.cfg.ema_half_life_kimg)
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1.0 - beta)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ------------------------------------------------------------------
    # the loop

    def done(self) -> bool:
        return self.position.images_seen >= self.cfg.train_images

    def run(self) -> Path:
        cfg, p, B = self.cfg, self.position, self.batch
        if self.finished:
            self._say(f"{self.run_dir} has already finished training; nothing to do")
            return self.run_dir
        total = -(-cfg.train_images // B)
        bar = progress_bar(total=total, initial=p.batches, disable=not self.main, desc=f"diffusion {cfg.image_size}px",
                           images_per_update=B, job="training")
        with bar:
            while not self.done():
                perm = epoch_permutation(cfg.seed, cfg.image_size, p.epoch, self.n_images).to(self.device)
                while p.pos + B <= self.n_images and not self.done():
                    t0 = time.perf_counter()
                    idx = perm[p.pos:p.pos + B][self.rank::self.world]
                    x0 = self._layout(to_model_input(self.images_u8[idx], cfg.image_size))
                    stats = self.train_step(x0, self.labels[idx] if cfg.conditional else None)
                    p.pos, p.images_in_step, p.images_seen, p.batches = p.pos + B, p.images_in_step + B, \
                        p.images_seen + B, p.batches + 1
                    dt = time.perf_counter() - t0
                    p.seconds_in_step += dt
                    self.log_batch(stats, seconds=dt)
                    bar.update(1)
                    self.probe_texture(batch=B, final=self.done())
                    if self.max_steps is not None and p.batches >= self.max_steps:
                        self.flush(bar)
                        self.save(finished=self.done())
                        return self.run_dir
                    if self.log.full and self.flush(bar):
                        self.save(finished=False)  # checkpoint_minutes have passed
                if p.pos + B > self.n_images:
                    p.epoch, p.pos = p.epoch + 1, 0
        self.flush()
        self.save(finished=True)
        return self.run_dir

    # ------------------------------------------------------------------
    # logging, divergence, figures, checkpoints

    def log_batch(self, stats: dict, *, seconds: float) -> None:
        p = self.position
        self.log.add({"kind": "batch", "step": 1, "res": self.cfg.image_size, "epoch": p.epoch,
                      "batch": p.batches, "images_seen": p.images_seen, "lr": self.opt.param_groups[0]["lr"],
                      "img_per_sec": round(self.batch / max(seconds, 1e-9), 2), **stats})

    def flush(self, bar=None) -> bool:
        """Write the buffered rows after checking them and the weights; True when a periodic
        checkpoint is due (agreed by all ranks)."""
        rows = self.log.take()
        bad = first_non_finite(rows)
        if bad is None and not weights_finite((self.net,)):
            bad = {"batch": self.position.batches, "what": "a weight"}
        due = time.monotonic() - self.last_checkpoint_time > self.cfg.checkpoint_minutes * 60
        any_bad, due = dist.any_rank([bad is not None, due and self.main], self.device)
        if any_bad:
            bad = bad or {"batch": self.position.batches, "what": "loss on another process"}
            raise diverged({"step": 1, "res": self.cfg.image_size, **bad}, ckpt.latest_checkpoint(self.run_dir))
        if self.main and rows:
            self.log.write(rows)
            losses = [r["loss"] for r in rows if r.get("kind") == "batch"]  # a texture probe's row has none
            if bar is not None and losses:
                bar.set_postfix({"loss": f"{losses[-1]:.4f}"})
        return due

    def probe_texture(self, *, batch: int, final: bool) -> None:
        """The texture probe when it is due (training/texture_probe.py), with PROBE_STEPS DDIM
        steps; the lowest score's EMA denoiser becomes the run's best snapshot."""
        p = self.position
        if not self.main or not self.texture.due(p.images_seen, batch, final=final):
            return
        record, best = self.texture.run(self.images_u8, self.labels, lambda probe: probe.diffusion_images(self.ema),
                                        batch=p.batches, step=1, res=self.cfg.image_size, images_seen=p.images_seen)
        self.log.add(record)
        if best:
            meta = {"config": self.cfg.to_dict(), "family": "diffusion", "architecture": ARCHITECTURE,
                    "res": self.cfg.image_size, "alpha": 1.0, "step": 1, "images_seen": p.images_seen,
                    "finished": final, "texture": snapshot_meta(record)}
            ckpt.save_best_snapshot(self.run_dir, {"G_ema": self.ema}, meta, score=record["score"])

    def describe(self, n_images: int) -> str:
        """The line a fresh run starts with."""
        cfg = self.cfg
        return (f"training {cfg.run}: a {cfg.objective} diffusion model ({parameters(self.net):,} parameters) "
                f"on {n_images} images of {', '.join(cfg.classes)} at {cfg.image_size} px, "
                f"{cfg.train_images:,} images on {self.device}, {precision(cfg, self.device)}"
                + (f" x {self.world} processes" if self.world > 1 else ""))

    def _say(self, message: str) -> None:
        if self.main:
            print(message, flush=True)

    def figures(self, name: str) -> None:
        """The EMA denoiser's samples from fixed seeds, the loss curve and the texture probes so far."""
        sampler = DiffusionSampler(self.ema, self.cfg)
        n = self.cfg.sample_grid ** 2
        images = sampler.sample(grid_labels(self.cfg, n), grid_seeds(self.cfg, n))
        run = RunDir(self.run_dir)
        save_grid(images, run.checkpoint_grid(name), nrow=self.cfg.sample_grid)
        rows = read_metrics(self.run_dir)
        plot_denoising_loss(rows, run.loss_per_batch_plot, objective=self.cfg.objective)
        save_texture_plot(run, rows)

    def save(self, *, finished: bool) -> Path | None:
        self.last_checkpoint_time = time.monotonic()
        if not self.main:
            return None
        p = self.position
        # periodic checkpoints (`...img`) are pruned by the next one; final ones stay, so a run
        # extended by a larger train_images keeps the checkpoint of each budget it finished
        name = images_name(self.cfg.image_size, p.images_seen, finished=finished)
        self.figures(name)
        state = {"rng/noise": self.noise.get_state(), "rng/torch_cpu": torch.get_rng_state()}
        meta = {"config": self.cfg.to_dict(), "family": "diffusion", "architecture": ARCHITECTURE,
                "res": self.cfg.image_size, "alpha": 1.0, "step": 1, "images_seen": p.images_seen,
                "position": asdict(p), "finished": finished, "end_of_step": finished, "world_size": self.world}
        self.finished = finished
        return ckpt.save_training_checkpoint(self.run_dir, name, networks={"G": self.net, "G_ema": self.ema},
                                             optimisers={"opt_G": self.opt}, state=state, meta=meta)

    def _restore(self, path: Path) -> None:
        tensors, meta = ckpt.load_checkpoint(path)
        ckpt.check_same_settings(meta["config"], self.cfg, path, ARCHITECTURE_FIELDS)
        ckpt.restore_training_checkpoint(path, tensors, meta, networks={"G": self.net, "G_ema": self.ema},
                                         optimisers={"opt_G": self.opt})
        self.noise.set_state(tensors["rng/noise"])
        torch.set_rng_state(tensors["rng/torch_cpu"])
        self.position = Position(**meta["position"])
        # a finished run continues when train_images has grown (train it longer)
        self.finished = bool(meta.get("finished", False)) and self.done()
        for group in self.opt.param_groups:  # a resume may change the learning rate
            group["lr"] = self.cfg.lr
        self._say(f"resuming {self.run_dir} from {path.name}: {meta['images_seen']} images seen")


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
