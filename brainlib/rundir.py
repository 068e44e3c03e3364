"""The run folder: where a run keeps each of its files, and where runs live.

    <out_root>/<run>/                      RunDir
        config.json                        the RunConfig the run was trained with
        checkpoints/<step>-<res>px.safetensors + .json    end of each resolution step (02-16px)
        checkpoints/<step>-<res>px-<images>img.*          periodic, superseded by the next
        checkpoints/<step>-<res>px-<images>img-final.*    a finished run trained longer (final_images)
        checkpoints/<res>px-<images>img[-final].*        a diffusion run's (no resolution steps)
        checkpoints/latest.json            names the newest checkpoint
        checkpoints/best-<images>.*, best.json   the texture probe's best EMA generator, and its pointer
        samples/<step>-<res>px.png         the fixed latents' grid after each step; 03_<name>.png: 03_samples'
        samples/<step>-<res>px-<images>img-final.png     the grid where a run trained longer finished
        samples/<res>px-<images>img[-final].png          a diffusion run's grid at each checkpoint
        plots/loss_per_batch.png, plots/loss_per_epoch.png, plots/texture.png (the texture probe)
        metrics.jsonl                      one row per logged batch, one per texture probe
        eval.json, eval/                   the evaluation and its figures (eval-psi<psi>.* when truncated,
                                           eval-best.* for the best snapshot, eval-steps<k>.* with other
                                           diffusion sampling steps, eval-seed<s>.* drawn with seed s)
        generated_images/<name>/ + <name>.json, projections/, counterfactuals/, explorer/
    <out_root>/<batch>/                    BatchDir: notebooks/, plots/, timings.json, eval.json
                                           (eval-<preset>.json each in a batch of several presets)

Every module asks here for these paths; nothing else spells them. The default out_root,
"outputs", is relative: the caller's folder (notebooks chdir to the workbook first).
Pure paths: no file is read or made here.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Self

DEFAULT_OUT_ROOT = "outputs"
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
BEST = "best.json"
SNAPSHOTS = ("latest", "best")  # what `generate`, `export` and `evaluate` load with --snapshot
_STEP_NAME = re.compile(r"^(\d+)-(\d+)px$")
_IMAGES_NAME = re.compile(r"^(\d+)px-(\d+)img(-final)?$")
_EXTENDED_NAME = re.compile(r"^(\d+)-(\d+)px-(\d+)img-final$")


def step_name(step: int, res: int) -> str:
    """The name of resolution step `step` (from 1) at `res` px: its checkpoint and its grid, e.g. 02-16px."""
    return f"{step:02d}-{res}px"


def periodic_name(step: int, res: int, images_seen: int) -> str:
    """The name of a checkpoint taken within a step, e.g. 02-16px-000000056img."""
    return f"{step_name(step, res)}-{images_seen:09d}img"


def parse_step_name(name: str) -> tuple[int, int] | None:
    """(step, res) of a name step_name made (a file stem), else None."""
    m = _STEP_NAME.match(name)
    return (int(m[1]), int(m[2])) if m else None


def extended_name(step: int, res: int, images_seen: int) -> str:
    """The name of the checkpoint, and grid, where a finished run trained longer (final_images)
    ended: 04-64px-000107936img-final. The step's own end (step_name) stays beside it."""
    return periodic_name(step, res, images_seen) + "-final"


def parse_extended_name(name: str) -> tuple[int, int, int] | None:
    """(step, res, images seen) of a name extended_name made (a file stem), else None."""
    m = _EXTENDED_NAME.match(name)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def images_name(res: int, images_seen: int, *, finished: bool = False) -> str:
    """The name of a checkpoint, and of its sample grid, of a run without resolution steps (the
    diffusion family): 16px-000000032img, and 16px-000000032img-final where a budget finished."""
    return f"{res}px-{images_seen:09d}img" + ("-final" if finished else "")


def parse_images_name(name: str) -> tuple[int, int, bool] | None:
    """(res, images seen, finished) of a name images_name made (a file stem), else None."""
    m = _IMAGES_NAME.match(name)
    return (int(m[1]), int(m[2]), bool(m[3])) if m else None


def eval_figure_name(kind: str, class_name: str) -> str:
    """The file name of an evaluation's per-class figure (real, generated or memorisation) in its folder."""
    return f"{kind}_{class_name}.png"


def checkpoint_meta(checkpoint: str | Path) -> Path:
    """The JSON beside a checkpoint's tensors file."""
    return Path(checkpoint).with_suffix(".json")


class StepGrid(NamedTuple):
    step: int
    res: int
    path: Path


class ExtendedGrid(NamedTuple):
    step: int
    res: int
    images_seen: int
    path: Path


class ImagesGrid(NamedTuple):
    images_seen: int
    finished: bool
    res: int
    path: Path


class _Folder(os.PathLike):
    """A folder of known layout; path-like, so `Path(folder)` and `open` take it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def named(cls, name: str, out_root: str | os.PathLike = DEFAULT_OUT_ROOT) -> Self:
        """The folder of run (or batch) `name` under out_root."""
        return cls(Path(out_root) / name)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def eval_report(self, psi: float = 1.0, snapshot: str = "latest", steps: int | None = None,
                    seed: int = 0) -> Path:
        """eval.json; eval-psi<psi>.json for an evaluation with truncation, eval-best*.json of the
        best snapshot, eval*-steps<k>.json for a diffusion run sampled with k steps other than its own,
        eval*-seed<s>.json for an evaluation drawn with seed s instead of 0."""
        return self.path / f"{_eval_stem(psi, snapshot, steps, seed)}.json"


class RunDir(_Folder):
    """The files of one training run."""

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDir:
        """The run holding a checkpoint file (a loose file outside checkpoints/: its folder)."""
        folder = Path(checkpoint).parent
        return cls(folder.parent if folder.name == CHECKPOINTS else folder)

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def latest(self) -> Path:
        """The pointer to the newest checkpoint."""
        return self.checkpoints / LATEST

    def checkpoint(self, name: str) -> Path:
        """The tensors file of checkpoint `name` (its JSON: checkpoint_meta)."""
        return self.checkpoints / f"{name}.safetensors"

    def periodic_checkpoints(self) -> list[Path]:
        return sorted(self.checkpoints.glob("*img.safetensors"))

    @property
    def best(self) -> Path:
        """The pointer to the best snapshot (training/texture_probe.py)."""
        return self.checkpoints / BEST

    def best_snapshot(self, images_seen: int) -> Path:
        """The tensors file of the best snapshot taken after `images_seen` images."""
        return self.checkpoint(f"best-{images_seen:09d}")

    def best_snapshots(self) -> list[Path]:
        return sorted(self.checkpoints.glob("best-*.safetensors"))

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def _grids(self, parse: Callable[[str], tuple | None], make: Callable[..., tuple]) -> list:
        """`make(*parsed, path)` of each sample grid whose name `parse` reads, sorted."""
        return sorted(make(*parsed, p) for p in self.samples.glob("*.png") if (parsed := parse(p.stem)))

    def step_grids(self) -> list[StepGrid]:
        """The grids the trainer wrote after each step, in step order."""
        return self._grids(parse_step_name, StepGrid)

    def extended_grids(self) -> list[ExtendedGrid]:
        """The grids where a finished StyleGAN run trained longer ended, in the order of images seen."""
        return self._grids(parse_extended_name, ExtendedGrid)

    def images_grids(self) -> list[ImagesGrid]:
        """The grids a diffusion run wrote at its checkpoints, in the order of images seen."""
        return self._grids(parse_images_name, lambda res, images, finished, p: ImagesGrid(images, finished, res, p))

    def checkpoint_grid(self, name: str) -> Path:
        """The sample grid saved with checkpoint `name` (step_name, images_name, or a finished
        step trained longer: `<step>-<res>px-<images>img-final`)."""
        return self.samples / f"{name}.png"

    def training_grids(self) -> list[Path]:
        """Every grid the trainer wrote, in training order: a StyleGAN's after each resolution
        step (step_grids) and where it trained longer (extended_grids), a diffusion model's at each
        checkpoint (images_grids)."""
        return [g.path for grids in (self.step_grids(), self.extended_grids(), self.images_grids()) for g in grids]

    @property
    def loss_per_batch_plot(self) -> Path:
        return self.plots / "loss_per_batch.png"

    @property
    def loss_per_epoch_plot(self) -> Path:
        return self.plots / "loss_per_epoch.png"

    @property
    def texture_plot(self) -> Path:
        return self.plots / "texture.png"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def eval_figures(self, psi: float = 1.0, snapshot: str = "latest", steps: int | None = None,
                     seed: int = 0) -> Path:
        """The folder of that evaluation's figures and features: eval/, eval-psi<psi>/, eval-best*/,
        eval*-steps<k>/, eval*-seed<s>/."""
        return self.path / _eval_stem(psi, snapshot, steps, seed)

    def eval_figure(self, kind: str, class_name: str, psi: float = 1.0) -> Path:
        """An evaluation's per-class figure: kind real, generated (4x4 grids) or memorisation."""
        return self.eval_figures(psi) / eval_figure_name(kind, class_name)

    def notebook_sample(self, name: str) -> Path:
        """A figure 03_samples saves for the report: samples/03_<name>.png."""
        return self.samples / f"03_{name}.png"

    def notebook_samples(self) -> list[Path]:
        return sorted(self.samples.glob("03_*.png"))

    def generated_images(self, name: str) -> Path:
        """`brainlib generate --output <name>`'s folder; generated_record(name) beside it."""
        return self.path / "generated_images" / name

    def generated_record(self, name: str) -> Path:
        return self.path / "generated_images" / f"{name}.json"

    @property
    def projections(self) -> Path:
        return self.path / "projections"

    @property
    def counterfactuals(self) -> Path:
        return self.path / "counterfactuals"

    @property
    def explorer(self) -> Path:
        return self.path / "explorer"


def _eval_stem(psi: float, snapshot: str = "latest", steps: int | None = None, seed: int = 0) -> str:
    return ("eval" + ("" if snapshot == "latest" else f"-{snapshot}") + ("" if psi == 1.0 else f"-psi{psi:g}")
            + ("" if steps is None else f"-steps{steps}") + ("" if seed == 0 else f"-seed{seed}"))


def find_model(model: str | os.PathLike, out_root: str | os.PathLike = DEFAULT_OUT_ROOT) -> Path:
    """The existing file or folder a model names: a path as given (a checkpoint file or a run
    folder), else a run name under out_root."""
    candidates = [Path(model), Path(out_root) / str(model)]
    for cand in candidates:
        if cand.is_file() or cand.is_dir():
            return cand
    raise FileNotFoundError(f"no run or checkpoint named {model!r}: looked for {candidates[0]} and {candidates[1]}")


def eval_reports(out_root: str | os.PathLike = DEFAULT_OUT_ROOT) -> list[Path]:
    """The untruncated eval.json of every run and batch folder under out_root, sorted."""
    return sorted(Path(out_root).glob(f"*/{_eval_stem(1.0)}.json"))


def run_dir_of(model: str | os.PathLike, *, out_root: str | os.PathLike = DEFAULT_OUT_ROOT) -> RunDir:
    """The run folder of a model given as checkpoints.load_generator takes it (a run name under
    out_root, a run folder, or a checkpoint file)."""
    found = find_model(model, out_root)
    return RunDir.of_checkpoint(found) if found.is_file() else RunDir(found)


class BatchDir(_Folder):
    """The folder of a `brainlib run` batch, beside its runs under out_root: the executed
    notebooks, 01_data's figures in plots/, timings.json and a copy of the runs' eval.json."""

    @property
    def notebooks(self) -> Path:
        return self.path / "notebooks"

    @property
    def timings(self) -> Path:
        return self.path / "timings.json"

    def preset_eval_report(self, preset: str) -> Path:
        """In a batch of several presets, the copy of one preset's eval.json: eval-<preset>.json."""
        return self.path / f"eval-{preset}.json"
