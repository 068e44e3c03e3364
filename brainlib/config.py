"""Every knob of a run in one dataclass, plus the named presets.

A run is fully described by its `RunConfig`; the trainer saves it as
`<out_root>/<run>/config.json` (brainlib/rundir.py) and everything downstream (sampling, evaluation,
notebooks) reads it back from there.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainlib.atomic import atomic_write_text
from brainlib.rundir import DEFAULT_OUT_ROOT, RunDir

CLASS_LABELS = {"NC": 0, "AD": 1}  # AD is the positive class, as in the ADNI papers
CLASS_CHOICES = ("AD", "NC", "both")  # "both" trains one class-conditional model
ARCHS = ("stylegan1", "stylegan2")  # models.py, stylegan2.py
FAMILIES = ("stylegan", "diffusion")  # the model family: a StyleGAN (arch picks which) or a U-Net denoiser
OBJECTIVES = ("epsilon", "v", "flow")  # what the denoiser predicts (networks/diffusion.py)
LOSSES = ("wgan-gp", "logistic-r1", "rpgan-r1r2")
AUGMENTS = ("none", "diffaugment", "adaptive")  # adaptive: DiffAugment with ADA's adaptive probability
# settings taken out of RunConfig: a saved config may still name them at the value that changed nothing
REMOVED_SETTINGS = {"mapping_activation": "relu", "coarse_lr_scale": 1.0, "coarse_lr_spared": 0,
                    "n_critic": 1, "lr_rampdown": 0.0, "label_embed": True, "log_every": 1}


class ModelClasses:
    """What a model of `class_name` makes (RunConfig, NetworkSettings): AD and NC for "both"
    (one class-conditional model), else its own class."""
    class_name: str

    @property
    def conditional(self) -> bool:
        return self.class_name == "both"

    @property
    def classes(self) -> list[str]:
        return ["AD", "NC"] if self.conditional else [self.class_name]


def project_root() -> Path:
    """The workbook folder (holding notebooks/, data/, outputs/): the parent of the
    brainlib package in a source checkout, else the current directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "notebooks").is_dir() else Path.cwd()


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line a user can act on."""


MAX_BATCH = 4096  # images per batch: beyond any GPU's memory at 8 px already


def check_psi(psi: float, name: str = "--truncation") -> float:
    """psi, the truncation of w towards its average: a finite number in [0, 1] (1: none,
    0: the average image). NaN would silently give black images."""
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0.0 <= psi <= 1.0:
        raise ConfigError(f"{name} (psi) must be a number from 0 to 1 (got {psi})")
    return float(psi)


def check_seed(seed: int, name: str = "--seed") -> int:
    """A seed: a whole number, 0 or more (numpy's generators refuse negative ones)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name} must be a whole number, 0 or more (got {seed})")
    return seed


# the settings that shape a model and its training, per family: what 02_train_progressive shows first
KEY_SETTINGS = {
    "stylegan": ("run", "class_name", "image_size", "start_res", "z_dim", "w_dim", "mapping_layers", "channels",
                 "batch_sizes", "loss", "lr", "mapping_lr", "betas", "gp_weight", "ema_half_life_kimg",
                 "fade_fraction"),
    "diffusion": ("run", "class_name", "image_size", "unet_channels", "unet_blocks", "unet_attention", "objective",
                  "diffusion_timesteps", "train_images", "diffusion_batch", "lr", "betas", "ema_half_life_kimg",
                  "class_dropout", "sample_steps", "guidance"),
}

# settings keyed by resolution, and the type of their values (JSON keys are strings)
PER_RES_FIELDS = {"channels": int, "batch_sizes": int, "seconds_per_res": float, "images_per_res": int}


@dataclass
class RunConfig(ModelClasses):
    # --- run and data ---
    run: str = "run"
    out_root: str = DEFAULT_OUT_ROOT
    data_root: str | None = None  # None: the embedded MNI152 dataset, built on first use
    class_name: str = "AD"  # AD, NC, or both (conditional)
    class_dirs: dict[str, str] = field(default_factory=lambda: {"AD": "AD", "NC": "NC"})
    splits: list[str] | None = None  # None: every split found (train+test, as the original)
    image_size: int = 128
    pad_to_square: bool = False
    max_images: int | None = None  # cap per class, for quick runs

    # --- architecture ---
    family: str = "stylegan"  # stylegan (the fields below) or diffusion (the diffusion fields further down)
    arch: str = "stylegan1"  # stylegan1 (AdaIN, the original recipe) or stylegan2 (demodulation, skip / residual)
    start_res: int = 8
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 8
    channels: dict[int, int] = field(default_factory=lambda: {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64})
    mbstd_group: int = 4
    noise_max_res: int | None = None  # noise inputs up to this resolution; None: every layer, as StyleGAN
    composite: bool = False  # draw tissue through a learned mask over a black background (stylegan1.composite_on_black)
    critic_highpass: bool = False  # the critic gets a second head on the image's finest band (stylegan1.HighpassHead)
    # that head reads the band as 2x2 pixel blocks (4 channels) at half the resolution: every pixel
    # still, at about a quarter of the head's convolution cost
    highpass_unshuffle: bool = False
    # stylegan1: resampling into and out of the resolutions from this one up goes through a 12-tap
    # Kaiser low-pass (layers.kaiser_lowpass) instead of [1, 2, 1] / nearest / average pooling
    lowpass_from: int | None = None
    output_lowpass: bool = False  # stylegan1: the full-size image through the loader's Lanczos response

    # --- schedule ---
    batch_sizes: dict[int, int] = field(default_factory=lambda: {4: 256, 8: 128, 16: 64, 32: 32, 64: 16, 128: 8})
    epochs_per_res: float = 12.0  # used when images_per_res is None
    images_per_res: int | dict[int, int] | None = None  # overrides epochs_per_res; {res: n} per step
    seconds_per_res: dict[int, float] | None = None  # wall-clock budget per resolution, overrides both
    fade_fraction: float = 0.5  # alpha reaches 1 this far into each step
    # images at full resolution after the last step's budget, alpha 1: `--resume --set final_images=N`
    # trains a finished run longer (schedule.step_budget), keeping the checkpoint it finished with
    final_images: int = 0

    # --- optimisation ---
    loss: str = "wgan-gp"
    lr: float = 1e-3
    mapping_lr: float = 1e-5
    betas: tuple[float, float] = (0.0, 0.99)
    gp_weight: float = 10.0
    drift: float = 0.001
    r1_gamma: float = 1.0
    reg_every: int = 1  # lazy regularisation: penalty every k critic steps, scaled by k
    ema_half_life_kimg: float = 10.0
    style_mixing_prob: float = 0.0
    # stylegan: G's loss also takes its batch's log power per radial frequency against the
    # training slices' (training/spectrum_match.py), times this; 0: off
    spectral_weight: float = 0.0
    augment: str = "none"

    # --- devices and logging ---
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1 ...
    amp: bool = True  # mixed precision on CUDA (bf16, or fp16 with loss scaling)
    # bf16 autocast on the CPU (penalties in float32); None: where the CPU has bf16 instructions
    # (AVX512-BF16, AMX), 1.15-1.7x faster there, float32 elsewhere (emulated bf16 is 5-9x slower)
    cpu_bf16: bool | None = None
    channels_last: bool | None = None  # None: yes on CUDA and the CPU (devices.use_channels_last)
    compile: bool = False
    checkpoint_minutes: float = 10.0
    sample_grid: int = 4  # the grid after each resolution step is N x N
    # the texture probe (training/texture_probe.py) every this many images, at the final resolution
    # (a diffusion model: throughout) and at the end of training; 0: off. Measured at one thread on a
    # 2-core Xeon: a probe costs what about 60 StyleGAN demo images at 64 px cost to train (256 slices),
    # or 160-280 diffusion demo images (128 slices, 5 DDIM steps); so `demo` (every 2,000: 10 probes)
    # spends 1.5-2% of its training time on it, `diffusion-demo` (every 10,000: 4 probes) 1.6-2.8%
    texture_every: int = 4000

    # --- diffusion (family="diffusion"; it also uses lr, betas, seed, image_size, ema_half_life_kimg,
    # the device settings, checkpoint_minutes and sample_grid above) ---
    unet_channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # per level, image_size down, halving
    unet_blocks: int = 1  # residual blocks per level (the decoder has one more, as DDPM's)
    unet_attention: bool = True  # self-attention at the lowest level
    objective: str = "flow"  # the denoiser predicts epsilon (DDPM), v (v-prediction), or flow (rectified flow)
    diffusion_timesteps: int = 1000  # T of the noise schedule (cosine for epsilon and v)
    train_images: int = 100_000  # the training budget, in images
    diffusion_batch: int = 16
    sample_steps: int = 25  # DDIM steps when sampling
    guidance: float = 1.0  # classifier-free guidance w (conditional models): cond + w (cond - uncond); 0 = none
    class_dropout: float = 0.1  # conditional models: share of training labels replaced by "no class"

    # ------------------------------------------------------------------
    @property
    def resolutions(self) -> list[int]:
        """Training resolutions from start_res to image_size, doubling."""
        n = int(math.log2(self.image_size // self.start_res))
        return [self.start_res * 2**i for i in range(n + 1)]

    @property
    def diffusion(self) -> bool:
        return self.family == "diffusion"

    @property
    def run_dir(self) -> Path:
        return RunDir.named(self.run, self.out_root).path

    def key_settings(self) -> dict[str, Any]:
        """The settings that shape this run's model and training (KEY_SETTINGS of its family), by name."""
        return {key: getattr(self, key) for key in KEY_SETTINGS[self.family]}

    def validate(self) -> RunConfig:
        """Raise ConfigError naming the first bad setting, before any work starts."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.class_name in CLASS_CHOICES, f"class {self.class_name!r} is not one of {', '.join(CLASS_CHOICES)}")
        for name in ("image_size", "start_res"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 4 and v & (v - 1) == 0, f"{name}={v} must be a power of two >= 4")
        need(self.image_size >= self.start_res, f"image_size={self.image_size} is below start_res={self.start_res}")
        for r in [4] + self.resolutions:
            need(r in self.channels, f"channels has no width for {r} px (have {sorted(self.channels)})")
        for r in self.resolutions:
            b = self.batch_sizes.get(r, 0)
            need(b > 0, f"batch size for {r} px must be a positive integer (got {self.batch_sizes.get(r)})")
            need(b <= MAX_BATCH, f"batch size for {r} px is {b}; at most {MAX_BATCH}")
        check_seed(self.seed, "seed")
        need(isinstance(self.texture_every, int) and not isinstance(self.texture_every, bool)
             and self.texture_every >= 0, f"texture_every={self.texture_every} must be a whole number of images, "
             "0 (off) or more")
        need(self.z_dim > 0 and self.w_dim > 0, "z_dim and w_dim must be positive")
        need(self.mapping_layers >= 1, "mapping_layers must be at least 1")
        need(self.arch in ARCHS, f"arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        need(self.loss in LOSSES, f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        need(self.augment in AUGMENTS, f"augment {self.augment!r} is not one of {', '.join(AUGMENTS)}")
        need(0.0 <= self.fade_fraction <= 1.0, f"fade_fraction={self.fade_fraction} must be within [0, 1]")
        need(self.epochs_per_res > 0 or bool(self.images_per_res) or bool(self.seconds_per_res),
             "the schedule needs epochs_per_res > 0, images_per_res or seconds_per_res")
        per_step = self.images_per_res.values() if isinstance(self.images_per_res, dict) else [self.images_per_res or 1]
        need(all(n > 0 for n in per_step), f"images_per_res={self.images_per_res} must be positive")
        need(isinstance(self.final_images, int) and self.final_images >= 0,
             f"final_images={self.final_images} must be a whole number of images, 0 or more")
        need(not (self.final_images and self.seconds_per_res),
             "final_images adds images to the last step: it needs an image budget, not seconds_per_res")
        need(self.lr > 0 and self.mapping_lr > 0, "learning rates must be positive")
        need(self.reg_every >= 1, "reg_every must be at least 1")
        need(math.isfinite(self.spectral_weight) and self.spectral_weight >= 0,
             f"spectral_weight={self.spectral_weight} must be 0 (off) or a positive number")
        need(not (self.spectral_weight and self.diffusion),
             "spectral_weight is a StyleGAN setting: the diffusion family's loss has no generator term")
        need(self.mbstd_group >= 1, "mbstd_group must be at least 1")
        need(self.noise_max_res is None or self.noise_max_res >= 4,
             f"noise_max_res={self.noise_max_res} must be a resolution (>= 4) or None")
        need(self.lowpass_from is None or (self.lowpass_from >= 8 and self.lowpass_from & (self.lowpass_from - 1) == 0),
             f"lowpass_from={self.lowpass_from} must be a resolution (a power of two >= 8) or None")
        need(self.lowpass_from is None or self.arch == "stylegan1",
             f"lowpass_from is built for arch stylegan1, not {self.arch} (whose resampling filters are fixed)")
        need(not self.output_lowpass or self.arch == "stylegan1",
             f"output_lowpass is built for arch stylegan1, not {self.arch}")
        need(self.critic_highpass or not self.highpass_unshuffle,
             "highpass_unshuffle shapes the critic's high-pass head: set critic_highpass=true with it")
        need(self.family in FAMILIES, f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.diffusion:
            self._validate_diffusion(need)
        if self.data_root is not None:
            need(Path(self.data_root).exists(), f"data root {self.data_root} does not exist")
        return self

    def _validate_diffusion(self, need) -> None:
        levels = len(self.unet_channels)
        need(levels >= 1 and all(isinstance(c, int) and c > 0 and c % 8 == 0 for c in self.unet_channels),
             f"unet_channels={self.unet_channels} must be positive multiples of 8 (GroupNorm uses 8 groups)")
        need(self.image_size % 2 ** (levels - 1) == 0,
             f"image_size={self.image_size} does not halve {levels - 1} times (unet_channels has {levels} levels)")
        need(self.unet_blocks >= 1, "unet_blocks must be at least 1")
        need(self.objective in OBJECTIVES, f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        need(self.diffusion_timesteps >= 2, "diffusion_timesteps must be at least 2")
        need(1 <= self.sample_steps <= self.diffusion_timesteps,
             f"sample_steps={self.sample_steps} must be within [1, diffusion_timesteps={self.diffusion_timesteps}]")
        need(self.train_images > 0 and self.diffusion_batch > 0, "train_images and diffusion_batch must be positive")
        need(self.guidance >= 0, f"guidance={self.guidance} must be 0 (none) or positive")
        need(0.0 <= self.class_dropout < 1.0, f"class_dropout={self.class_dropout} must be within [0, 1)")

    # --- serialisation ---
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in PER_RES_FIELDS:
            if isinstance(d[key], dict):
                d[key] = {str(k): v for k, v in d[key].items()}
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = drop_removed_settings(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        for key, value_type in PER_RES_FIELDS.items():
            if isinstance(d.get(key), dict):
                d[key] = {int(k): value_type(v) for k, v in d[key].items()}
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])  # JSON may give 0 for 0.0
        return cls(**d)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def drop_removed_settings(d: dict[str, Any]) -> dict[str, Any]:
    """`d` without the removed settings; one set to anything but its old default is refused,
    since the run it describes trained with code that no longer exists."""
    for name, default in REMOVED_SETTINGS.items():
        if name in d and d[name] != default:
            raise ConfigError(f"setting {name}={d[name]!r} was removed from brainlib (only {default!r}, "
                              f"its old default, is accepted); train with this version's settings")
    return {k: v for k, v in d.items() if k not in REMOVED_SETTINGS}


# ----------------------------------------------------------------------
# Presets. `paper` is the original recipe; `demo` fits a CPU laptop;
# `smoke` is for tests and takes seconds.

# A CPU run of minutes per class (docs/quality.md: what it reaches; docs/experiments.md: how each
# setting was chosen).
DEMO: dict[str, Any] = dict(
    image_size=64, z_dim=128, w_dim=128, mapping_layers=8,
    channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16},
    batch_sizes={8: 16, 16: 16, 32: 16, 64: 16},
    images_per_res=17800, fade_fraction=0.3,  # image counts, not seconds: reproducible runs
    lr=2e-3, mapping_lr=2e-5,  # the mapping network at 0.01 x lr, as StyleGAN
    # logistic loss with lazy R1 and a short EMA learn faster than WGAN-GP; DiffAugment keeps
    # the critic near chance at this budget; gamma 4 keeps the layout learned at 8 px
    loss="logistic-r1", reg_every=4, r1_gamma=4.0, augment="none",
    ema_half_life_kimg=0.3, mbstd_group=4,
    noise_max_res=32,  # at 64 px the 16-channel layers turn per-pixel noise into speckle
    composite=True,  # tissue through a learned mask on black: the background is black, as in MRI
    # cpu_bf16 is left to the CPU: bf16 autocast where it has bf16 instructions, float32 elsewhere
    splits=["train"], checkpoint_minutes=2.0,
    texture_every=2000,  # 10 texture probes in the 64 px step (RunConfig.texture_every: their cost)
)

# The diffusion family (networks/unet.py, networks/diffusion.py): rectified flow (measured against
# v and epsilon: docs/quality.md), sampled with 25 steps. train_images: training plus generating
# 1,000 images in about the StyleGAN demo's time per class (benchmarks/diffusion_speed.py prints it)
DIFFUSION_DEMO: dict[str, Any] = dict(
    family="diffusion", image_size=64, unet_channels=[16, 32, 64, 128], unet_blocks=1, unet_attention=True,
    objective="flow", train_images=40_000, diffusion_batch=16, lr=1e-3, betas=(0.9, 0.99),
    ema_half_life_kimg=2.0, sample_steps=25, guidance=1.0, class_dropout=0.1,
    splits=["train"], checkpoint_minutes=3.0,  # each checkpoint samples a 4x4 grid (~6 s at one thread)
    texture_every=10_000,  # 4 texture probes (RunConfig.texture_every: their cost)
)

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # the paper's widths and batches (a GPU) with the demo's loss and schedule; EMA stays at
    # 10 kimg (a GPU run sees millions of images) and DiffAugment stays on (dozens of passes
    # over a few thousand slices)
    "paper-plus": dict(
        loss="logistic-r1", reg_every=4, r1_gamma=1.0, augment="diffaugment",
        lr=2e-3, mapping_lr=2e-5, fade_fraction=0.3,
    ),
    # StyleGAN2 at 128 px with the paper's widths and batches, for a GPU: demodulation and the
    # skip / residual networks (StyleGAN2's own gains at scale), the logistic loss with lazy R1,
    # adaptive augmentation (it stays off unless the critic overfits a small dataset), and the
    # demo's composing on black
    "gpu": dict(
        arch="stylegan2", loss="logistic-r1", reg_every=4, r1_gamma=1.0, augment="adaptive",
        lr=2e-3, mapping_lr=2e-5, fade_fraction=0.3, composite=True,
    ),
    "demo": DEMO,
    # the `demo` trained on at 64 px, alpha 1, for twice its compute in all (36,700 more images:
    # benchmarks/design_speed.py's step costs) and so about twice its time: the finest band and FID
    # it buys are in docs/quality.md
    "demo-long": dict(DEMO, final_images=36_700),
    # the demo's widths in about the demo's CPU time with StyleGAN2 and the relativistic loss,
    # to set the two generations side by side on a CPU
    "demo-sg2": dict(DEMO, arch="stylegan2", loss="rpgan-r1r2", images_per_res=12150),
    "diffusion-demo": DIFFUSION_DEMO,
    # 128 px for a GPU: wider levels, one more of them, two blocks each
    "diffusion-gpu": dict(
        DIFFUSION_DEMO, image_size=128, unet_channels=[64, 128, 256, 256], unet_blocks=2,
        train_images=2_000_000, diffusion_batch=64, lr=2e-4, betas=(0.9, 0.999), ema_half_life_kimg=50.0,
        checkpoint_minutes=10.0, texture_every=50_000,
    ),
    # for tests: seconds
    "diffusion-smoke": dict(
        DIFFUSION_DEMO, image_size=16, unet_channels=[8, 16], train_images=32, diffusion_batch=8,
        max_images=32, diffusion_timesteps=100, sample_steps=4, ema_half_life_kimg=0.1,
        checkpoint_minutes=60.0, sample_grid=2, texture_every=0,  # tests turn the texture probe on
    ),
    "smoke": dict(
        image_size=16, z_dim=16, w_dim=16, mapping_layers=2,
        channels={4: 16, 8: 16, 16: 8},
        batch_sizes={8: 8, 16: 8},
        images_per_res=32, max_images=32, mapping_lr=1e-4,
        ema_half_life_kimg=0.1, mbstd_group=2, splits=["train"],
        checkpoint_minutes=60.0, sample_grid=2, texture_every=0,  # tests turn the texture probe on
    ),
}


def preset(name: str, **overrides: Any) -> RunConfig:
    """The named preset with overrides applied and validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = RunConfig.from_dict({**RunConfig().to_dict(), **PRESETS[name]})
    return base.replace(**coerce_overrides(overrides)).validate()


def resumed_settings(cfg: RunConfig, given: dict[str, Any]) -> RunConfig:
    """The settings a resumed run continues with: those its config.json saved, with `given` (the
    settings named on the command line) on top, found where `cfg` says (its run and out_root). A
    preset's defaults never replace what the run trained with: resuming a `--set seed=1` run without
    restating it keeps seed 1, and a run on `--data X` goes on with X. `cfg` as it is where the run
    saved no config (the resume then says what is missing). A run is one model: another class is refused."""
    path = RunDir(cfg.run_dir).config
    if not path.exists():
        return cfg
    try:
        saved = RunConfig.load(path)
    except (ValueError, TypeError) as e:  # broken JSON, or values of the wrong shape
        raise ConfigError(f"{path} is not a readable run config ({e}); resume needs the settings the run "
                          "trained with") from e
    if "class_name" in given and given["class_name"] != saved.class_name:
        raise ConfigError(f"run {cfg.run} trained class {saved.class_name}; it cannot go on as class "
                          f"{given['class_name']} (train a new run for that class)")
    return saved.replace(**coerce_overrides(given) | {"run": cfg.run, "out_root": cfg.out_root}).validate()


def coerce_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Turn `key=value` strings from the CLI or papermill into typed values."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in REMOVED_SETTINGS:
            raise ConfigError(f"setting {key!r} was removed from brainlib; see docs/experiments.md for what it did")
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r}; see brainlib.config.RunConfig for the list")
        if isinstance(value, str) and fields[key].type not in ("str", "str | None"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ConfigError(f"setting {key}={value!r} is not valid JSON for that field") from e
        out[key] = value
    converted = RunConfig.from_dict({**RunConfig().to_dict(), **out})
    return {k: getattr(converted, k) for k in out}


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """`["lr=0.002", "loss=logistic-r1"]` -> {"lr": "0.002", "loss": "logistic-r1"}."""
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} must look like key=value")
        k, v = pair.split("=", 1)
        result[k.strip()] = v.strip()
    return result
