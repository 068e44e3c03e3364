"""Smoke runs shared by the notebook tests (pipeline, nbval, browser), built at most
once per pytest session in a temporary folder that is removed at exit.

The dataset and parameters come from tools/refresh_notebook_outputs.py, so the tests
re-create exactly the conditions under which the committed outputs were recorded."""
from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import refresh_notebook_outputs as refresh  # noqa: E402 (a script in tools/, on sys.path just above)


@cache
def session_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="brainlib_smoke_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@cache
def tiny_data() -> Path:
    """The tiny phantom the refresh uses (AD_NC root)."""
    return refresh.build_smoke_data(session_dir() / "data")


@cache
def trained_runs() -> Path:
    """An out_root with smoke-AD and smoke-NC trained directly (no notebooks needed)."""
    from brainlib.config import preset
    from brainlib.training.trainer import train
    out_root = session_dir() / "runs"
    for c in ("AD", "NC"):
        train(preset("smoke", class_name=c, run=f"{refresh.SMOKE_NAME}-{c}", out_root=str(out_root),
                     data_root=str(tiny_data())))
    return out_root


DIFFUSION_RUN = f"{refresh.SMOKE_NAME}-diffusion-both"


@cache
def trained_diffusion_run() -> Path:
    """An out_root with DIFFUSION_RUN: a conditional diffusion-smoke run (seconds), trained directly."""
    from brainlib.config import preset
    from brainlib.training.trainer import train
    out_root = session_dir() / "diffusion_runs"
    train(preset("diffusion-smoke", class_name="both", run=DIFFUSION_RUN, out_root=str(out_root),
                 data_root=str(tiny_data())))
    return out_root


SMOKE_PROGRESS_SECONDS = 0.2  # the batch's progress lines, 30 s apart in a real log


@cache
def smoke_batch() -> Path:
    """The out_root of a full smoke batch of the workbook's notebooks (batch folder `smoke`),
    AD and NC trained side by side, what it printed kept in `<out_root>/batch.log` as a log
    file would (progress lines every SMOKE_PROGRESS_SECONDS)."""
    out_root = session_dir() / "batch"
    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / "batch.log", "w") as log, contextlib.redirect_stdout(log):
        refresh.run_smoke_batch(out_root, tiny_data(), parallel=True, progress_seconds=SMOKE_PROGRESS_SECONDS)
    return out_root
