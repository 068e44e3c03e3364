"""Where and how the training step runs: the device, the memory layout, the mixed precision."""
from __future__ import annotations

import torch

from brainlib.config import RunConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use device=auto or cpu")
    return device


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """The setting when given; by default NHWC on CUDA and on the CPU, where oneDNN's NHWC
    kernels win with AVX-512 (1.15x at demo 64 px on a Xeon) and with AVX2 alone (the `demo`'s
    schedule in 0.90-0.97x the time on an AMD EPYC, 1 or 2 threads: docs/experiments.md,
    2026-12-07 01:40); NCHW on other devices, where it was never measured."""
    if setting is not None:
        return setting
    return device.type in ("cuda", "cpu")


def cpu_has_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16, AMX), where oneDNN runs bf16 natively.
    Without them bf16 is emulated and 5-9x slower than float32 (docs/performance.md)."""
    flags = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of the training step, or None for float32. CUDA (`amp`): bf16
    where supported, else fp16 with loss scaling. CPU (`cpu_bf16`): bf16, or None."""
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cfg.amp else None
    wanted = cpu_has_bf16() if cfg.cpu_bf16 is None else cfg.cpu_bf16
    return torch.bfloat16 if wanted and device.type == "cpu" else None


def precision(cfg: RunConfig, device: torch.device) -> str:
    """The training step's compute precision by name: "float32", "bfloat16" or "float16"."""
    return str(autocast_dtype(cfg, device) or torch.float32).removeprefix("torch.")
