"""The batch's notebook kernels: how papermill starts them, and how an interrupted batch stops them.

Each kernel talks to the batch over Unix sockets in a private temporary folder (jupyter's
`ipc` transport) rather than TCP ports on localhost: no other user of the machine can connect
to it, and ipykernel has no reason to warn "Kernel is running over TCP without encryption".
Windows has no such sockets; there the kernels keep jupyter's TCP default (and its warning).

A kernel runs in its own process session (jupyter_client starts it so), so a Ctrl-C in the
terminal reaches the batch and not its kernels; `stop_kernels()` ends them, which the batch
does when it is interrupted. Training writes its files atomically, so nothing is half-written.
jupyter_client and traitlets are imported lazily, as papermill is.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_RUNNING: dict[int, Any] = {}  # id -> kernel manager of every kernel started and not yet released
_LOCK = threading.Lock()


@contextmanager
def kernel_options(*, cwd: Path, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """papermill.execute_notebook keyword arguments for one notebook: its kernel starts in
    `cwd` with `env` added to this process's environment, over private Unix sockets."""
    from jupyter_client import AsyncKernelManager
    from traitlets.config import Config

    started: list[Any] = []

    class BatchKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw["cwd"] = str(cwd)  # not papermill's cwd=: that chdirs this whole process, not thread-safe
            kw["env"] = {**kw.get("env", os.environ), **(env or {})}
            await super().start_kernel(**kw)
            with _LOCK:
                _RUNNING[id(self)] = self
            started.append(self)

    with tempfile.TemporaryDirectory(prefix="brainlib-kernel-") as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}}) \
            if os.name == "posix" else Config()
        try:
            yield {"kernel_manager_class": BatchKernelManager, "config": config}
        finally:
            with _LOCK:
                for km in started:
                    _RUNNING.pop(id(km), None)


def stop_kernels() -> int:
    """Kill every kernel the batch started and has not finished with (the kernel's whole
    process group); returns how many. Safe from any thread."""
    with _LOCK:
        running = list(_RUNNING.values())
        _RUNNING.clear()
    stopped = 0
    for km in running:
        provisioner = getattr(km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None or process.poll() is not None:
            continue
        try:
            pgid = getattr(provisioner, "pgid", None)
            if pgid and hasattr(os, "killpg") and pgid != os.getpgrp():  # its own session, never ours
                os.killpg(pgid, signal.SIGKILL)
            else:
                process.kill()
            stopped += 1
        except ProcessLookupError:
            pass
    return stopped
