"""Run the numbered notebooks end to end with papermill: the `brainlib run` batch.

A batch named `demo` trains `outputs/demo-AD` and `outputs/demo-NC` (or one
conditional `outputs/demo-both`) and keeps its executed notebooks and summary page
in `outputs/demo/`:

    01_data -> 02_train_progressive (once per class, side by side) -> 03_samples -> 04_umap -> summary

A batch of several presets (`preset=["demo", "diffusion-demo"]`, folder `demo+diffusion-demo`)
trains `demo-AD`, `demo-NC`, `diffusion-demo-AD`, `diffusion-demo-NC` in that order, two at a
time, then runs 03 and 04 once per preset; the one summary page puts the presets side by side.

Every notebook declares its parameters in its `parameters` cell; the batch offers
each notebook the values below and passes only those the notebook declares, so a
notebook runs the same way under `brainlib run`, under plain `papermill -p ...` and
in JupyterLab. Paths are made absolute first: notebooks `os.chdir` to the
workbook folder, while the CLI resolves paths against the caller's folder.
papermill is imported lazily: training must not need the notebook stack.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainlib.atomic import atomic_write_json
from brainlib.batch.kernels import kernel_options, stop_kernels
from brainlib.batch.report_page import format_seconds
from brainlib.batch.summary import write_summary
from brainlib.batch.training_watch import TrainingProgress
from brainlib.config import PRESETS, ConfigError, project_root
from brainlib.config import preset as make_preset  # `preset` is a parameter name here
from brainlib.rundir import DEFAULT_OUT_ROOT, BatchDir, RunDir, checkpoint_meta

NOTEBOOKS = ("01_data", "02_train_progressive", "03_samples", "04_umap")
KERNEL_NAME = "python3"  # installed into the venv by the Makefile (ipykernel install --sys-prefix)
RUN_NAME_PARAMETERS = ("run_name", "run")  # what 02 may call the training run's name
MAX_TRAININGS_AT_ONCE = 2  # kernels training side by side; more would only split the same cores finer


class PipelineError(RuntimeError):
    """A notebook of the batch failed; the message names it, the cell, and where the
    executed notebook (with its traceback) was kept."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the batch; the message says which notebooks it cut short."""


@dataclass
class Step:
    """One notebook execution of the batch, and how it went."""
    notebook: str                  # stem, e.g. "02_train_progressive"
    label: str                     # what the progress line shows, e.g. "02_train_progressive AD"
    output: Path                   # the executed notebook
    parameters: dict[str, Any] = field(default_factory=dict)
    run: str | None = None         # the training run this step makes, for 02
    status: str = "pending"        # pending | running | done | skipped | failed | interrupted
    seconds: float | None = None
    started: float | None = None   # time.monotonic() when it started


def run_batch(preset: str | Sequence[str] = "demo", classes: tuple[str, ...] | list[str] = ("AD", "NC"),
              conditional: bool = False, data_root: str | Path | None = None,
              name: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT, retrain: bool = False,
              *, notebooks_dir: str | Path | None = None, parameters: dict[str, Any] | None = None,
              kernel_name: str = KERNEL_NAME, parallel: bool | None = None,
              progress_seconds: float | None = None) -> Path:
    """Execute 01..04 for one batch of one preset or several and write its summary page;
    return summary.html.

    Finished training runs (checkpoints/latest.json says "finished") are skipped unless
    `retrain`; 03 and 04 always run, once per preset. The trainings run in the order of
    `preset`, each preset's classes in the order given, two side by side (each kernel with
    its share of the cores) when the machine has two or more (`parallel` forces either way);
    the others run one after another. Run names: batch_runs. `parameters` adds extra values
    offered to every notebook (e.g. a smaller sample count for tests). `progress_seconds` is
    the interval of the training progress lines in a log. A failing notebook raises
    PipelineError after papermill has saved the executed notebook with its error (a training
    running beside it finishes first); Ctrl-C stops the kernels, records the running
    notebooks as "interrupted" and raises BatchInterrupted.
    """
    presets = _checked_presets(preset)
    run_classes = ["both"] if conditional else _checked_classes(classes)
    runs = batch_runs(presets, run_classes, name)
    name_given, name = name is not None, name or "+".join(presets)
    out_root = Path(out_root).expanduser().resolve()
    data_root = None if data_root is None else str(_existing_dir(data_root, "data root"))
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    batch_dir = BatchDir.named(name, out_root)
    run_dirs = [RunDir.named(run, out_root) for p in presets for run in runs[p]]
    offered = [batch_parameters(p, run_classes, runs[p], data_root, name, out_root, parameters) for p in presets]

    steps = plan_steps(notebooks_dir, batch_dir.notebooks, offered, run_classes)
    batch = dict(preset=presets[0], presets=presets, runs=runs, classes=list(run_classes), conditional=conditional,
                 data_root=data_root, name=name, name_given=name_given, out_root=str(out_root))
    print(f"batch {name!r}: {len(steps)} notebooks, outputs in {batch_dir}", flush=True)
    started = time.monotonic()
    try:
        for group in _groups(steps):
            todo = [s for s in group if not _skipped(s, steps, out_root, retrain, notebooks_dir)]
            _record(batch_dir, steps)
            together = len(todo) > 1 and (usable_cores() >= 2 if parallel is None else parallel)
            size = MAX_TRAININGS_AT_ONCE if together else 1
            for wave in [todo[i:i + size] for i in range(0, len(todo), size)]:
                failures = _run_together(wave, steps, batch_dir, notebooks_dir, out_root, kernel_name,
                                         progress_seconds,
                                         threads=usable_cores() // len(wave) if len(wave) > 1 else None)
                if failures:
                    summary = write_summary(batch_dir.path, [d.path for d in run_dirs], _timings(steps), batch=batch,
                                            total_seconds=time.monotonic() - started,
                                            failure="; ".join(map(str, failures)))
                    print(f"what the batch made so far: {summary}", flush=True)
                    raise failures[0] if len(failures) == 1 else PipelineError("; ".join(map(str, failures)))
    except KeyboardInterrupt:
        raise _interrupted(batch_dir, steps) from None

    summary = write_summary(batch_dir.path, [d.path for d in run_dirs], _timings(steps), batch=batch,
                            total_seconds=time.monotonic() - started)
    print(f"batch {name!r} finished in {format_seconds(time.monotonic() - started)}; "
          f"summary: {summary} (and summary.md)", flush=True)
    return summary


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _groups(steps: list[Step]) -> list[list[Step]]:
    """Consecutive trainings (02's, one per preset and class) together; every other step alone."""
    groups: list[list[Step]] = []
    for step in steps:
        if step.run and groups and groups[-1][0].run:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _prefix(steps: list[Step], step: Step) -> str:
    return f"[{steps.index(step) + 1}/{len(steps)}] {step.label} ..."


def _skipped(step: Step, steps: list[Step], out_root: Path, retrain: bool, notebooks_dir: Path) -> bool:
    """Whether a training step is skipped (its run finished); sets `resume` for one that runs."""
    if not step.run:
        return False
    run_dir = RunDir.named(step.run, out_root)
    if not retrain and training_finished(run_dir):
        step.status = "skipped"
        print(f"{_prefix(steps, step)} skipped: {run_dir} already finished (retrain=True to redo)",
              flush=True)
        return True
    if "resume" in declared_parameters(notebooks_dir / f"{step.notebook}.ipynb"):
        # an interrupted run continues from its checkpoint; retrain starts it afresh
        started_before = run_dir.latest.is_file()
        step.parameters["resume"] = started_before and not retrain
    return False


def _run_together(wave: list[Step], steps: list[Step], batch_dir: BatchDir, notebooks_dir: Path, out_root: Path,
                  kernel_name: str, progress_seconds: float | None, *, threads: int | None) -> list[PipelineError]:
    """Run the notebooks of `wave` at once, one kernel each (with `threads` OpenMP threads
    unless the user set OMP_NUM_THREADS), showing the trainings' progress; returns the
    failures once every notebook has ended."""
    env = {"OMP_NUM_THREADS": str(max(1, threads))} if threads and "OMP_NUM_THREADS" not in os.environ else {}
    ended: queue.Queue[Step] = queue.Queue()
    failures: dict[str, PipelineError] = {}

    def work(step: Step) -> None:
        try:
            execute(notebooks_dir / f"{step.notebook}.ipynb", step, kernel_name=kernel_name, env=env)
        except PipelineError as e:
            failures[step.label] = e
        finally:
            ended.put(step)

    watched = [(s.label, RunDir.named(s.run, out_root)) for s in wave if s.run]
    with TrainingProgress(watched, interval=progress_seconds) as progress:
        live = progress.mode == "bar" and not watched  # no bar: the step's line is finished in place
        if live:
            print(_prefix(steps, wave[0]), end="", flush=True)
        reported: set[str] = set()
        try:
            for step in wave:
                step.status, step.started = "running", time.monotonic()
                threading.Thread(target=work, args=(step,), name=step.label, daemon=True).start()
            _record(batch_dir, steps)
            for _ in wave:
                while True:
                    try:
                        step = ended.get(timeout=progress.tick_seconds)
                        break
                    except queue.Empty:
                        progress.poll()
                _record(batch_dir, steps)
                reported.add(step.label)
                progress.finished(step.label)
                outcome = f"FAILED after {format_seconds(step.seconds)}" if step.label in failures \
                    else f"done in {format_seconds(step.seconds)}"
                progress.say(f"{chr(13) if live else ''}{_prefix(steps, step)} {outcome}")
        except KeyboardInterrupt:
            with _sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
                if live:
                    print(flush=True)
                _stop([s for s in wave if s.status == "running" and s.label not in reported], ended)
            raise
    return [failures[s.label] for s in wave if s.label in failures]


def _stop(cut_short: list[Step], ended: queue.Queue, wait_s: float = 10.0) -> None:
    """Ctrl-C: kill the kernels, give papermill a moment to write their notebooks whole, and
    mark the steps interrupted."""
    papermill_log = logging.getLogger("papermill")  # nbclient's "Kernel died ..." for each kernel killed here
    level = papermill_log.level
    papermill_log.setLevel(logging.CRITICAL)
    try:
        stop_kernels()
        deadline = time.monotonic() + wait_s
        for _ in cut_short:
            try:
                ended.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
    finally:
        papermill_log.setLevel(level)
    for step in cut_short:
        step.status, step.seconds = "interrupted", time.monotonic() - step.started


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _interrupted(batch_dir: BatchDir, steps: list[Step]) -> BatchInterrupted:
    """After Ctrl-C: timings.json with the interrupted notebooks, and the one line to show."""
    with _sigint_ignored():
        if batch_dir.path.is_dir():
            _record(batch_dir, steps)
    during = ", ".join(s.label for s in steps if s.status == "interrupted") or "between notebooks"
    return BatchInterrupted(f"interrupted during {during} (see {batch_dir.timings}); the same "
                            "command goes on: finished trainings are skipped, unfinished ones resume from their "
                            "last checkpoint")


def batch_runs(presets: list[str], run_classes: list[str], name: str | None = None) -> dict[str, list[str]]:
    """Each preset's training runs, one per run class: `<name>-<class>` for one preset (the
    name defaults to the preset); for several, `<preset>-<class>`, or `<name>-<preset>-<class>`
    when the batch is named."""
    if len(presets) == 1:
        prefixes = [name or presets[0]]
    else:
        prefixes = [f"{name}-{p}" if name else p for p in presets]
    return {p: [f"{prefix}-{cls}" for cls in run_classes] for p, prefix in zip(presets, prefixes, strict=True)}


def batch_parameters(preset: str, run_classes: list[str], runs: list[str], data_root: str | None, name: str,
                     out_root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every value the batch offers the notebooks of one preset; each notebook takes those it declares."""
    classes = ["AD", "NC"] if run_classes == ["both"] else list(run_classes)
    image_size = make_preset(preset).image_size
    return dict(preset=preset, data_root=data_root, out_root=str(out_root), name=name, batch_name=name,
                classes=classes, conditional=run_classes == ["both"], runs=list(runs), run_names=list(runs),
                image_size=image_size, **(extra or {}))


def plan_steps(notebooks_dir: Path, executed_dir: Path, offered: list[dict[str, Any]],
               run_classes: list[str]) -> list[Step]:
    """The batch's notebook executions in order, each with the parameters its notebook
    declares (read with papermill.inspect_notebook). `offered` holds batch_parameters per
    preset: 01 runs once (at the largest image size), 02 per preset and class, 03 and 04 per
    preset; with several presets, labels and executed notebooks carry the preset's name."""
    several = len(offered) > 1
    steps = []
    for stem in NOTEBOOKS:
        source = notebooks_dir / f"{stem}.ipynb"
        if not source.is_file():
            raise PipelineError(f"notebook {source} is missing; the batch needs {', '.join(NOTEBOOKS)}")
        declared = declared_parameters(source)
        if stem == "01_data":  # its figures go to the batch folder: outputs/<name>/plots/
            values = _pick({**offered[0], "run_name": offered[0]["name"],
                            "image_size": max(o["image_size"] for o in offered)}, declared)
            steps.append(_step(stem, executed_dir, values))
            continue
        run_key = next((k for k in RUN_NAME_PARAMETERS if k in declared), None)
        if stem == "02_train_progressive" and ("class_name" not in declared or run_key is None):
            raise PipelineError(f"{source} must declare class_name and run_name in its parameters cell "
                                f"(declares: {', '.join(sorted(declared)) or 'nothing'})")
        for values in offered:
            preset = values["preset"] if several else None
            if stem != "02_train_progressive":
                steps.append(_step(stem, executed_dir, _pick(values, declared), preset))
                continue
            for cls, run in zip(run_classes, values["runs"], strict=True):
                steps.append(_step(stem, executed_dir, _pick({**values, "class_name": cls, run_key: run}, declared),
                                   preset, cls, run=run))
    return steps


def _step(stem: str, executed_dir: Path, values: dict[str, Any], *tags: str | None, run: str | None = None) -> Step:
    """A step labelled `<stem> <tag> ...`, its executed notebook `<stem>-<tag>-....ipynb` (None tags left out)."""
    parts = [stem, *(t for t in tags if t)]
    return Step(stem, " ".join(parts), executed_dir / f"{'-'.join(parts)}.ipynb", values, run=run)


def execute(source: Path, step: Step, *, kernel_name: str = KERNEL_NAME, env: dict[str, str] | None = None) -> None:
    """Run one notebook with papermill in the workbook folder (its kernel with `env` added
    to ours); on failure raise PipelineError naming the cell, with the executed notebook
    kept at step.output."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    step.output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        with kernel_options(cwd=project_root(), env=env) as options:
            papermill.execute_notebook(str(source), str(step.output), parameters=step.parameters,
                                       kernel_name=kernel_name, progress_bar=False, log_output=False, **options)
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


def _checked_presets(presets: str | Sequence[str]) -> list[str]:
    presets = [presets] if isinstance(presets, str) else list(presets)
    for p in presets:
        if p not in PRESETS:
            raise ConfigError(f"unknown preset {p!r}; choose one of {', '.join(PRESETS)}")
    if not presets or len(set(presets)) != len(presets):
        raise ConfigError(f"presets {presets} must name at least one preset, each once")
    return presets


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
