"""Progress of long loops: a tqdm bar where a person watches, plain lines in a log.

A bar redraws itself with carriage returns, which is what a terminal or JupyterLab wants
and what a log file or a pipe does not (`tail train.log` would show one endless line).
`progress_bar(...)` returns a tqdm bar when stderr is a terminal or the code runs in a
Jupyter kernel, and otherwise a `LineProgress` with the same interface (update,
set_postfix, close, context manager, iteration) that prints one plain line at a steady
interval: what it counts, how far, the rate, the latest values, and the time left.

`BRAINLIB_PROGRESS=bar|lines` overrides the choice; `BRAINLIB_PROGRESS_SECONDS` sets the
interval between lines (30 s by default).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

DEFAULT_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 disable: bool = False, unit: str = "it", images_per_update: int | None = None,
                 fraction_done: Callable[[], float] | None = None, job: str | None = None, **tqdm_kwargs: Any):
    """A tqdm bar or a LineProgress, whichever suits where the output goes.

    `images_per_update` turns counted batches into images for the plain line;
    `fraction_done()` gives how far the whole job is (0..1) when it is more than this
    bar, e.g. a resolution step spanning several epochs (named by `job`), for the time left."""
    if choose_mode() == "bar":
        return tqdm(iterable, total=total, desc=desc, disable=disable, unit=unit, **tqdm_kwargs)
    return LineProgress(iterable, total=total, desc=desc, disable=disable, unit=unit,
                        initial=tqdm_kwargs.get("initial", 0), images_per_update=images_per_update,
                        fraction_done=fraction_done, job=job)


def choose_mode(stream: TextIO | None = None) -> str:
    """"bar" in a terminal or a Jupyter kernel, "lines" anywhere else (a file, a pipe)."""
    forced = os.environ.get("BRAINLIB_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines"):
        return forced
    stream = stream or sys.stderr
    if in_jupyter_kernel():
        return "bar"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def in_jupyter_kernel() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and get() is not None and hasattr(get(), "kernel")


class _Clock:
    """One schedule for all plain-line bars of the process: a training step makes a new bar
    every epoch, and short epochs must not each print a line (nor none at all). It also keeps
    each job's latest values, so a new epoch's first line still shows the losses."""

    def __init__(self) -> None:
        self.last_line: float | None = None
        self.values: dict[str, str] = {}

    def due(self, interval: float) -> bool:
        now = time.monotonic()
        if self.last_line is None or now - self.last_line >= interval:
            self.last_line = now
            return True
        return False


CLOCK = _Clock()


class LineProgress:
    """tqdm's interface, printing `desc: done/total unit, rate, values, time left` lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 disable: bool = False, unit: str = "it", initial: int = 0, images_per_update: int | None = None,
                 fraction_done: Callable[[], float] | None = None, job: str | None = None,
                 interval: float | None = None,
                 stream: TextIO | None = None, clock: _Clock | None = None) -> None:
        self.iterable, self.desc, self.disable, self.unit = iterable, desc, disable, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = initial
        self.images_per_update = images_per_update
        self.fraction_done, self.job = fraction_done, job
        self.interval = float(os.environ.get("BRAINLIB_PROGRESS_SECONDS", DEFAULT_INTERVAL_S)) \
            if interval is None else interval
        self.stream = stream
        self.clock = clock or CLOCK
        self.postfix = ""
        self.started = time.monotonic()
        self.mark = (self.started, self.n, self._fraction())  # time, count and fraction at the last line

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.disable and self.clock.due(self.interval):
            print(self.line(), file=self.stream or sys.stderr, flush=True)

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = " ".join(f"{k} {v}" for k, v in {**(values or {}), **kwargs}.items())
        if self.job:
            self.clock.values[self.job] = self.postfix

    def close(self) -> None:
        pass  # nothing to erase: every line is final

    def line(self) -> str:
        """The current state in one line; resets the rate's reference point."""
        now, fraction = time.monotonic(), self._fraction()
        t0, n0, f0 = self.mark
        self.mark = (now, self.n, fraction)
        dt = max(now - t0, 1e-9)
        scale, unit = (self.images_per_update, "images") if self.images_per_update else (1, self.unit)
        done = f"{self.n * scale:,}" + (f"/{self.total * scale:,}" if self.total else "")
        parts = [f"{done} {unit}", f"{(self.n - n0) * scale / dt:.1f} {unit}/s"]
        postfix = self.postfix or (self.clock.values.get(self.job, "") if self.job else "")
        if postfix:
            parts.append(postfix)
        if fraction is not None:
            parts.append(f"{100 * fraction:.0f}% of the {self.job}" if self.job else f"{100 * fraction:.0f}%")
            if fraction > f0:
                parts.append(f"{format_duration((1 - fraction) * dt / (fraction - f0))} left")
        return f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)

    def _fraction(self) -> float | None:
        if self.fraction_done is not None:
            return min(1.0, max(0.0, float(self.fraction_done())))
        return self.n / self.total if self.total else None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
