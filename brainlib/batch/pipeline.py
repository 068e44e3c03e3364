"""Run the numbered notebooks end to end with papermill: the `brainlib run` batch.

A batch named `demo` trains `outputs/demo-AD` and `outputs/demo-NC` (or one
conditional `outputs/demo-both`) and keeps its executed notebooks and summary page
in `outputs/demo/`:

    01_data -> 02_train_progressive (once per class) -> 03_samples -> 04_umap -> summary

Every notebook declares its parameters in its `parameters` cell; the batch offers
each notebook the values below and passes only those the notebook declares, so a
notebook runs the same way under `brainlib run`, under plain `papermill -p ...` and
in JupyterLab. Paths are made absolute first: notebooks `os.chdir` to the
workbook folder, while the CLI resolves paths against the caller's folder.
papermill is imported lazily: training must not need the notebook stack.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainlib.atomic import atomic_write_json
from brainlib.batch.report_page import format_seconds
from brainlib.batch.summary import write_summary
from brainlib.config import PRESETS, ConfigError, project_root
from brainlib.config import preset as make_preset  # `preset` is a parameter name here
from brainlib.rundir import DEFAULT_OUT_ROOT, BatchDir, RunDir, checkpoint_meta

NOTEBOOKS = ("01_data", "02_train_progressive", "03_samples", "04_umap")
KERNEL_NAME = "python3"  # installed into the venv by the Makefile (ipykernel install --sys-prefix)
RUN_NAME_PARAMETERS = ("run_name", "run")  # what 02 may call the training run's name


class PipelineError(RuntimeError):
    """A notebook of the batch failed; the message names it, the cell, and where the
    executed notebook (with its traceback) was kept."""


@dataclass
class Step:
    """One notebook execution of the batch, and how it went."""
    notebook: str                  # stem, e.g. "02_train_progressive"
    label: str                     # what the progress line shows, e.g. "02_train_progressive AD"
    output: Path                   # the executed notebook
    parameters: dict[str, Any] = field(default_factory=dict)
    run: str | None = None         # the training run this step makes, for 02
    status: str = "pending"        # pending | done | skipped | failed
    seconds: float | None = None


def run_batch(preset: str = "demo", classes: tuple[str, ...] | list[str] = ("AD", "NC"),
              conditional: bool = False, data_root: str | Path | None = None,
              name: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT, retrain: bool = False,
              *, notebooks_dir: str | Path | None = None, parameters: dict[str, Any] | None = None,
              kernel_name: str = KERNEL_NAME) -> Path:
    """Execute 01..04 for one batch and write its summary page; return summary.html.

    Finished training runs (checkpoints/latest.json says "finished") are skipped unless
    `retrain`; 03 and 04 always run. `parameters` adds extra values offered to every
    notebook (e.g. a smaller sample count for tests). A failing notebook raises
    PipelineError after papermill has saved the executed notebook with its error.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    run_classes = ["both"] if conditional else _checked_classes(classes)
    name = name or preset
    out_root = Path(out_root).expanduser().resolve()
    data_root = None if data_root is None else str(_existing_dir(data_root, "data root"))
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    batch_dir = BatchDir.named(name, out_root)
    runs = [f"{name}-{cls}" for cls in run_classes]
    run_dirs = [RunDir.named(run, out_root) for run in runs]
    offered = batch_parameters(preset, run_classes, data_root, name, out_root, parameters)

    steps = plan_steps(notebooks_dir, batch_dir.notebooks, offered, run_classes, runs)
    batch = dict(preset=preset, classes=list(run_classes), conditional=conditional, data_root=data_root,
                 name=name, out_root=str(out_root))
    print(f"batch {name!r}: {len(steps)} notebooks, outputs in {batch_dir}", flush=True)
    started = time.monotonic()
    for i, step in enumerate(steps, 1):
        prefix = f"[{i}/{len(steps)}] {step.label} ..."
        run_dir = RunDir.named(step.run, out_root) if step.run else None
        if run_dir is not None and not retrain and training_finished(run_dir):
            step.status = "skipped"
            _record(batch_dir, steps)
            print(f"{prefix} skipped: {run_dir} already finished (retrain=True to redo)", flush=True)
            continue
        if run_dir is not None and "resume" in declared_parameters(notebooks_dir / f"{step.notebook}.ipynb"):
            # an interrupted run continues from its checkpoint; retrain starts it afresh
            started_before = run_dir.latest.is_file()
            step.parameters["resume"] = started_before and not retrain
        live = sys.stdout.isatty()  # in a log, only the finished line (kernels write to stderr meanwhile)
        if live:
            print(prefix, end="", flush=True)
        try:
            execute(notebooks_dir / f"{step.notebook}.ipynb", step, kernel_name=kernel_name)
        except PipelineError as e:
            print(f"{'' if live else prefix} FAILED after {format_seconds(step.seconds)}", flush=True)
            _record(batch_dir, steps)
            summary = write_summary(batch_dir.path, [d.path for d in run_dirs], _timings(steps), batch=batch,
                                    total_seconds=time.monotonic() - started, failure=str(e))
            print(f"what the batch made so far: {summary}", flush=True)
            raise
        finally:
            _record(batch_dir, steps)
        print(f"{chr(13) + prefix if live else prefix} done in {format_seconds(step.seconds)}", flush=True)

    summary = write_summary(batch_dir.path, [d.path for d in run_dirs], _timings(steps), batch=batch,
                            total_seconds=time.monotonic() - started)
    print(f"batch {name!r} finished in {format_seconds(time.monotonic() - started)}; "
          f"summary: {summary} (and summary.md)", flush=True)
    return summary


def batch_parameters(preset: str, run_classes: list[str], data_root: str | None, name: str,
                     out_root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every value the batch offers its notebooks; each notebook takes those it declares."""
    runs = [f"{name}-{cls}" for cls in run_classes]
    classes = ["AD", "NC"] if run_classes == ["both"] else list(run_classes)
    image_size = make_preset(preset).image_size
    return dict(preset=preset, data_root=data_root, out_root=str(out_root), name=name, batch_name=name,
                classes=classes, conditional=run_classes == ["both"], runs=runs, run_names=runs,
                image_size=image_size, **(extra or {}))


def plan_steps(notebooks_dir: Path, executed_dir: Path, offered: dict[str, Any],
               run_classes: list[str], runs: list[str]) -> list[Step]:
    """The batch's notebook executions in order, each with the parameters its
    notebook declares (read with papermill.inspect_notebook)."""
    steps = []
    for stem in NOTEBOOKS:
        source = notebooks_dir / f"{stem}.ipynb"
        if not source.is_file():
            raise PipelineError(f"notebook {source} is missing; the batch needs {', '.join(NOTEBOOKS)}")
        declared = declared_parameters(source)
        if stem == "01_data":  # its figures go to the batch folder: outputs/<name>/plots/
            values = _pick({**offered, "run_name": offered["name"]}, declared)
            steps.append(Step(stem, stem, executed_dir / f"{stem}.ipynb", values))
            continue
        if stem != "02_train_progressive":
            steps.append(Step(stem, stem, executed_dir / f"{stem}.ipynb", _pick(offered, declared)))
            continue
        run_key = next((k for k in RUN_NAME_PARAMETERS if k in declared), None)
        if "class_name" not in declared or run_key is None:
            raise PipelineError(f"{source} must declare class_name and run_name in its parameters cell "
                                f"(declares: {', '.join(sorted(declared)) or 'nothing'})")
        for cls, run in zip(run_classes, runs, strict=True):
            values = _pick({**offered, "class_name": cls, run_key: run}, declared)
            steps.append(Step(stem, f"{stem} {cls}", executed_dir / f"{stem}-{cls}.ipynb", values, run=run))
    return steps


def execute(source: Path, step: Step, *, kernel_name: str = KERNEL_NAME) -> None:
    """Run one notebook with papermill in the workbook folder; on failure raise
    PipelineError naming the cell, with the executed notebook kept at step.output."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    step.output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        papermill.execute_notebook(str(source), str(step.output), parameters=step.parameters,
                                   kernel_name=kernel_name, cwd=str(project_root()),
                                   progress_bar=False, log_output=False)
    except PapermillExecutionError as e:
        step.status, step.seconds = "failed", time.monotonic() - start
        first_line = next((line for line in e.source.splitlines() if line.strip()), "")
        raise PipelineError(
            f"{step.label} failed in cell {e.cell_index} (In [{e.exec_count}]: {first_line.strip()!r}) "
            f"with {e.ename}: {e.evalue}; the executed notebook with the traceback is {step.output}") from e
    except Exception as e:  # kernel died, kernel missing, unreadable notebook ...
        step.status, step.seconds = "failed", time.monotonic() - start
        raise PipelineError(f"{step.label} could not run ({type(e).__name__}: {e}); "
                            f"partial executed notebook: {step.output}") from e
    step.status, step.seconds = "done", time.monotonic() - start


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import papermill
    return set(papermill.inspect_notebook(str(notebook)))


def training_finished(run_dir: RunDir | Path) -> bool:
    """True when the checkpoint that the run's latest.json points to says the schedule finished."""
    from brainlib.training.checkpoints import CheckpointError, latest_checkpoint  # torch: not for `brainlib --help`
    try:
        latest = latest_checkpoint(run_dir)
        return latest is not None and bool(json.loads(checkpoint_meta(latest).read_text()).get("finished", False))
    except (OSError, json.JSONDecodeError, CheckpointError):
        return False


def _pick(offered: dict[str, Any], declared: set[str]) -> dict[str, Any]:
    return {k: v for k, v in offered.items() if k in declared}


def _checked_classes(classes: tuple[str, ...] | list[str]) -> list[str]:
    classes = list(classes)
    bad = [c for c in classes if c not in ("AD", "NC")]
    if not classes or bad or len(set(classes)) != len(classes):
        raise ConfigError(f"classes {classes} must be AD and/or NC, each once (or use conditional=True)")
    return classes


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} is not a folder")
    return path


def _timings(steps: list[Step]) -> list[dict[str, Any]]:
    return [dict(notebook=s.notebook, label=s.label, status=s.status, seconds=s.seconds,
                 executed=str(s.output)) for s in steps]


def _record(batch_dir: BatchDir, steps: list[Step]) -> None:
    """timings.json in the batch folder: which notebooks ran, how long, how they ended."""
    atomic_write_json(batch_dir.timings, _timings(steps))
