"""Data-parallel training under torchrun: process group set-up and the few collectives the
trainer needs. Without torchrun (no WORLD_SIZE in the environment) everything here is a
no-op for a single process."""
from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (gloo on the CPU, nccl on CUDA); False when
    this is a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or tdist.is_initialized():
        return tdist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend=backend)
    return True


def device_for_rank(device: torch.device) -> torch.device:
    """Each process takes the GPU of its local rank; the CPU is shared."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on at least one (a host sync: use sparingly)."""
    if world_size() == 1:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def ranks_agree(tensors: list[torch.Tensor]) -> bool:
    """Whether every rank holds the same values (compared by per-tensor sums): DDP's
    gradient averaging should keep the replicas identical."""
    if world_size() == 1:
        return True
    sums = torch.stack([t.detach().double().sum() for t in tensors])
    high, low = sums.clone(), sums.clone()
    tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
    tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
    return bool(torch.equal(high, low))


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
