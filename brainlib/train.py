"""The Trainer: progressive growing from cfg.start_res to cfg.image_size.

Reads top to bottom as the recipe (`Trainer.train_step`): sample z, one critic step
(WGAN-GP by default, the penalty every `reg_every` steps), every `n_critic` batches one
generator step (w_avg tracked, style mixing), then the EMA of G's weights. Around it:
the schedule (images per resolution, fade-in), the data (a uint8 tensor on the device,
a seeded permutation per epoch), logging to metrics.jsonl, a sample grid and loss plots
after every resolution step, and checkpoints at batch boundaries, so that a resumed run
ends with the same weights as one never interrupted (CPU, fixed seed).

Under `torchrun --nproc_per_node N -m brainlib train ...` the networks are wrapped in
DistributedDataParallel, each rank trains on its shard of every global batch, and rank 0
alone writes files.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainlib import checkpoints as ckpt
from brainlib import distributed as dist
from brainlib.config import CLASS_LABELS, ConfigError, RunConfig
from brainlib.plots import plot_losses_per_batch, plot_losses_per_epoch, save_grid

SAMPLE_SEED_OFFSET = 7919  # the fixed sample latents are drawn from seed + this


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN/Inf; the message names the batch and the checkpoint kept."""


# ----------------------------------------------------------------------
# The schedule


def resolution_budget(cfg: RunConfig, res: int, n_images: int) -> tuple[str, float]:
    """("seconds", s) when cfg.seconds_per_res is set, else ("images", n): what ends a step."""
    def at_res(table: dict[int, float]) -> float:  # a resolution the table lacks gets its largest budget
        return table.get(res, max(table.values()))

    if cfg.seconds_per_res:
        return "seconds", float(at_res(cfg.seconds_per_res))
    if isinstance(cfg.images_per_res, dict):
        return "images", int(at_res(cfg.images_per_res))
    if cfg.images_per_res:
        return "images", int(cfg.images_per_res)
    return "images", int(math.ceil(cfg.epochs_per_res * n_images))


def schedule(cfg: RunConfig, n_images: int) -> list[dict]:
    """One row per resolution step: step (1-based), res, batch, budget, fade length."""
    rows = []
    for i, res in enumerate(cfg.resolutions):
        kind, amount = resolution_budget(cfg, res, n_images)
        rows.append({"step": i + 1, "res": res, "batch": batch_size(cfg, res, n_images), kind: amount,
                     "fade_" + kind: 0 if i == 0 else round(amount * cfg.fade_fraction, 2)})
    return rows


def format_schedule(cfg: RunConfig, n_images: int) -> str:
    lines = []
    for r in schedule(cfg, n_images):
        budget = f"{r['images']} images" if "images" in r else f"{r['seconds']:.0f} s"
        fade = r.get("fade_images", r.get("fade_seconds"))
        lines.append(f"step {r['step']}: {r['res']:>3} px  batch {r['batch']:>3}  {budget}  fade-in {fade}")
    return "\n".join(lines)


def batch_size(cfg: RunConfig, res: int, n_images: int) -> int:
    return max(1, min(cfg.batch_sizes[res], n_images))


def fade_alpha(step_index: int, progress: float, fade_fraction: float) -> float:
    """ProGAN's alpha: rises linearly 0 -> 1 over the first fade_fraction of a step (1 in the first)."""
    if step_index == 0 or fade_fraction <= 0:
        return 1.0
    return min(1.0, progress / fade_fraction)


def lr_factor(step_index: int, n_steps: int, progress: float, rampdown: float) -> float:
    """The learning rates' multiplier: 1, except over the last `rampdown` fraction of the final
    resolution step, where it falls to 0 on a half cosine, so the weights the run ends with
    (and their EMA) settle instead of being a snapshot of a still-oscillating game."""
    start = 1.0 - rampdown
    if rampdown <= 0 or step_index < n_steps - 1 or progress <= start:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - start) / rampdown)))


def epoch_permutation(seed: int, res: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the images in one epoch, a function of (seed, res, epoch) only, so a
    resumed run regenerates it instead of saving it."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + res * 10_007 + epoch) % 2**63)
    return torch.randperm(n, generator=g)


def ema_beta(batch: int, half_life_kimg: float) -> float:
    """Per-update decay so that the EMA halves its memory every half_life_kimg thousand images."""
    return 0.5 ** (batch / max(half_life_kimg * 1000.0, 1e-8))


def parameter_counts(cfg: RunConfig) -> dict[str, int]:
    """Parameters of the mapping network, the synthesis network, G and D."""
    from brainlib.networks import build_discriminator, build_generator
    G, D = build_generator(cfg), build_discriminator(cfg)
    mapping = sum(p.numel() for p in G.mapping.parameters())
    total_g = sum(p.numel() for p in G.parameters())
    return {"mapping": mapping, "synthesis": total_g - mapping, "generator": total_g,
            "discriminator": sum(p.numel() for p in D.parameters())}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use device=auto or cpu")
    return device


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """The setting when given; by default NHWC on CUDA and on CPUs with AVX-512, where oneDNN's
    NHWC kernels win (1.15x at demo 64 px on Sapphire Rapids), and NCHW on AVX2-only CPUs, where
    they lose (0.90x on AMD Zen 3): docs/performance.md."""
    if setting is not None:
        return setting
    return device.type == "cuda" or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cpu_has_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16, AMX), where oneDNN runs bf16 natively.
    Without them bf16 is emulated and 5-9x slower than float32 (docs/performance.md)."""
    flags = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of the training step, or None for float32. CUDA (`amp`): bf16
    where supported, else fp16 with loss scaling. CPU (`cpu_bf16`): bf16, or None."""
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cfg.amp else None
    wanted = cpu_has_bf16() if cfg.cpu_bf16 is None else cfg.cpu_bf16
    return torch.bfloat16 if wanted and device.type == "cpu" else None


def precision(cfg: RunConfig, device: torch.device) -> str:
    """The training step's compute precision by name: "float32", "bfloat16" or "float16"."""
    return str(autocast_dtype(cfg, device) or torch.float32).removeprefix("torch.")


# ----------------------------------------------------------------------
# Where training stands: everything a checkpoint needs to continue at a batch boundary


@dataclass
class Position:
    step_index: int = 0  # index into cfg.resolutions
    epoch: int = 0  # epoch within this step
    pos: int = 0  # images of this epoch's permutation already used
    images_in_step: int = 0
    seconds_in_step: float = 0.0
    images_seen: int = 0  # over the whole run
    batches: int = 0  # over the whole run
    critic_steps: int = 0


def model_config(cfg: RunConfig, lrs: dict[str, float] | None) -> RunConfig:
    """The config the networks are built with: the mapping network's lr multiplier
    (mapping_lr / lr) is part of its weights' meaning, so it stays as the run began even
    when a resume lowers the learning rates (the optimiser groups take the new ones)."""
    return cfg.replace(**lrs) if lrs else cfg


# settings that shape the networks: a resumed run must keep them
ARCHITECTURE_FIELDS = ("arch", "image_size", "z_dim", "w_dim", "mapping_layers", "mapping_activation", "channels",
                       "mbstd_group", "noise_max_res", "label_embed", "class_name")


def check_same_architecture(saved: dict, cfg: RunConfig, source: Path) -> None:
    """Refuse, naming the settings, to resume a run whose networks these settings would not build
    (for example after a preset changed between versions)."""
    old = RunConfig.from_dict(saved)
    changed = {k: (getattr(old, k), getattr(cfg, k)) for k in ARCHITECTURE_FIELDS if getattr(old, k) != getattr(cfg, k)}
    if changed:
        listed = "; ".join(f"{k} was {was!r}, now {now!r}" for k, (was, now) in changed.items())
        raise ConfigError(f"cannot resume {source}: it was trained with other network settings ({listed}). "
                          f"Resume with the run's own settings (e.g. --set {next(iter(changed))}=...) or train a new run.")


class Trainer:
    def __init__(self, cfg: RunConfig, dataset, *, resume: bool = False, max_steps: int | None = None):
        from brainlib.losses import make_loss
        from brainlib.networks import build_discriminator, build_generator

        self.cfg = cfg
        self.max_steps = max_steps
        self.rank, self.world = dist.rank(), dist.world_size()
        self.main = self.rank == 0
        self.device = dist.device_for_rank(resolve_device(cfg.device))
        self.run_dir = Path(cfg.run_dir)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.py_rng = random.Random(cfg.seed)  # style-mixing decisions: host-side, no device sync

        checkpoint = ckpt.latest_checkpoint(self.run_dir) if resume else None
        tensors, meta = ckpt.load_checkpoint(checkpoint) if checkpoint else ({}, {})
        if checkpoint:
            check_same_architecture(meta["config"], cfg, checkpoint)
        self.model_lrs = meta.get("model_lrs", {"lr": cfg.lr, "mapping_lr": cfg.mapping_lr})
        arch = model_config(cfg, self.model_lrs)
        self.G, self.D, self.G_ema = build_generator(arch), build_discriminator(arch), build_generator(arch)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        for m in (self.G, self.D, self.G_ema):
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.G_ema.eval().requires_grad_(False)
        self.loss = make_loss(cfg, self.device)
        self.opt_G, self.opt_D = self._optimisers()
        self.position = Position()
        self._set_lrs()

        self.amp_dtype = autocast_dtype(cfg, self.device)
        scaling = self.amp_dtype == torch.float16
        self.scaler_G = torch.amp.GradScaler("cuda", enabled=scaling)
        self.scaler_D = torch.amp.GradScaler("cuda", enabled=scaling)

        self.G_train, self.D_train = self._wrap(self.G), self._wrap(self.D)
        if cfg.compile:  # the critic stays eager: its gradient penalty needs double backward
            self.G_train = torch.compile(self.G_train)

        # one copy of the (often read-only, memory-mapped) uint8 array, moved to the device once
        self.images_u8 = torch.from_numpy(np.array(dataset.images, dtype=np.uint8, copy=True)).to(self.device)
        self.labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long).to(self.device)
        if len(self.images_u8) == 0:
            raise ValueError(f"the dataset at {getattr(dataset, 'root', '?')} holds no images for classes {cfg.classes}")
        self.n_images = len(self.images_u8)

        n = cfg.sample_grid ** 2
        self.sample_z = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED_OFFSET))
        self.sample_labels = None
        if cfg.conditional:  # rows alternate AD, NC
            rows = torch.arange(n) // cfg.sample_grid
            self.sample_labels = torch.where(rows % 2 == 0, CLASS_LABELS["AD"], CLASS_LABELS["NC"])
        self.resumed_changes: dict[str, Any] = {}
        if checkpoint:
            self._restore(checkpoint, tensors, meta)
        self.finished = bool(meta.get("finished", False))
        self.pending: list[dict] = []  # logged rows whose values are still device tensors
        self.flush_every = 25 if self.cuda else 1  # a host sync per flush, not per batch
        self.last_checkpoint_time = time.monotonic()

    # ------------------------------------------------------------------
    # set-up

    def _optimisers(self):
        """Adam for G and D; their learning rates come from _set_lrs. G's groups: one per
        synthesis block (so the blocks below the step's resolution can run slower), the
        to-image layers, the mapping network. The synthesis parameters come in G.parameters()' order,
        then the mapping's, as when they were one group, so older checkpoints' Adam state still fits."""
        cfg, G = self.cfg, self.G
        groups = [{"params": list(block.parameters()), "name": f"synthesis:{res}"} for res, block in G.blocks.items()]
        groups += [{"params": list(G.to_image.parameters()), "name": "to_image"},
                   {"params": list(G.mapping.parameters()), "name": "mapping"}]
        mapping = {id(p) for p in G.mapping.parameters()}
        synthesis = [id(p) for p in G.parameters() if id(p) not in mapping]
        assert [id(p) for g in groups[:-1] for p in g["params"]] == synthesis, "G's parameter order changed"
        opt_G = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8)
        opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8)
        return opt_G, opt_D

    def _set_lrs(self, factor: float = 1.0) -> None:
        """The config's learning rates times `factor`. The mapping network's EqualLinear layers
        already scale Adam's steps by lr_mul, so its group runs at mapping_lr / lr_mul, which is
        cfg.lr unless a resume changed the lrs. G's blocks below the resolution being trained
        (but the coarse_lr_spared just below it) run at coarse_lr_scale x lr, so later steps
        keep the layout the earlier ones learned."""
        cfg = self.cfg
        lr_mul = self.model_lrs["mapping_lr"] / self.model_lrs["lr"]
        step = min(self.position.step_index, len(cfg.resolutions) - 1)
        slow_below = cfg.resolutions[step] >> cfg.coarse_lr_spared if step > 0 else 0  # step 1 trains all afresh
        for group in self.opt_G.param_groups:
            name = group.get("name", "")
            if name == "mapping":
                group["lr"] = factor * cfg.mapping_lr / lr_mul
            elif name.startswith("synthesis:") and int(name.split(":")[1]) < slow_below:
                group["lr"] = factor * cfg.lr * cfg.coarse_lr_scale
            else:
                group["lr"] = factor * cfg.lr
        for group in self.opt_D.param_groups:
            group["lr"] = factor * cfg.lr

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP
        # higher resolutions are unused until their step, hence find_unused_parameters
        ids = [self.device.index] if self.cuda else None
        return DDP(module, device_ids=ids, find_unused_parameters=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------
    # the recipe

    def train_step(self, real: torch.Tensor, label: torch.Tensor | None, res: int, alpha: float) -> dict:
        """One batch: a critic step, and every n_critic batches a generator step and the EMA."""
        cfg, p = self.cfg, self.position
        stats = self.critic_step(real, label, res, alpha, regularise=p.critic_steps % cfg.reg_every == 0)
        if self.loss.adaptive is not None:
            stats["augment_p"] = self.loss.adaptive.p.clone()
        p.critic_steps += 1
        if p.critic_steps % cfg.n_critic == 0:
            stats |= self.generator_step(real, label, res, alpha)
            self.update_ema(real.shape[0] * self.world * cfg.n_critic)
        return stats

    def critic_step(self, real, label, res, alpha, *, regularise: bool) -> dict:
        z = torch.randn(real.shape[0], self.cfg.z_dim, device=self.device)
        with torch.no_grad(), self._autocast():
            fake = self.G(z, label, res=res, alpha=alpha, update_w_avg=False, **self._mixing(real.shape[0], res))
        with self._autocast():  # DiffAugment, when configured, happens inside the loss
            loss, stats = self.loss.critic_loss(self.D_train, real, fake, label, alpha=alpha,
                                                regularise=regularise, reg_scale=float(self.cfg.reg_every))
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler_D.scale(loss).backward()
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        return {**{k: v.detach() for k, v in stats.items()}, "d_loss": loss.detach()}

    def generator_step(self, real, label, res, alpha) -> dict:
        n = real.shape[0]
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        self.D.requires_grad_(False)
        with self._autocast():
            # a compiled G takes alpha as a tensor, or every new value would trigger a recompile
            alpha_in = torch.tensor(alpha, device=self.device) if self.cfg.compile else alpha
            fake = self.G_train(z, label, res=res, alpha=alpha_in, update_w_avg=True, **self._mixing(n, res))
            loss, stats = self.loss.generator_loss(self.D, fake, label, alpha=alpha, real=real)
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(loss).backward()
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        self.D.requires_grad_(True)
        return {**{k: v.detach() for k, v in stats.items()}, "g_loss": loss.detach()}

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        beta = ema_beta(images, self.cfg.ema_half_life_kimg)
        ema, live = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema, live, 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def _mixing(self, n: int, res: int) -> dict:
        """Style mixing regularisation: with probability p, a second z takes over from a random layer."""
        num_ws = self.G.num_ws_at(res)
        if self.cfg.style_mixing_prob <= 0 or num_ws < 2 or self.py_rng.random() >= self.cfg.style_mixing_prob:
            return {}
        return {"mix_z": torch.randn(n, self.cfg.z_dim, device=self.device),
                "mix_layer": self.py_rng.randrange(1, num_ws)}

    # ------------------------------------------------------------------
    # the loop

    def run(self) -> Path:
        cfg, p = self.cfg, self.position
        if self.finished:
            self._say(f"{self.run_dir} has already finished training; nothing to do")
            return self.run_dir
        while p.step_index < len(cfg.resolutions):
            res = cfg.resolutions[p.step_index]
            if not self.train_resolution(res):
                return self.run_dir  # stopped by max_steps, with a checkpoint
            last = p.step_index == len(cfg.resolutions) - 1
            alpha = self.alpha(res)
            self.end_of_step(res, alpha, finished=last)
            p.step_index += 1
            p.epoch = p.pos = p.images_in_step = 0
            p.seconds_in_step = 0.0
            self._set_lrs()  # the next step's blocks below it may run slower (coarse_lr_scale)
        return self.run_dir

    def progress(self, res: int) -> float:
        """How far the current resolution step is, 0 -> 1, in its budget's unit."""
        p = self.position
        kind, budget = resolution_budget(self.cfg, res, self.n_images)
        return (p.seconds_in_step if kind == "seconds" else p.images_in_step) / budget

    def alpha(self, res: int) -> float:
        return fade_alpha(self.position.step_index, self.progress(res), self.cfg.fade_fraction)

    def lr_factor(self, res: int) -> float:
        cfg = self.cfg
        return lr_factor(self.position.step_index, len(cfg.resolutions), self.progress(res), cfg.lr_rampdown)

    def step_done(self, res: int) -> bool:
        p = self.position
        kind, budget = resolution_budget(self.cfg, res, self.n_images)
        done = (p.seconds_in_step if kind == "seconds" else p.images_in_step) >= budget
        if kind == "seconds" and self.world > 1:  # ranks must agree on a clock-based stop
            done = dist.any_rank([done], self.device)[0]
        return done

    def train_resolution(self, res: int) -> bool:
        """Train one resolution step to its budget; False when max_steps stopped the run."""
        from brainlib.progress import progress_bar

        cfg, p = self.cfg, self.position
        B = batch_size(cfg, res, self.n_images)
        if B % self.world:
            raise ValueError(f"batch size {B} at {res} px does not split over {self.world} processes")
        per_epoch = self.n_images // B  # full batches only; the tail of each permutation is skipped
        while not self.step_done(res):
            perm = epoch_permutation(cfg.seed, res, p.epoch, self.n_images).to(self.device)
            bar = progress_bar(total=per_epoch, initial=p.pos // B, disable=not self.main, leave=False,
                               desc=f"step {p.step_index + 1}/{len(cfg.resolutions)} {res}px epoch {p.epoch + 1}",
                               images_per_update=B, fraction_done=lambda: self.progress(res), job="step")
            with bar:
                while p.pos + B <= self.n_images and not self.step_done(res):
                    t0 = time.perf_counter()
                    idx = perm[p.pos:p.pos + B][self.rank::self.world]  # this rank's shard of the global batch
                    real = self._to_device_layout(self._model_input(idx, res))
                    label = self.labels[idx] if cfg.conditional else None
                    alpha = self.alpha(res)
                    if cfg.lr_rampdown:
                        self._set_lrs(self.lr_factor(res))
                    stats = self.train_step(real, label, res, alpha)
                    p.pos += B
                    p.images_in_step += B
                    p.images_seen += B
                    p.batches += 1
                    dt = time.perf_counter() - t0
                    p.seconds_in_step += dt
                    self.log_batch(stats, res=res, alpha=alpha, seconds=dt, images=B)
                    bar.update(1)
                    if self.max_steps is not None and p.batches >= self.max_steps:
                        self.flush(bar)
                        self.save(res, alpha, end_of_step=False)
                        return False
                    if len(self.pending) >= self.flush_every and self.flush(bar):
                        self.save(res, alpha, end_of_step=False)  # checkpoint_minutes have passed
            if p.pos + B > self.n_images:
                p.epoch, p.pos = p.epoch + 1, 0
        self.flush()
        return True

    def _model_input(self, idx: torch.Tensor, res: int) -> torch.Tensor:
        from brainlib.data import to_model_input
        return to_model_input(self.images_u8[idx], res)

    def _to_device_layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------
    # logging and divergence

    def log_batch(self, stats: dict, *, res: int, alpha: float, seconds: float, images: int) -> None:
        p = self.position
        if p.batches % self.cfg.log_every == 0:
            self.pending.append({"kind": "batch", "step": p.step_index + 1, "res": res, "epoch": p.epoch,
                                 "batch": p.batches, "alpha": round(alpha, 6), "images_seen": p.images_seen,
                                 "images_in_step": p.images_in_step, "lr": self.opt_D.param_groups[0]["lr"],
                                 "img_per_sec": round(images / max(seconds, 1e-9), 2), **stats})

    def flush(self, bar=None) -> bool:
        """Turn the buffered device values into floats (one host sync), check them for
        divergence, append them to metrics.jsonl. Returns whether a periodic checkpoint is
        due, agreed by all ranks (flushes happen at the same batches on every rank)."""
        rows, self.pending = self.pending, []
        values = [v for r in rows for v in r.values() if torch.is_tensor(v)]
        floats = torch.stack([v.float() for v in values]).tolist() if values else []
        it = iter(floats)
        rows = [{k: (next(it) if torch.is_tensor(v) else v) for k, v in r.items()} for r in rows]
        bad = next((r for r in rows if any(isinstance(v, float) and not math.isfinite(v) for v in r.values())), None)
        if bad is None and not self._weights_finite():
            bad = {"batch": self.position.batches, "step": self.position.step_index + 1, "what": "a weight"}
        due = time.monotonic() - self.last_checkpoint_time > self.cfg.checkpoint_minutes * 60
        any_bad, due = dist.any_rank([bad is not None, due and self.main], self.device)
        if any_bad:
            self._diverged(bad or {"batch": self.position.batches, "what": "loss on another process"})
        if self.main and rows:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            if bar is not None:
                last = rows[-1]
                bar.set_postfix({k: f"{last[k]:.3f}" for k in ("d_loss", "g_loss", "gp") if k in last})
        return due

    def _weights_finite(self) -> bool:
        norms = [torch.linalg.vector_norm(p.detach().float()) for m in (self.G, self.D) for p in m.parameters()]
        return bool(torch.isfinite(torch.stack(norms)).all())

    def _diverged(self, row: dict) -> None:
        what = row.get("what") or ", ".join(k for k, v in row.items()
                                           if isinstance(v, float) and not math.isfinite(v))
        latest = ckpt.latest_checkpoint(self.run_dir)
        kept = f"the last good checkpoint {latest} is kept" if latest else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged at batch {row['batch']} (resolution step {row.get('step')}, "
            f"{row.get('res', '?')} px): non-finite {what}; {kept}. Resume with a lower learning rate, "
            f"e.g. `brainlib train --resume --set lr=...` or train(cfg.replace(lr=...), resume=True)")

    def _say(self, message: str) -> None:
        if self.main:
            print(message, flush=True)

    # ------------------------------------------------------------------
    # samples, plots, checkpoints

    @torch.no_grad()
    def sample_grid(self, res: int, alpha: float) -> torch.Tensor:
        """The fixed latents through the EMA generator (constant noise, RNG untouched)."""
        labels = self.sample_labels.to(self.device) if self.sample_labels is not None else None
        with torch.random.fork_rng(devices=[self.device] if self.cuda else []):
            return self.G_ema(self.sample_z.to(self.device), labels, res=res, alpha=alpha, noise_mode="const").float()

    def end_of_step(self, res: int, alpha: float, *, finished: bool) -> None:
        name = f"{self.position.step_index + 1:02d}-{res}px"
        weights = [t for m in (self.G, self.D) for t in m.parameters()]
        if not dist.ranks_agree(weights):
            raise RuntimeError(f"the {self.world} processes hold different weights after step {name}")
        if self.main:
            save_grid(self.sample_grid(res, alpha), self.run_dir / "samples" / f"{name}.png", nrow=self.cfg.sample_grid)
            rows = read_metrics(self.run_dir)
            plot_losses_per_batch(rows, self.run_dir / "plots" / "loss_per_batch.png")
            plot_losses_per_epoch(rows, self.run_dir / "plots" / "loss_per_epoch.png")
        # the checkpoint points at the start of the next step
        p = self.position
        nxt = Position(step_index=p.step_index + 1, images_seen=p.images_seen, batches=p.batches,
                       critic_steps=p.critic_steps)
        self.save(res, alpha, end_of_step=True, finished=finished, position=nxt, name=name)

    def save(self, res: int, alpha: float, *, end_of_step: bool, finished: bool = False,
             position: Position | None = None, name: str | None = None) -> Path | None:
        self.last_checkpoint_time = time.monotonic()
        if not self.main:
            return None
        p = position or self.position
        name = name or f"{self.position.step_index + 1:02d}-{res}px-{p.images_seen:09d}img"
        tensors = {**ckpt.module_tensors(self.G, "G"), **ckpt.module_tensors(self.D, "D"),
                   **ckpt.module_tensors(self.G_ema, "G_ema")}
        signature = ckpt.architecture_signature(tensors)
        opt_g, opt_g_meta = ckpt.optimizer_tensors(self.opt_G, "opt_G")
        opt_d, opt_d_meta = ckpt.optimizer_tensors(self.opt_D, "opt_D")
        tensors |= opt_g | opt_d
        tensors |= {"rng/torch_cpu": torch.get_rng_state(), "sample/z": self.sample_z}
        if self.loss.adaptive is not None:
            tensors |= {f"augment/{k}": v for k, v in self.loss.adaptive.state_dict().items()}
        if self.cuda:
            tensors["rng/torch_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.sample_labels is not None:
            tensors["sample/labels"] = self.sample_labels
        meta = {"config": self.cfg.to_dict(), "model_lrs": self.model_lrs, "res": res, "alpha": alpha,
                "step": self.position.step_index + 1, "images_seen": p.images_seen,
                "images_in_step": p.images_in_step, "position": asdict(p), "finished": finished,
                "end_of_step": end_of_step, "python_rng": _rng_to_json(self.py_rng.getstate()),
                "optimizers": {"opt_G": opt_g_meta, "opt_D": opt_d_meta}, "signature": signature,
                "resumed_with": self.resumed_changes, "world_size": self.world,
                "saved_at": datetime.now().isoformat(timespec="seconds")}
        path = ckpt.save_checkpoint(self.run_dir, name, tensors, meta)
        self._prune_periodic(keep=path)
        return path

    def _prune_periodic(self, keep: Path) -> None:
        """Periodic checkpoints are superseded by any newer one; end-of-step ones stay."""
        for old in (self.run_dir / "checkpoints").glob("*img.safetensors"):
            if old != keep:
                old.with_suffix(".json").unlink(missing_ok=True)
                old.unlink(missing_ok=True)

    def _restore(self, path: Path, tensors: dict, meta: dict) -> None:
        ckpt.load_module(self.G, tensors, "G", path)
        ckpt.load_module(self.D, tensors, "D", path)
        ckpt.load_module(self.G_ema, tensors, "G_ema", path)
        opt_meta = meta["optimizers"]
        ckpt.load_optimizer(self.opt_G, tensors, opt_meta["opt_G"], "opt_G")
        ckpt.load_optimizer(self.opt_D, tensors, opt_meta["opt_D"], "opt_D")
        torch.set_rng_state(tensors["rng/torch_cpu"])
        if self.cuda and "rng/torch_cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng/torch_cuda"], self.device)
        self.py_rng.setstate(_rng_from_json(meta["python_rng"]))
        self.sample_z = tensors["sample/z"]
        if self.loss.adaptive is not None and "augment/p" in tensors:
            self.loss.adaptive.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items()
                                                if k.startswith("augment/")})
        self.sample_labels = tensors.get("sample/labels")
        self.position = Position(**meta["position"])
        self._set_lrs()  # a resume may lower the learning rates (after a divergence): the new ones apply
        old = meta["config"]
        self.resumed_changes = {k: {"was": old.get(k), "now": v} for k, v in self.cfg.to_dict().items()
                                if old.get(k) != v and k not in ("device", "compile")}
        self._say(f"resuming {self.run_dir} from {path.name}: step {meta['step']}, {meta['images_seen']} images seen"
                  + (f"; changed settings: {self.resumed_changes}" if self.resumed_changes else ""))


def _rng_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(state: list):
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of <run>/metrics.jsonl (a torn last line from a crash is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _truncate_metrics(run_dir: Path, batches: int) -> None:
    """On resume, drop rows logged after the checkpoint: they will be trained again."""
    from brainlib.atomic import atomic_write_text
    rows = [r for r in read_metrics(run_dir) if r.get("kind") != "batch" or r.get("batch", 0) <= batches]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _set_aside(run_dir: Path) -> Path:
    """A fresh run over an existing folder keeps the old one beside it, renamed."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    shutil.move(str(run_dir), target)
    return target


def train(cfg: RunConfig, *, resume: bool = False, dataset=None, max_steps: int | None = None) -> Path:
    """Train cfg's progressive StyleGAN; returns the run folder.

    resume=True continues from the run's latest.json (a finished run returns at once; a run
    with no checkpoint starts from the beginning). resume=False on a folder that already holds
    a run moves the old folder aside (`<run>.replaced-<time>`) rather than deleting anything.
    max_steps stops after that many batches in total, with a checkpoint (for tests and
    interrupted sessions). Under torchrun every rank calls this and rank 0 writes the files."""
    cfg.validate()
    dist.init_from_env(resolve_device(cfg.device))
    try:
        run_dir = Path(cfg.run_dir)
        resuming = resume and ckpt.latest_checkpoint(run_dir) is not None
        if dist.rank() == 0:
            if not resuming and run_dir.exists() and any(run_dir.iterdir()):
                moved = _set_aside(run_dir)
                print(f"{run_dir} already held a run; moved it to {moved}", flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        if dataset is None:  # rank 0 decodes and caches first; the others then read the cache
            from brainlib.data import dataset_for_config
            if dist.rank() == 0:
                dataset = dataset_for_config(cfg)
            dist.barrier()
            if dist.rank() != 0:
                dataset = dataset_for_config(cfg, progress=False)
        trainer = Trainer(cfg, dataset, resume=resuming, max_steps=max_steps)
        if trainer.main:
            cfg.save(run_dir / "config.json")
            if resuming:
                _truncate_metrics(run_dir, trainer.position.batches)
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"kind": "resume", "batch": trainer.position.batches,
                                        "changed": trainer.resumed_changes}) + "\n")
            else:
                trainer._say(f"training {cfg.run}: {len(dataset.images)} images of {', '.join(cfg.classes)}, "
                             f"{cfg.resolutions[0]} -> {cfg.image_size} px on {trainer.device}, "
                             f"{precision(cfg, trainer.device)}"
                             + (f" x {trainer.world} processes" if trainer.world > 1 else ""))
        trainer.run()
        dist.barrier()
        return run_dir
    finally:
        dist.shutdown()


def describe_run_folder(run_dir: str | Path) -> str:
    """The files of a run folder with their sizes, one per line (the end of 02_train)."""
    run_dir = Path(run_dir)
    lines = [f"{run_dir}/"]
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        size = path.stat().st_size
        human = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} kB"
        lines.append(f"  {path.relative_to(run_dir)}  ({human})")
    return "\n".join(lines)
