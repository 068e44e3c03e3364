"""The texture probe: during training, how far the EMA model's slices are from the real ones in
the figures that see texture (docs/quality.md), cheaply, so that a user sees whether training
longer still helps, and the run keeps its best snapshot.

Whenever the images seen pass a multiple of `cfg.texture_every` (a StyleGAN: at its final
resolution only, where its slices have the real slices' size; a diffusion model: throughout)
and once at the end of training, PROBE_IMAGES slices (256; a diffusion model's 128, with
PROBE_STEPS = 5 DDIM steps instead of its run's `sample_steps`, to keep the probe cheap) are
generated from fixed inputs (the same latents and noise seeds, or the same starting noise, at
every probe, so consecutive probes are comparable; a conditional model's with the real
subset's classes) and compared with a fixed subset of as many training slices:

- `swd_reference`: the SWD of Laplacian-pyramid patches normalised by the real slices'
  statistics, per band (x1e3; eval.metrics.SWDReference, with EvalSizes.quick's patches and
  directions, so its values are not evaluate's),
- `spectrum`: the radially averaged power spectrum's distance per octave band (eval.spectrum),

beside the same figures for a second, disjoint subset of training slices (`floor`: real
against real at the same sample size; a training set of fewer than 2 x PROBE_IMAGES slices
gives half of it to each subset, and one of fewer than 4 slices no probe). The real side is
computed once per run. What a probe costs: RunConfig.texture_every. The score is
the geometric mean of the finest band's SWD and the mean spectrum distance, each over its
floor: 1 is as close as real slices are to each other, and a relative gain in either figure
counts the same (the two are in different units). The lowest score's EMA weights are the run's
best snapshot (checkpoints.save_best_snapshot), which `generate`, `export` and `evaluate` take
with `--snapshot best`.

Each probe is one metrics.jsonl row of kind "texture" (readers of "batch" rows skip it), drawn
in plots/texture.png with the loss plots (plots.save_texture_plot). It runs on the main process
only, in eval mode under no_grad, and leaves every random number generator as it found it:
training with the probe gives the same weights as without it.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from brainlib.config import RunConfig
from brainlib.data.dataset import to_model_input
from brainlib.eval.metrics import SWDReference
from brainlib.eval.spectrum import radial_power_spectrum, spectral_distance
from brainlib.rundir import RunDir
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.training.metrics_log import read_metrics

# generated slices per probe, and real slices in each of the two real subsets; a diffusion model's
# probe is 128 slices of PROBE_STEPS DDIM steps (its run's sample_steps: 25 in the demo)
PROBE_IMAGES = {"stylegan": 256, "diffusion": 128}
PROBE_STEPS = 5
PROBE_SWD = dict(patches_per_image=32, directions=64, repeats=2)  # EvalSizes.quick()'s
PROBE_SEED_OFFSET = 52_711  # the probe's real subsets, latents and noise come from seed + this
BATCH = 64
KIND = "texture"  # its metrics.jsonl rows


def probe_size(family: str, n_images: int) -> int:
    """Slices per set: PROBE_IMAGES, or half the training set when that is smaller (two real subsets)."""
    return min(PROBE_IMAGES[family], n_images // 2)


class TextureProbe:
    """The real side of the probe, computed once: a reference subset of the training slices
    (its SWD patches and projections, its spectrum) and the floor (a second, disjoint subset
    measured against the reference)."""

    def __init__(self, cfg: RunConfig, images_u8: torch.Tensor, labels: torch.Tensor):
        self.cfg, self.size = cfg, cfg.image_size
        self.seed = cfg.seed + PROBE_SEED_OFFSET
        self.n = probe_size(cfg.family, len(images_u8))
        if self.n < 2:
            raise ValueError(f"the texture probe needs at least 4 training slices, got {len(images_u8)}")
        order = torch.randperm(len(images_u8), generator=torch.Generator().manual_seed(self.seed))
        reference, floor = order[:self.n], order[self.n:2 * self.n]
        real = to_model_input(images_u8[reference.to(images_u8.device)].cpu(), self.size)
        self.labels = labels[reference.to(labels.device)].cpu() if cfg.conditional else None
        self.swd = SWDReference(real, normalise="reference", seed=self.seed, **PROBE_SWD)
        self.spectrum = radial_power_spectrum(real)
        self.floor = self.measure(to_model_input(images_u8[floor.to(images_u8.device)].cpu(), self.size))

    def measure(self, images: torch.Tensor) -> dict[str, dict[str, float]]:
        """The per-band figures of `images` ([n, 1, S, S] in [-1, 1]) against the reference subset."""
        return {"swd_reference": self.swd.distance(images, seed=self.seed + 1)["levels"],
                "spectrum": spectral_distance(radial_power_spectrum(images), self.spectrum, self.size)["bands"]}

    def score(self, figures: dict[str, dict[str, float]]) -> float:
        """The geometric mean of the finest band's SWD and the mean spectrum distance, each over its floor."""
        finest = str(self.size)
        swd = figures["swd_reference"][finest] / max(self.floor["swd_reference"][finest], 1e-12)
        spectrum = np.mean(list(figures["spectrum"].values())) / max(np.mean(list(self.floor["spectrum"].values())),
                                                                     1e-12)
        return float(math.sqrt(swd * spectrum))

    def record(self, images: torch.Tensor, **where) -> dict:
        """The metrics.jsonl row of one probe of `images`; `where` places it (batch, images_seen, ...)."""
        figures = self.measure(images)
        return {"kind": KIND, **where, "images": self.n, **figures, "score": round(self.score(figures), 6),
                "floor": self.floor}

    # ------------------------------------------------------------------
    # the probe's slices, from the same inputs every time

    @torch.no_grad()
    def stylegan_images(self, G, *, res: int, alpha: float, device: torch.device) -> torch.Tensor:
        """G's slices from the probe's latents and noise (G in eval mode: w_avg untouched)."""
        z = torch.randn(self.n, G.z_dim, generator=torch.Generator().manual_seed(self.seed))
        out = []
        with _rng_kept(device):
            torch.manual_seed(self.seed)  # the noise inputs draw from the global generator
            for lo in range(0, self.n, BATCH):
                labels = None if self.labels is None else self.labels[lo:lo + BATCH].to(device)
                out.append(G(z[lo:lo + BATCH].to(device), labels, res=res, alpha=alpha,
                             noise_mode="random").float().clamp(-1, 1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def diffusion_images(self, denoiser) -> torch.Tensor:
        """The EMA denoiser's slices from the probe's starting noise, PROBE_STEPS DDIM steps."""
        sampler = DiffusionSampler(denoiser, self.cfg, steps=min(PROBE_STEPS, self.cfg.diffusion_timesteps))
        with _rng_kept(sampler.device):
            return sampler.sample(self.labels, [self.seed * 10_000 + i for i in range(self.n)], batch_size=BATCH)


@contextlib.contextmanager
def _rng_kept(device: torch.device):
    """The global RNGs (CPU, and the CUDA device's) as they were before the block."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


class TextureTracker:
    """A trainer's probes: when they are due, the probe itself (built at the first one) and the
    best score so far (on resume, the run's best.json's, unless it lies beyond the resume point:
    then the next probe replaces it)."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, n_images: int, *, best: dict | None, images_seen: int):
        self.cfg, self.run_dir = cfg, RunDir(run_dir)
        self.every = cfg.texture_every if probe_size(cfg.family, n_images) >= 2 else 0
        fits = best is not None and best.get("images_seen", math.inf) <= images_seen
        self.best_score = float(best["score"]) if fits else math.inf
        # a resumed run probes no count twice (a run stopped by max_steps right after a probe)
        earlier = [r["images_seen"] for r in read_metrics(run_dir) if r.get("kind") == KIND] if images_seen else []
        self.last_probed = max([n for n in earlier if n <= images_seen], default=-1)
        self.probe: TextureProbe | None = None

    def due(self, images_seen: int, batch: int, *, final: bool = False) -> bool:
        """After a batch of `batch` images that brought the count to `images_seen`: a multiple of
        texture_every crossed, or the end of training; never twice at one count."""
        if self.every <= 0 or images_seen == self.last_probed:
            return False
        return final or images_seen // self.every > (images_seen - batch) // self.every

    def run(self, images_u8: torch.Tensor, labels: torch.Tensor, generate, **where) -> tuple[dict, bool]:
        """One probe of the slices `generate(probe)` makes: (its metrics.jsonl row, whether it is the
        best so far). `where` places the row (batch, step, res, images_seen)."""
        t0 = time.perf_counter()
        if self.probe is None:
            self.probe = TextureProbe(self.cfg, images_u8, labels)
        record = self.probe.record(generate(self.probe), **where)
        record["seconds"] = round(time.perf_counter() - t0, 2)
        self.last_probed = record["images_seen"]
        best = record["score"] < self.best_score
        self.best_score = min(self.best_score, record["score"])
        return record, best


def snapshot_meta(record: dict) -> dict:
    """What a best snapshot's JSON keeps of its probe."""
    return {k: record[k] for k in ("score", "swd_reference", "spectrum", "floor", "images")}
