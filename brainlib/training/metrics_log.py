"""A run's metrics.jsonl: one row per logged batch (kind "batch"), per texture probe (kind
"texture", training/texture_probe.py) and per resume, buffered as device tensors so a CUDA run
pays one host sync per flush rather than one per batch."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from brainlib.atomic import atomic_write_text
from brainlib.rundir import RunDir

REPLAYED = ("batch", "texture")  # the kinds of rows a resumed run writes again


class MetricsLog:
    def __init__(self, run_dir: Path, *, flush_every: int):
        self.path = RunDir(run_dir).metrics
        self.flush_every = flush_every
        self.pending: list[dict] = []  # rows whose values may still be device tensors

    def add(self, row: dict) -> None:
        self.pending.append(row)

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.flush_every

    def take(self) -> list[dict]:
        """The buffered rows with every tensor turned into a float (one host sync); empties the buffer."""
        rows, self.pending = self.pending, []
        values = [v for r in rows for v in r.values() if torch.is_tensor(v)]
        floats = iter(torch.stack([v.float() for v in values]).tolist() if values else [])
        return [{k: (next(floats) if torch.is_tensor(v) else v) for k, v in r.items()} for r in rows]

    def write(self, rows: list[dict]) -> None:
        with open(self.path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of <run>/metrics.jsonl (a torn last line from a crash is ignored)."""
    path = RunDir(run_dir).metrics
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_metrics(run_dir: Path, batches: int) -> None:
    """On resume, drop the batches and probes logged after the checkpoint: they will be trained again."""
    rows = [r for r in read_metrics(run_dir) if r.get("kind") not in REPLAYED or r.get("batch", 0) <= batches]
    atomic_write_text(RunDir(run_dir).metrics, "".join(json.dumps(r) + "\n" for r in rows))
