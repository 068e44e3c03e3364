"""Progressive growing's schedule: how long each resolution step lasts, its batch size, the
fade-in, the order of the images, and where a run stands (`Position`, saved in checkpoints);
a diffusion model's batch (it trains at one size, in the same epoch order)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from brainlib.config import RunConfig


@dataclass
class Position:
    """Everything a checkpoint needs to continue at a batch boundary."""
    step_index: int = 0  # index into cfg.resolutions
    epoch: int = 0  # epoch within this step
    pos: int = 0  # images of this epoch's permutation already used
    images_in_step: int = 0
    seconds_in_step: float = 0.0
    images_seen: int = 0  # over the whole run
    batches: int = 0  # over the whole run
    critic_steps: int = 0

    def next_step(self) -> Position:
        """The start of the following resolution step."""
        return Position(step_index=self.step_index + 1, images_seen=self.images_seen, batches=self.batches,
                        critic_steps=self.critic_steps)


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


def step_budget(cfg: RunConfig, res: int, n_images: int) -> tuple[str, float]:
    """What ends the step at `res`: its resolution budget, and for the last step `final_images` more."""
    kind, amount = resolution_budget(cfg, res, n_images)
    return kind, amount + (cfg.final_images if res == cfg.resolutions[-1] else 0)


def schedule(cfg: RunConfig, n_images: int) -> list[dict]:
    """One row per resolution step: step (1-based), res, batch, budget, fade length (a share of
    the resolution budget, without `final_images`)."""
    rows = []
    for i, res in enumerate(cfg.resolutions):
        kind, amount = step_budget(cfg, res, n_images)
        fade = resolution_budget(cfg, res, n_images)[1] * cfg.fade_fraction
        rows.append({"step": i + 1, "res": res, "batch": batch_size(cfg, res, n_images), kind: amount,
                     "fade_" + kind: 0 if i == 0 else round(fade, 2)})
    return rows


def format_schedule(cfg: RunConfig, n_images: int) -> str:
    """One line per resolution step; a diffusion model's one line (it trains at one size)."""
    if cfg.diffusion:
        batch = diffusion_batch_size(cfg, n_images)
        return (f"one size, {cfg.image_size} px (a diffusion model: no resolution steps, no fade-in): "
                f"batch {batch}, {cfg.train_images:,} images = {-(-cfg.train_images // batch):,} batches, "
                f"{cfg.train_images / n_images:.1f} passes over {n_images:,} images")
    lines = []
    for r in schedule(cfg, n_images):
        budget = f"{r['images']} images" if "images" in r else f"{r['seconds']:.0f} s"
        fade = r.get("fade_images", r.get("fade_seconds"))
        lines.append(f"step {r['step']}: {r['res']:>3} px  batch {r['batch']:>3}  {budget}  fade-in {fade}")
    return "\n".join(lines)


def batch_size(cfg: RunConfig, res: int, n_images: int) -> int:
    return max(1, min(cfg.batch_sizes[res], n_images))


def diffusion_batch_size(cfg: RunConfig, n_images: int) -> int:
    """A diffusion model's batch: diffusion_batch, or every image of a smaller dataset."""
    return min(cfg.diffusion_batch, n_images)


def step_spent(cfg: RunConfig, position: Position, res: int, n_images: int) -> tuple[float, float]:
    """(spent, budget) of the current resolution step, in the budget's unit (seconds or images)."""
    kind, budget = step_budget(cfg, res, n_images)
    return (position.seconds_in_step if kind == "seconds" else position.images_in_step), budget


def fade_progress(cfg: RunConfig, position: Position, res: int, n_images: int) -> float:
    """The share of the resolution budget spent: the fade-in's clock, which `final_images` does not stretch."""
    spent = step_spent(cfg, position, res, n_images)[0]
    return spent / resolution_budget(cfg, res, n_images)[1]


def extension_position(old: RunConfig, meta: dict, n_images: int) -> Position:
    """Where a finished run trained with `old` continues when a resume raises `final_images`:
    the last step, as many images into it as it had trained (whole batches past its budget), in
    a fresh epoch of its own order. Not bit-exact with one longer run: that one would have
    finished the epoch it was in."""
    res = old.resolutions[-1]
    batch = batch_size(old, res, n_images)
    spent = math.ceil(step_budget(old, res, n_images)[1] / batch) * batch
    done = Position(**meta["position"])
    return Position(step_index=len(old.resolutions) - 1, epoch=spent // (n_images // batch * batch) + 1,
                    images_in_step=spent, images_seen=done.images_seen, batches=done.batches,
                    critic_steps=done.critic_steps)


def fade_alpha(step_index: int, progress: float, fade_fraction: float) -> float:
    """ProGAN's alpha: rises linearly 0 -> 1 over the first fade_fraction of a step (1 in the first)."""
    if step_index == 0 or fade_fraction <= 0:
        return 1.0
    return min(1.0, progress / fade_fraction)


def epoch_permutation(seed: int, res: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the images in one epoch, a function of (seed, res, epoch) only, so a
    resumed run regenerates it instead of saving it."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + res * 10_007 + epoch) % 2**63)
    return torch.randperm(n, generator=g)


def ema_beta(batch: int, half_life_kimg: float) -> float:
    """Per-update decay so that the EMA halves its memory every half_life_kimg thousand images."""
    return 0.5 ** (batch / max(half_life_kimg * 1000.0, 1e-8))
