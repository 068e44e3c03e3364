"""Checkpoints: every tensor of a run in one safetensors file, everything else in JSON.

A checkpoint `<run>/checkpoints/<name>` is two files written in this order, each
atomically (brainlib/atomic.py): `<name>.safetensors` (weights of G, D and the EMA
generator, both optimisers' state tensors, the torch RNG states, the fixed sample
latents) and `<name>.json` (config, network settings, schedule position, non-tensor optimiser
state, the architecture signature and the sha256 of the safetensors file). Only then does
`latest.json` move to the new checkpoint, so a crash or a full disk at any moment
leaves the previous checkpoint usable. Loading reads safetensors and JSON and never
unpickles; metadata an older version wrote is read through legacy.py.
"""
from __future__ import annotations

import errno
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from brainlib.atomic import atomic_write_bytes, atomic_write_json
from brainlib.config import ConfigError, RunConfig
from brainlib.networks.build import build_generator
from brainlib.networks.diffusion import ARCHITECTURE as DIFFUSION_ARCHITECTURE
from brainlib.networks.settings import NetworkSettings, network_settings
from brainlib.networks.stylegan1 import ARCHITECTURE
from brainlib.rundir import DEFAULT_OUT_ROOT, LATEST, SNAPSHOTS, RunDir, checkpoint_meta, find_model, run_dir_of
from brainlib.training.legacy import upgrade_meta

# 2: the network settings recorded ("networks"), "optimisers" spelt so; legacy.py reads 1
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or used; the message names the file."""


# ----------------------------------------------------------------------
# Writing and reading one checkpoint


def save_checkpoint(run_dir: str | Path, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write `<run_dir>/checkpoints/<name>.safetensors` and `.json`, then point latest.json at them.

    `meta` must be JSON-able; the models' ARCHITECTURE is recorded unless it names one.
    Returns the safetensors path. On failure (for example a full disk) raises CheckpointError
    and leaves latest.json and the previous checkpoint intact."""
    run = RunDir(run_dir)
    return _write_checkpoint(run.checkpoint(name), tensors, meta, pointer=run.latest,
                             previous=latest_checkpoint(run_dir))


def _write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict, *, pointer: Path,
                      previous: Path | None, pointed: dict | None = None) -> Path:
    """The tensors file, its JSON, then `pointer` naming them ({"checkpoint": name, **pointed}), each atomically."""
    meta_path = checkpoint_meta(path)
    # safetensors refuses views that share storage, and wants contiguous CPU tensors
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    blob = safetensors_save(flat)
    meta = {"architecture": ARCHITECTURE, **meta, "format_version": FORMAT_VERSION,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "file": path.name}
    try:
        atomic_write_bytes(path, blob)
        atomic_write_json(meta_path, meta)
        atomic_write_json(pointer, {"checkpoint": path.name, **(pointed or {})})
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {path}: {reason}; {kept}") from e
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a checkpoint; verifies the file against the sha256 in its JSON and
    refuses one written for another model architecture (`_check_architecture`).

    A `.pt` file is read with torch.load(weights_only=True) and must hold a dict of tensors;
    its metadata comes from a `.json` beside it when present."""
    path = Path(path)
    if path.suffix == ".json" and path.name != LATEST:
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    meta_path = checkpoint_meta(path)
    if path.suffix == ".pt":
        return _load_pt(path), upgrade_meta(_read_json(meta_path)) if meta_path.is_file() else {}
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint {path} has no metadata file {meta_path.name} beside it")
    meta = _read_json(meta_path)
    blob = path.read_bytes()
    if meta.get("sha256") and hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupt or was modified: its sha256 does not match "
                              f"the one recorded in {meta_path.name}")
    try:
        tensors = safetensors_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({e})") from e
    _check_architecture(meta, path)
    return tensors, upgrade_meta(meta)


def _check_architecture(meta: dict, path: str | Path) -> None:
    """Refuse a checkpoint written by save_checkpoint whose weights the current models would
    compute differently (models.ARCHITECTURE; before it was recorded, 1). The files stay as
    they are. A bare .pt state dict carries no record and is taken as it is."""
    written = meta.get("architecture", 1)
    expected = DIFFUSION_ARCHITECTURE if meta.get("family") == "diffusion" else ARCHITECTURE
    if "format_version" in meta and written != expected:
        raise CheckpointError(
            f"checkpoint {path} was written for architecture {written} and this brainlib builds "
            f"architecture {expected} (see brainlib/networks/): the same weights would give other "
            f"images. Retrain, or use the brainlib version that wrote it; the checkpoint is unchanged")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in chunks (checkpoints can be hundreds of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint latest.json points to, or None when the run has none yet."""
    return _pointed(RunDir(run_dir).latest)


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The best snapshot best.json points to (the texture probe's, training/texture_probe.py), or None."""
    return _pointed(RunDir(run_dir).best)


def best_record(run_dir: str | Path) -> dict | None:
    """best.json: the best snapshot's file, "score" and "images_seen", or None when the run has none."""
    pointer = RunDir(run_dir).best
    return _read_json(pointer) if pointer.is_file() else None


def _pointed(pointer: Path) -> Path | None:
    if not pointer.is_file():
        return None
    name = _read_json(pointer).get("checkpoint")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise CheckpointError(f'{pointer} does not name a checkpoint file in its folder (expected '
                              f'{{"checkpoint": "<name>.safetensors"}}, got "checkpoint": {json.dumps(name)})')
    return pointer.parent / name


def _read_json(path: Path) -> dict:
    """A JSON object from `path`; anything else (broken JSON, null, a list, a number) is a CheckpointError."""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object {{...}}, not {json.dumps(value)[:40]}")
    return value


def _load_pt(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for refused or broken pickles
        raise CheckpointError(f"checkpoint {path} could not be read as a weights-only torch file ({e})") from e
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} must hold a dict of tensors (a state dict)")
    return obj


# ----------------------------------------------------------------------
# Modules and optimisers <-> flat tensor dicts


def architecture_signature(tensors: dict[str, torch.Tensor], prefixes=("G/", "D/", "G_ema/")) -> dict[str, list[int]]:
    """Tensor name -> shape for the networks' weights: what must match to load them."""
    return {k: list(v.shape) for k, v in tensors.items() if k.startswith(prefixes)}


def module_tensors(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def load_module(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: str | Path) -> None:
    """Copy `<prefix>/...` tensors into `module`; refuse with the list of differences if they do not fit."""
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k[len(prefix) + 1:]: tuple(v.shape) for k, v in tensors.items() if k.startswith(prefix + "/")}
    problems = [f"  missing in checkpoint: {k} {list(s)}" for k, s in wanted.items() if k not in have]
    problems += [f"  not in the model: {k} {list(s)}" for k, s in have.items() if k not in wanted]
    problems += [f"  shape of {k}: checkpoint {list(have[k])}, model {list(s)}"
                 for k, s in wanted.items() if k in have and have[k] != s]
    if problems:
        shown = problems[:25] + ([f"  ... and {len(problems) - 25} more"] if len(problems) > 25 else [])
        raise CheckpointError(f"checkpoint {source} does not fit this {prefix} architecture "
                              f"({len(problems)} differences):\n" + "\n".join(shown))
    state = {k: tensors[f"{prefix}/{k}"] for k in wanted}
    module.load_state_dict(state, strict=True)


def optimiser_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state dict into tensors (flattened names) and a JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/state/{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimiser(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], extra: dict, prefix: str) -> None:
    """Inverse of optimiser_tensors; tensors land on the device of the optimiser's parameters."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "/state/"):
            idx, key = name[len(prefix) + 7:].split("/", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in extra.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    saved = extra["param_groups"]
    current = opt.state_dict()["param_groups"]
    if [len(g["params"]) for g in saved] != [len(g["params"]) for g in current]:
        n_saved, n_now = sum(len(g["params"]) for g in saved), sum(len(g["params"]) for g in current)
        if n_saved != n_now:
            raise ValueError(f"{prefix}: the checkpoint's optimiser holds {n_saved} parameters, this model {n_now}")
        # older checkpoints split G's synthesis parameters into one group per block, in the same
        # order: the per-parameter state fits, the group settings come from this optimiser
        saved = current
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in saved]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------
# A training run's checkpoints: networks, optimisers and the rest of its state


def save_training_checkpoint(run_dir: Path, name: str, *, networks: dict[str, nn.Module],
                             optimisers: dict[str, torch.optim.Optimizer], state: dict[str, torch.Tensor],
                             meta: dict) -> Path:
    """One checkpoint of a training run (`state`: its other tensors, RNGs and sample latents);
    the periodic checkpoints it supersedes are deleted."""
    tensors = {k: v for prefix, m in networks.items() for k, v in module_tensors(m, prefix).items()}
    signature = architecture_signature(tensors)
    optimiser_meta = {}
    for prefix, opt in optimisers.items():
        opt_tensors, optimiser_meta[prefix] = optimiser_tensors(opt, prefix)
        tensors |= opt_tensors
    meta = {**meta, "optimisers": optimiser_meta, "signature": signature,
            "saved_at": datetime.now().isoformat(timespec="seconds")}
    path = save_checkpoint(run_dir, name, tensors | state, meta)
    prune_periodic(run_dir, keep=path)
    return path


def save_best_snapshot(run_dir: Path, networks: dict[str, nn.Module], meta: dict, *, score: float) -> Path:
    """The networks (a generator's EMA weights) as the run's best snapshot: a checkpoint
    `best-<images seen>` beside the others, then best.json naming it with its score, then the
    previous best deleted. latest.json stays where it is; a crash at any moment leaves best.json
    naming a complete snapshot."""
    run = RunDir(run_dir)
    previous = best_checkpoint(run_dir)
    tensors = {k: v for prefix, m in networks.items() for k, v in module_tensors(m, prefix).items()}
    path = _write_checkpoint(run.best_snapshot(meta["images_seen"]), tensors, meta, pointer=run.best,
                             previous=previous, pointed={"score": score, "images_seen": meta["images_seen"]})
    for old in run.best_snapshots():  # the previous best, and any a crash left unnamed
        if old != path:
            checkpoint_meta(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    return path


def restore_training_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict, *,
                                networks: dict[str, nn.Module], optimisers: dict[str, torch.optim.Optimizer]) -> None:
    for prefix, module in networks.items():
        load_module(module, tensors, prefix, path)
    for prefix, opt in optimisers.items():
        load_optimiser(opt, tensors, meta["optimisers"][prefix], prefix)


def prune_periodic(run_dir: Path, keep: Path) -> None:
    """Periodic checkpoints (`*img`) are superseded by any newer one; end-of-step ones stay."""
    for old in RunDir(run_dir).periodic_checkpoints():
        if old != keep:
            checkpoint_meta(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)


def rng_to_json(state: tuple) -> list:
    """Python's random.getstate() as JSON."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def networks_to_resume(meta: dict, cfg: RunConfig, source: Path) -> NetworkSettings:
    """The checkpoint's network settings, mapping multiplier included (whatever the learning
    rates now are); refused, naming the settings, when `cfg` would build other networks (for
    example after a preset changed between versions)."""
    family = meta.get("config", {}).get("family", "stylegan")
    refuse_other_networks({"family": (family, cfg.family)} if family != cfg.family else {}, source)
    saved = NetworkSettings.from_dict(meta["networks"])
    refuse_other_networks(network_settings(cfg).changed_from(saved), source)
    return saved


def check_same_settings(saved_config: dict, cfg: RunConfig, source: Path, fields: tuple[str, ...]) -> None:
    """Refuse to resume a run (of a family without NetworkSettings: diffusion) whose `fields`,
    the settings that shape its networks, `cfg` changes."""
    old = RunConfig.from_dict(saved_config)
    refuse_other_networks({k: (getattr(old, k), getattr(cfg, k)) for k in fields
                           if getattr(old, k) != getattr(cfg, k)}, source)


def refuse_other_networks(changed: dict[str, tuple], source: Path) -> None:
    """Refuse, naming the settings, to resume a run whose networks would change."""
    if changed:
        listed = "; ".join(f"{k} was {was!r}, now {now!r}" for k, (was, now) in changed.items())
        raise ConfigError(f"cannot resume {source}: it was trained with other network settings ({listed}). "
                          f"Resume with the run's own settings (e.g. --set {next(iter(changed))}=...) "
                          "or train a new run.")


# ----------------------------------------------------------------------
# The generator for sampling


def resolve_checkpoint(model: str | Path, out_root: str | Path = DEFAULT_OUT_ROOT) -> Path:
    """A run name under out_root, a run folder, or a checkpoint file -> the checkpoint file."""
    found = find_model(model, out_root)
    if found.is_file():
        return found
    latest = latest_checkpoint(found)
    if latest is None:
        raise FileNotFoundError(f"run folder {found} has no checkpoint yet (no checkpoints/{LATEST})")
    return latest


def snapshot_checkpoint(model: str | Path, snapshot: str = "latest",
                        out_root: str | Path = DEFAULT_OUT_ROOT) -> str | Path:
    """What to load for `model` at `snapshot`: `model` itself for "latest" (its run's newest
    checkpoint, or the checkpoint file named), the run's best snapshot file for "best"."""
    if snapshot not in SNAPSHOTS:
        raise ValueError(f"snapshot {snapshot!r} is not one of {', '.join(SNAPSHOTS)}")
    if snapshot == "latest":
        return model
    run = run_dir_of(model, out_root=out_root)
    best = best_checkpoint(run)
    if best is None or not best.is_file():
        found = "names a missing file" if best is not None else "is missing"
        raise CheckpointError(f"run {run} has no best snapshot: {run.best} {found} (the texture probe keeps one when "
                              "texture_every > 0, from the final resolution on); use --snapshot latest")
    return best


def load_generator(model: str | Path, *, out_root: str | Path = DEFAULT_OUT_ROOT, device: str | torch.device = "cpu"):
    """(EMA generator in eval mode, RunConfig, meta) from a run name, run folder or checkpoint;
    G is built from the checkpoint's network settings, else (a bare .pt) from the config's.

    meta holds "res", "alpha", "images_seen" and "finished" (plus the rest of the checkpoint's JSON)."""
    path = resolve_checkpoint(model, out_root)
    tensors, meta = load_checkpoint(path)
    if "config" in meta:
        cfg = RunConfig.from_dict(meta["config"])
    else:
        config_json = RunDir.of_checkpoint(path).config
        if not config_json.is_file():
            raise CheckpointError(f"checkpoint {path} has no config in its metadata and no {config_json}")
        cfg = RunConfig.load(config_json)
    if cfg.diffusion:
        raise CheckpointError(f"checkpoint {path} holds a diffusion model, not a StyleGAN generator; "
                              f"load it with brainlib.synthesis.sampling.load")
    settings = NetworkSettings.from_dict(meta["networks"]) if "networks" in meta else network_settings(cfg)
    G = build_generator(settings)
    prefix = "G_ema" if any(k.startswith("G_ema/") for k in tensors) else None
    if prefix is None:  # a bare state dict (.pt) of the generator
        tensors, prefix = {f"G/{k}": v for k, v in tensors.items()}, "G"
    load_module(G, tensors, prefix, path)
    meta = {"res": cfg.image_size, "alpha": 1.0, "images_seen": 0, "finished": False, **meta}
    return G.to(device).eval().requires_grad_(False), cfg, meta
