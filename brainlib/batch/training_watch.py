"""How the batch's training notebooks are doing, read from each run's own metrics.jsonl
while papermill runs them.

In a terminal each training gets a tqdm bar; in a log (a file, a pipe) each gets one plain
line at a steady interval (BRAINLIB_PROGRESS_SECONDS, 30 s by default), with what
`brainlib train` prints: the step, its resolution, the images trained, images per second and
the time left. The time left needs the schedule in images (`images_per_res`, as the presets
have); budgets in epochs or seconds show the rest without it.

The rows are the trainer's (brainlib.training.metrics_log): JSON objects appended one per
line, the file replaced as a whole when a resume drops rows. A metrics.jsonl that exists
before the notebook starts belongs to an earlier run (the training moves it aside or replaces
it) and is not read.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from brainlib.config import RunConfig
from brainlib.progress import DEFAULT_INTERVAL_S, choose_mode, format_duration
from brainlib.rundir import RunDir


class MetricsTail:
    """The rows appended to a metrics.jsonl since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stale = _identity(path)  # an earlier run's file, never read
        self.identity: tuple[int, int] | None = None
        self.offset = 0
        self.partial = b""  # a line still being written

    def new_rows(self) -> list[dict]:
        try:
            f = open(self.path, "rb")
        except OSError:
            return []
        with f:
            stat = os.fstat(f.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if identity == self.stale:
                return []
            if identity != self.identity or stat.st_size < self.offset:  # a new or rewritten file
                self.identity, self.offset, self.partial = identity, 0, b""
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def scheduled_images(run_dir: Path) -> tuple[int | None, int | None]:
    """(images the whole schedule trains, number of steps) from the run's config.json; the
    images are None unless every budget is an image count."""
    from brainlib.training.schedule import step_budget  # torch: not for `brainlib --help`
    try:
        cfg = RunConfig.load(RunDir(run_dir).config)
    except (OSError, ValueError, TypeError):
        return None, None
    if cfg.seconds_per_res or not cfg.images_per_res:
        return None, len(cfg.resolutions)
    return sum(int(step_budget(cfg, res, 0)[1]) for res in cfg.resolutions), len(cfg.resolutions)


@dataclass
class _Watch:
    label: str
    run_dir: Path
    tail: MetricsTail
    row: dict | None = None  # the latest batch row
    total: int | None = None
    steps: int | None = None
    mark: tuple[float, int] | None = None  # (time, images) where the rate is measured from
    bar: Any = None

    def poll(self) -> None:
        rows = [r for r in self.tail.new_rows() if r.get("kind") == "batch"]
        if not rows:
            return
        if self.row is None:
            self.total, self.steps = scheduled_images(self.run_dir)  # written before the first row
        self.row = rows[-1]
        if self.mark is None:
            self.mark = (time.monotonic(), self.images)

    @property
    def images(self) -> int:
        return int(self.row.get("images_seen", 0)) if self.row else 0

    def where(self) -> str:
        step = f"step {self.row.get('step', '?')}" + (f"/{self.steps}" if self.steps else "")
        return f"{step} {self.row.get('res', '?')}px"

    def line(self) -> str:
        """The plain line; measures the rate since the previous line."""
        if self.row is None:
            return f"{self.label}: preparing, no batch trained yet"
        now, images = time.monotonic(), self.images
        t0, n0 = self.mark
        self.mark = (now, images)
        if self.total and images >= self.total and images == n0:
            return f"{self.label}: trained {images:,} images; the notebook is drawing its figures"
        done = f"{images:,}" + (f"/{self.total:,}" if self.total else "")
        parts = [self.where(), f"{done} images"]
        rate = (images - n0) / (now - t0) if now > t0 and images > n0 else None
        if rate is not None:
            parts.append(f"{rate:.1f} img/s")
        if self.total:
            parts.append(f"{min(100.0, 100 * images / self.total):.0f}%")
            if rate is not None:
                parts.append(f"{format_duration(max(0, self.total - images) / rate)} left")
        return f"{self.label}: " + ", ".join(parts)


class TrainingProgress:
    """Progress of the training notebooks that run now, as bars or lines (a context manager).

    `runs` are (label, run folder) pairs; call poll() every `tick_seconds` while they run,
    finished(label) when one ends, and say() for any other line (it keeps the bars intact)."""

    def __init__(self, runs: list[tuple[str, Path]], *, interval: float | None = None,
                 mode: str | None = None) -> None:
        self.mode = mode or choose_mode(sys.stdout)
        self.interval = float(os.environ.get("BRAINLIB_PROGRESS_SECONDS", DEFAULT_INTERVAL_S)) \
            if interval is None else float(interval)
        self.watches = {label: _Watch(label, Path(run_dir), MetricsTail(RunDir(run_dir).metrics))
                        for label, run_dir in runs}
        self.last_line = time.monotonic()

    @property
    def tick_seconds(self) -> float:
        return min(1.0, self.interval) if self.watches else 1.0

    def __enter__(self) -> TrainingProgress:
        if self.mode == "bar":
            for i, w in enumerate(self.watches.values()):
                w.bar = tqdm(total=None, desc=w.label, unit="img", position=i, leave=False, dynamic_ncols=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        for label in list(self.watches):
            self.finished(label)

    def poll(self) -> None:
        for w in self.watches.values():
            started = w.row is not None
            w.poll()
            if w.bar is not None and w.row is not None:
                if not started:  # the first row: the bar starts where the run stands (a resume)
                    w.bar.reset(total=w.total)
                    w.bar.initial = w.bar.n = w.images
                w.bar.set_postfix_str(w.where(), refresh=False)
                w.bar.update(w.images - w.bar.n)
        if self.mode == "lines" and self.watches and time.monotonic() - self.last_line >= self.interval:
            self.last_line = time.monotonic()
            for w in self.watches.values():
                self.say("  " + w.line())

    def finished(self, label: str) -> None:
        w = self.watches.pop(label, None)
        if w is not None and w.bar is not None:
            w.bar.close()

    def say(self, text: str) -> None:
        if any(w.bar is not None for w in self.watches.values()):
            tqdm.write(text, file=sys.stdout)
        else:
            print(text, flush=True)
