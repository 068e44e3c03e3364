"""The Trainer: progressive growing from cfg.start_res to cfg.image_size.

`Trainer.train_step` is the recipe for one batch: a critic step (its penalty every
`reg_every` steps), a generator step (w_avg tracked, style mixing), then the EMA of G's
weights. `train_resolution` feeds it: a seeded permutation of the images per epoch, the
fade-in alpha, the log row, and checkpoints at batch boundaries, so a resumed run ends with
the same weights as one never interrupted (CPU, fixed seed). The schedule is in
schedule.py, the checkpoint files in checkpoints.py, the log in training_log.py.

Under `torchrun --nproc_per_node N -m brainlib train ...` the networks are wrapped in
DistributedDataParallel, each rank trains on its shard of every global batch, and rank 0
alone writes files.
"""
from __future__ import annotations

import contextlib
import random
import shutil
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from brainlib.config import CLASS_LABELS, RunConfig
from brainlib.data.dataset import dataset_for_config, to_model_input
from brainlib.networks import losses
from brainlib.networks.build import build_discriminator, build_generator
from brainlib.networks.settings import network_settings
from brainlib.plots import save_step_figures
from brainlib.progress import progress_bar
from brainlib.rundir import RunDir, extended_name, periodic_name, step_name
from brainlib.runlock import folder_lock
from brainlib.training import checkpoints as ckpt
from brainlib.training import distributed as dist
from brainlib.training.devices import autocast_dtype, precision, resolve_device, use_channels_last
from brainlib.training.diffusion_trainer import DiffusionTrainer
from brainlib.training.divergence import diverged, first_non_finite, weights_finite
from brainlib.training.metrics_log import MetricsLog, read_metrics, truncate_metrics
from brainlib.training.schedule import (
    Position,
    batch_size,
    ema_beta,
    epoch_permutation,
    extension_position,
    fade_alpha,
    fade_progress,
    step_spent,
)
from brainlib.training.spectrum_match import SpectrumMatch
from brainlib.training.texture_probe import TextureTracker, snapshot_meta

SAMPLE_SEED_OFFSET = 7919  # the fixed sample latents are drawn from seed + this


class Trainer:
    def __init__(self, cfg: RunConfig, dataset, *, resume: bool = False, max_steps: int | None = None):
        self.cfg = cfg
        self.max_steps = max_steps
        self.rank, self.world = dist.rank(), dist.world_size()
        self.main = self.rank == 0
        self.device = dist.device_for_rank(resolve_device(cfg.device))
        self.run_dir = RunDir(cfg.run_dir)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.py_rng = random.Random(cfg.seed)  # style-mixing decisions: host-side, no device sync

        checkpoint = ckpt.latest_checkpoint(self.run_dir) if resume else None
        tensors, meta = ckpt.load_checkpoint(checkpoint) if checkpoint else ({}, {})
        # a resumed run keeps its networks, the mapping network's lr multiplier included
        self.network_settings = ckpt.networks_to_resume(meta, cfg, checkpoint) if checkpoint else network_settings(cfg)
        self.G, self.D = build_generator(self.network_settings), build_discriminator(self.network_settings)
        self.G_ema = build_generator(self.network_settings)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        for m in (self.G, self.D, self.G_ema):
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.G_ema.eval().requires_grad_(False)
        self.loss = losses.make_loss(cfg, self.device)
        self.opt_G, self.opt_D = self._make_optimisers()
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
            raise ValueError(f"the dataset at {getattr(dataset, 'root', '?')} holds no images "
                             f"for classes {cfg.classes}")
        self.n_images = len(self.images_u8)
        self.spectrum = (SpectrumMatch(self.images_u8, cfg.spectral_weight, cfg.image_size)
                         if cfg.spectral_weight > 0 else None)

        n = cfg.sample_grid ** 2
        sample_rng = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED_OFFSET)
        self.sample_z = torch.randn(n, cfg.z_dim, generator=sample_rng)
        self.sample_labels = None
        if cfg.conditional:  # rows alternate AD, NC
            rows = torch.arange(n) // cfg.sample_grid
            self.sample_labels = torch.where(rows % 2 == 0, CLASS_LABELS["AD"], CLASS_LABELS["NC"])
        self.resumed_changes: dict[str, Any] = {}
        if checkpoint:
            self._restore(checkpoint, tensors, meta)
        self.finished = bool(meta.get("finished", False))
        finished_with = RunConfig.from_dict(meta["config"]) if self.finished else None
        if finished_with is not None and cfg.final_images > finished_with.final_images:
            self.position = extension_position(finished_with, meta, self.n_images)
            self.finished = False
            self._say(f"extending {self.run_dir}: {cfg.final_images:,} images at {cfg.image_size} px after the "
                      f"schedule (final_images), from {self.position.images_seen:,} images seen; "
                      f"its checkpoint {checkpoint.name} stays")
        self.log = MetricsLog(self.run_dir, flush_every=25 if self.cuda else 1)  # a host sync per flush
        self.last_checkpoint_time = time.monotonic()
        self.texture = TextureTracker(cfg, self.run_dir, self.n_images, images_seen=self.position.images_seen,
                                      best=ckpt.best_record(self.run_dir) if checkpoint else None)

    # ------------------------------------------------------------------
    # set-up

    def _make_optimisers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam for G and D at cfg.lr, G's mapping network in a group of its own (_set_lrs)."""
        mapping = list(self.G.mapping.parameters())
        synthesis = [p for p in self.G.parameters() if all(p is not q for q in mapping)]
        groups = [{"params": synthesis, "name": "synthesis"}, {"params": mapping, "name": "mapping"}]
        opt_G = torch.optim.Adam(groups, lr=self.cfg.lr, betas=self.cfg.betas, eps=1e-8)
        opt_D = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr, betas=self.cfg.betas, eps=1e-8)
        return opt_G, opt_D

    def _set_lrs(self) -> None:
        """The config's learning rates. The mapping network's EqualLinear layers already scale
        Adam's steps by the run's multiplier, so its group runs at mapping_lr / mapping_lr_mul,
        which is cfg.lr unless a resume changed the lrs."""
        for group in self.opt_G.param_groups:
            mapping = group["name"] == "mapping"
            group["lr"] = self.cfg.mapping_lr / self.network_settings.mapping_lr_mul if mapping else self.cfg.lr
        for group in self.opt_D.param_groups:
            group["lr"] = self.cfg.lr

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        # higher resolutions are unused until their step, hence find_unused_parameters
        ids = [self.device.index] if self.cuda else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------
    # the recipe

    def train_step(self, real: torch.Tensor, label: torch.Tensor | None, res: int, alpha: float) -> dict:
        """One batch: a critic step, a generator step, the EMA."""
        p = self.position
        stats = self.critic_step(real, label, res, alpha, regularise=p.critic_steps % self.cfg.reg_every == 0)
        if self.loss.adaptive is not None:
            stats["augment_p"] = self.loss.adaptive.p.clone()
        p.critic_steps += 1
        stats |= self.generator_step(real, label, res, alpha)
        self.update_ema(real.shape[0] * self.world)
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
        g_loss = loss.detach()  # the adversarial part, as the plots have always shown it
        if self.spectrum is not None and res == self.cfg.image_size:  # the full-size slices only
            stats["spectral"] = self.spectrum(fake)
            loss = loss + stats["spectral"]
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(loss).backward()
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        self.D.requires_grad_(True)
        return {**{k: v.detach() for k, v in stats.items()}, "g_loss": g_loss}

    @torch.no_grad()
    def update_ema(self, images: int) -> None:
        beta = ema_beta(images, self.cfg.ema_half_life_kimg)
        ema, live = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema, live, 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
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
            return self.run_dir.path
        while p.step_index < len(cfg.resolutions):
            res = cfg.resolutions[p.step_index]
            if not self.train_resolution(res):
                return self.run_dir.path  # stopped by max_steps, with a checkpoint
            self.end_of_step(res, self.alpha(res), finished=p.step_index == len(cfg.resolutions) - 1)
            self.position = p = p.next_step()
        return self.run_dir.path

    def train_resolution(self, res: int) -> bool:
        """Train one resolution step to its budget; False when max_steps stopped the run."""
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
                    real = self._to_device_layout(to_model_input(self.images_u8[idx], res))
                    label = self.labels[idx] if cfg.conditional else None
                    alpha = self.alpha(res)
                    stats = self.train_step(real, label, res, alpha)
                    p.pos += B
                    p.images_in_step += B
                    p.images_seen += B
                    p.batches += 1
                    dt = time.perf_counter() - t0
                    p.seconds_in_step += dt
                    self.log_batch(stats, res=res, alpha=alpha, seconds=dt, images=B)
                    bar.update(1)
                    self.probe_texture(res, alpha, batch=B)
                    if self.max_steps is not None and p.batches >= self.max_steps:
                        self.flush(bar)
                        self.save(res, alpha, end_of_step=False)
                        return False
                    if self.log.full and self.flush(bar):
                        self.save(res, alpha, end_of_step=False)  # checkpoint_minutes have passed
            if p.pos + B > self.n_images:
                p.epoch, p.pos = p.epoch + 1, 0
        self.probe_texture(res, self.alpha(res), final=True)  # the end of the final step
        self.flush()
        return True

    def progress(self, res: int) -> float:
        """How far the current resolution step is, 0 -> 1."""
        spent, budget = step_spent(self.cfg, self.position, res, self.n_images)
        return spent / budget

    def alpha(self, res: int) -> float:
        progress = fade_progress(self.cfg, self.position, res, self.n_images)
        return fade_alpha(self.position.step_index, progress, self.cfg.fade_fraction)

    def step_done(self, res: int) -> bool:
        spent, budget = step_spent(self.cfg, self.position, res, self.n_images)
        if self.cfg.seconds_per_res and self.world > 1:  # ranks must agree on a clock-based stop
            return dist.any_rank([spent >= budget], self.device)[0]
        return spent >= budget

    def _to_device_layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ------------------------------------------------------------------
    # logging, divergence, figures, checkpoints

    def log_batch(self, stats: dict, *, res: int, alpha: float, seconds: float, images: int) -> None:
        p = self.position
        self.log.add({"kind": "batch", "step": p.step_index + 1, "res": res, "epoch": p.epoch,
                      "batch": p.batches, "alpha": round(alpha, 6), "images_seen": p.images_seen,
                      "images_in_step": p.images_in_step, "lr": self.opt_D.param_groups[0]["lr"],
                      "img_per_sec": round(images / max(seconds, 1e-9), 2), **stats})

    def flush(self, bar=None) -> bool:
        """Write the buffered log rows after checking them and the weights for divergence.
        Returns whether a periodic checkpoint is due, agreed by all ranks (flushes happen at
        the same batches on every rank)."""
        rows = self.log.take()
        bad = first_non_finite(rows)
        if bad is None and not weights_finite((self.G, self.D)):
            bad = {"batch": self.position.batches, "step": self.position.step_index + 1, "what": "a weight"}
        due = time.monotonic() - self.last_checkpoint_time > self.cfg.checkpoint_minutes * 60
        any_bad, due = dist.any_rank([bad is not None, due and self.main], self.device)
        if any_bad:
            raise diverged(bad or {"batch": self.position.batches, "what": "loss on another process"},
                           ckpt.latest_checkpoint(self.run_dir))
        if self.main and rows:
            self.log.write(rows)
            if bar is not None:
                bar.set_postfix({k: f"{rows[-1][k]:.3f}" for k in ("d_loss", "g_loss", "gp") if k in rows[-1]})
        return due

    def probe_texture(self, res: int, alpha: float, *, batch: int = 0, final: bool = False) -> None:
        """The texture probe when it is due (training/texture_probe.py), at the final resolution
        only: the slices of earlier steps are smaller than the real ones. The lowest score's EMA
        generator becomes the run's best snapshot."""
        p = self.position
        if not self.main or res != self.cfg.image_size or not self.texture.due(p.images_seen, batch, final=final):
            return
        record, best = self.texture.run(
            self.images_u8, self.labels,
            lambda probe: probe.stylegan_images(self.G_ema, res=res, alpha=alpha, device=self.device),
            batch=p.batches, step=p.step_index + 1, res=res, images_seen=p.images_seen)
        self.log.add(record)
        if best:
            meta = {"config": self.cfg.to_dict(), "networks": self.network_settings.to_dict(), "res": res,
                    "alpha": alpha, "step": p.step_index + 1, "images_seen": p.images_seen, "finished": final,
                    "texture": snapshot_meta(record)}
            ckpt.save_best_snapshot(self.run_dir, {"G_ema": self.G_ema}, meta, score=record["score"])

    def describe(self, n_images: int) -> str:
        """The line a fresh run starts with."""
        cfg = self.cfg
        return (f"training {cfg.run}: {n_images} images of {', '.join(cfg.classes)}, "
                f"{cfg.resolutions[0]} -> {cfg.image_size} px on {self.device}, {precision(cfg, self.device)}"
                + (f" x {self.world} processes" if self.world > 1 else ""))

    def _say(self, message: str) -> None:
        if self.main:
            print(message, flush=True)

    @torch.no_grad()
    def fixed_samples(self, res: int, alpha: float) -> torch.Tensor:
        """The fixed latents (cfg.sample_grid ** 2 of them) through the EMA generator (constant
        noise, RNG untouched): the same images after every step, so they show progress."""
        labels = self.sample_labels.to(self.device) if self.sample_labels is not None else None
        with torch.random.fork_rng(devices=[self.device] if self.cuda else []):
            return self.G_ema(self.sample_z.to(self.device), labels, res=res, alpha=alpha, noise_mode="const").float()

    def end_of_step(self, res: int, alpha: float, *, finished: bool) -> None:
        step = self.position.step_index + 1
        name = step_name(step, res)
        if self.run_dir.checkpoint(name).exists():
            # a finished run trained longer (final_images): the checkpoint and grid it first finished with stay
            name = extended_name(step, res, self.position.images_seen)
        weights = [t for m in (self.G, self.D) for t in m.parameters()]
        if not dist.ranks_agree(weights):
            raise RuntimeError(f"the {self.world} processes hold different weights after step {name}")
        if self.main:
            save_step_figures(self.run_dir, name, self.fixed_samples(res, alpha), self.cfg.sample_grid,
                              read_metrics(self.run_dir))
        # the checkpoint points at the start of the next step
        self.save(res, alpha, end_of_step=True, finished=finished, position=self.position.next_step(), name=name)

    def save(self, res: int, alpha: float, *, end_of_step: bool, finished: bool = False,
             position: Position | None = None, name: str | None = None) -> Path | None:
        self.last_checkpoint_time = time.monotonic()
        if not self.main:
            return None
        p = position or self.position
        name = name or periodic_name(self.position.step_index + 1, res, p.images_seen)
        state = {"rng/torch_cpu": torch.get_rng_state(), "sample/z": self.sample_z}
        if self.loss.adaptive is not None:
            state |= {f"augment/{k}": v for k, v in self.loss.adaptive.state_dict().items()}
        if self.cuda:
            state["rng/torch_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.sample_labels is not None:
            state["sample/labels"] = self.sample_labels
        meta = {"config": self.cfg.to_dict(), "networks": self.network_settings.to_dict(), "res": res, "alpha": alpha,
                "step": self.position.step_index + 1, "images_seen": p.images_seen,
                "images_in_step": p.images_in_step, "position": asdict(p), "finished": finished,
                "end_of_step": end_of_step, "python_rng": ckpt.rng_to_json(self.py_rng.getstate()),
                "resumed_with": self.resumed_changes, "world_size": self.world}
        return ckpt.save_training_checkpoint(self.run_dir, name, networks=self._networks(),
                                             optimisers=self._optimisers(), state=state, meta=meta)

    def _networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def _optimisers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_G": self.opt_G, "opt_D": self.opt_D}

    def _restore(self, path: Path, tensors: dict, meta: dict) -> None:
        ckpt.restore_training_checkpoint(path, tensors, meta, networks=self._networks(),
                                         optimisers=self._optimisers())
        torch.set_rng_state(tensors["rng/torch_cpu"])
        if self.cuda and "rng/torch_cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng/torch_cuda"], self.device)
        self.py_rng.setstate(ckpt.rng_from_json(meta["python_rng"]))
        self.sample_z = tensors["sample/z"]
        if self.loss.adaptive is not None and "augment/p" in tensors:
            self.loss.adaptive.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items()
                                                if k.startswith("augment/")})
        self.sample_labels = tensors.get("sample/labels")
        self.position = Position(**meta["position"])
        self._set_lrs()  # a resume may lower the learning rates (after a divergence): the new ones apply
        old = {**RunConfig().to_dict(), **meta["config"]}  # a setting newer than the run: its default then
        self.resumed_changes = {k: {"was": old[k], "now": v} for k, v in self.cfg.to_dict().items()
                                if old[k] != v and k not in ("device", "compile")}
        self._say(f"resuming {self.run_dir} from {path.name}: step {meta['step']}, {meta['images_seen']} images seen"
                  + (f"; changed settings: {self.resumed_changes}" if self.resumed_changes else ""))


def _set_aside(run_dir: Path) -> Path:
    """A fresh run over an existing folder keeps the old one beside it, renamed."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    shutil.move(str(run_dir), target)
    return target


def resume_point(run_dir: Path) -> Path:
    """The checkpoint a resumed run continues from. A run without a usable checkpoints/latest.json
    is an error naming what is there, never a silent fresh start."""
    latest = ckpt.latest_checkpoint(run_dir)  # a broken latest.json raises CheckpointError
    if latest is not None:
        return latest
    afresh = (f"train without --resume to start afresh (an existing folder is kept as "
              f"{run_dir.name}.replaced-<time>)")
    if not run_dir.is_dir():
        raise ckpt.CheckpointError(f"cannot resume {run_dir}: there is no such run folder; {afresh}")
    run = RunDir(run_dir)
    saved = sorted(set(run.checkpoints.glob("*.safetensors")) - set(run.best_snapshots()))  # names sort by progress
    if not saved:
        raise ckpt.CheckpointError(f"cannot resume {run_dir}: it holds no checkpoint yet; {afresh}")
    pointer = run.latest
    raise ckpt.CheckpointError(
        f"cannot resume {run_dir}: {pointer} is missing, though {len(saved)} checkpoint(s) are there "
        f'(newest: {saved[-1].name}); to continue from it write {{"checkpoint": "{saved[-1].name}"}} '
        f"into {pointer}, or {afresh}")


def train(cfg: RunConfig, *, resume: bool = False, dataset=None, max_steps: int | None = None) -> Path:
    """Train cfg's model (a progressive StyleGAN, or a diffusion model for family "diffusion");
    returns the run folder.

    resume=True continues from the run's latest.json (a finished run returns at once; a run
    without a usable latest.json is an error, not a fresh start). resume=False on a folder that
    already holds a run moves the old folder aside (`<run>.replaced-<time>`) rather than
    deleting anything. The run folder's lock (brainlib/runlock.py) is held throughout, so a
    second training, resume or evaluation of the same run is refused while this one lives.
    max_steps stops after that many batches in total, with a checkpoint (for tests and
    interrupted sessions). Under torchrun every rank calls this and rank 0 writes the files."""
    cfg.validate()
    dist.init_from_env(resolve_device(cfg.device))
    try:
        run_dir = Path(cfg.run_dir)
        with folder_lock(run_dir) if dist.rank() == 0 else contextlib.nullcontext():
            return _train_locked(cfg, run_dir, resume=resume, dataset=dataset, max_steps=max_steps)
    finally:
        dist.shutdown()


def _train_locked(cfg: RunConfig, run_dir: Path, *, resume: bool, dataset, max_steps: int | None) -> Path:
    if resume:
        resume_point(run_dir)
    if dist.rank() == 0:
        if not resume and run_dir.exists() and any(run_dir.iterdir()):
            moved = _set_aside(run_dir)  # no live brainlib writes it: we hold its lock
            print(f"{run_dir} already held a run; moved it to {moved}", flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    if dataset is None:  # rank 0 decodes and caches first; the others then read the cache
        if dist.rank() == 0:
            dataset = dataset_for_config(cfg)
        dist.barrier()
        if dist.rank() != 0:
            dataset = dataset_for_config(cfg, progress=False)
    trainer = (DiffusionTrainer if cfg.diffusion else Trainer)(cfg, dataset, resume=resume, max_steps=max_steps)
    if trainer.main:
        cfg.save(RunDir(run_dir).config)
        if resume:
            truncate_metrics(run_dir, trainer.position.batches)
            trainer.log.write([{"kind": "resume", "batch": trainer.position.batches,
                                "changed": trainer.resumed_changes}])
        else:
            trainer._say(trainer.describe(len(dataset.images)))
    trainer.run()
    dist.barrier()
    return run_dir


def describe_run_folder(run_dir: str | Path) -> str:
    """The files of a run folder with their sizes, one per line (the end of 02_train)."""
    run_dir = Path(run_dir)
    lines = [f"{run_dir}/"]
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        size = path.stat().st_size
        human = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} kB"
        lines.append(f"  {path.relative_to(run_dir)}  ({human})")
    return "\n".join(lines)
