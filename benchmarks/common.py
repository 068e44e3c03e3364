"""What every benchmark shares: where results go, the machine description, device-aware
timing (CUDA synchronised), peak memory, interleaved baseline/ours rounds, tables and JSON.

Benchmarks print a table and write JSON under outputs/bench/; they are not tests and
assert nothing about time. Import as `from benchmarks.common import ...` (run the scripts
from the workbook folder, or as `python benchmarks/<name>.py`).
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from brainlib.atomic import atomic_write_json


def bench_dir() -> Path:
    """outputs/bench/ of the workbook, or $BRAINLIB_BENCH_DIR (the tests point it at a temporary folder)."""
    return Path(os.environ.get("BRAINLIB_BENCH_DIR") or ROOT / "outputs" / "bench")


def machine() -> dict:
    """CPU model, core count, torch version and threads, CUDA device: printed beside every result."""
    info = {"time": datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
                     None)
        info["cpu"] = model or info["cpu"]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a timer measures work done rather than work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of fn, synchronised on CUDA before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_gpu_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def interleaved(contenders: dict[str, Callable[[], object]], *, rounds: int, warmup: int,
                device: torch.device, calls_per_round: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each contender, measured in alternating rounds (A, B, A, B...) after
    `warmup` untimed calls each, so that load from other processes falls on all alike.
    Returns every round's mean seconds per call, per contender."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            seconds = time_call(lambda fn=contenders[name]: [fn() for _ in range(calls_per_round)], device)
            times[name].append(seconds / calls_per_round)
    return times


def summary(seconds: list[float]) -> dict:
    """Median (what we report: robust to a neighbour's burst), min and spread of per-call seconds."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "rounds": len(seconds)}


def format_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    """A plain-text table of the given keys (floats to 3 significant figures)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return "" if v is None else str(v)
    headers = headers or columns
    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])


def write_result(name: str, result: dict, out: str | Path | None = None) -> Path:
    """outputs/bench/<name>.json (or `out`), written atomically, with the machine description.
    --quick results go to outputs/bench/quick/, so a test run never overwrites a full run's."""
    path = Path(out) if out else bench_dir() / ("quick" if result.get("quick") else "") / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, "machine": machine(), **result})
    return path


def set_threads(threads: int | None) -> int:
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def dataset_root(data: str | Path | None, dataset: str = "phantom") -> Path:
    """The image folder the data and training benchmarks read: `data`, or the development set
    named `dataset` (brainlib.data.devsets; built on first use). All have <root>/train/{AD,NC}/*.png."""
    if data is not None:
        return Path(data)
    from brainlib.data.devsets import development_set
    return development_set(dataset)


def cached_images(root: Path, image_size: int, limit: int | None = None, cache_dir: str | Path | None = None):
    """brainlib's cached uint8 [N, S, S] array of <root>'s train split (decoded once, then memory-mapped)."""
    from brainlib.data.dataset import load_dataset
    if cache_dir is None and os.environ.get("BRAINLIB_BENCH_DIR"):
        cache_dir = bench_dir() / "cache"  # keep a test's tiny datasets out of the workbook's cache
    per_class = None if limit is None else max(1, limit // 2)
    return load_dataset(root, splits=["train"], image_size=image_size, max_per_class=per_class,
                        cache_dir=cache_dir, progress=False)
