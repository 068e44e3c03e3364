"""Stopping a run whose losses or weights became NaN/Inf, naming the batch and the checkpoint kept."""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN/Inf; the message names the batch and the checkpoint kept."""


def first_non_finite(rows: list[dict]) -> dict | None:
    """The first logged row holding a NaN or Inf value, or None."""
    return next((r for r in rows if any(isinstance(v, float) and not math.isfinite(v) for v in r.values())), None)


def weights_finite(modules: Iterable[nn.Module]) -> bool:
    norms = [torch.linalg.vector_norm(p.detach().float()) for m in modules for p in m.parameters()]
    return bool(torch.isfinite(torch.stack(norms)).all())


def diverged(row: dict, latest_checkpoint: Path | None) -> TrainingDiverged:
    """The error for a run that diverged at `row` (a metrics row, or {"batch", "what"})."""
    what = row.get("what") or ", ".join(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
    kept = (f"the last good checkpoint {latest_checkpoint} is kept" if latest_checkpoint
            else "no checkpoint had been written yet")
    return TrainingDiverged(
        f"training diverged at batch {row['batch']} (resolution step {row.get('step')}, "
        f"{row.get('res', '?')} px): non-finite {what}; {kept}. Resume with a lower learning rate, "
        f"e.g. `brainlib train --resume --set lr=...` or train(cfg.replace(lr=...), resume=True)")
