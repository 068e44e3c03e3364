"""One writer per folder: an OS file lock that dies with its process.

`folder_lock(folder)` holds `<parent>/.<name>.lock` with `fcntl.flock` for as long as a
command writes the folder (a training run, an export, a folder of generated images). The
lock sits beside the folder rather than in it, so it guards the name even before the
folder exists and while a fresh training moves an old run aside. A second writer is
refused at once with FolderBusyError naming the holder (its PID and command line, kept in
the lock file); readers take no lock. The kernel drops the lock when its process ends, by
SIGKILL too, so a crash never leaves a folder locked. The file is removed on release;
after SIGKILL it stays behind, unlocked, and the next holder reuses it (`previous` tells
it what the dead holder was doing). Without fcntl (Windows) nothing is locked.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no locks; atomic renames still keep every file whole
    fcntl = None

WRITER = "brainlib"  # marks a lock file as ours: nothing else's lock files are ever touched


class FolderBusyError(RuntimeError):
    """Another live process is writing the folder; nothing was changed."""


def lock_path(folder: str | Path) -> Path:
    """The lock file of `folder`: `.<name>.lock` beside it (symlinks resolved, so every
    spelling of a folder shares one lock)."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def read_record(path: str | Path) -> dict | None:
    """What a brainlib lock file says about its holder (pid, command, since), None if it
    is missing, empty or not one of ours."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("writer") == WRITER else None


def describe(record: dict | None) -> str:
    if not record:
        return "another process"
    return f"process {record.get('pid')} ({record.get('command')}, since {record.get('since')})"


def command_line() -> str:
    """This process's command line on one printable line (it goes into error messages)."""
    words = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    text = " ".join(words)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[dict | None]:
    """Hold the lock of `folder` for the block; yield the record a dead earlier holder left
    (None when the lock was free and clean). Raises FolderBusyError if a live process holds it."""
    if fcntl is None:
        yield None
        return
    folder = Path(folder)
    path = lock_path(folder)
    fd, previous = acquire(path, folder)
    try:
        yield previous
    finally:
        release(fd, path)


@contextmanager
def folder_locks(folders: Iterable[str | Path]) -> Iterator[None]:
    """Hold the locks of several folders (each once) for the block, or none of them."""
    with ExitStack() as stack:
        for folder in dict.fromkeys(Path(f).resolve() for f in folders):
            stack.enter_context(folder_lock(folder))
        yield


def acquire(path: Path, folder: Path) -> tuple[int, dict | None]:
    """Lock `path` (created if missing) without waiting; write our record into it.

    Returns (fd, record of a dead earlier holder or None)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a file where a folder should be: the one-line error names it
        raise NotADirectoryError(errno.ENOTDIR, "a part of this path is a file, not a folder", str(folder)) from e
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:  # read-only or full file system: name the folder, not the lock file
            raise OSError(e.errno, e.strerror, str(folder)) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_record(path)
            os.close(fd)
            raise FolderBusyError(f"{folder} is in use by {describe(holder)}; wait for it to finish or stop it "
                                  "(nothing was changed)") from None
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, path):
            break
        os.close(fd)  # the holder removed this file as we opened it: lock the new one
    previous = read_record(path)
    record = {"writer": WRITER, "pid": os.getpid(), "command": command_line(),
              "since": datetime.now().isoformat(timespec="seconds")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    except BaseException:
        release(fd, path)
        raise
    return fd, previous


def release(fd: int, path: Path) -> None:
    """Remove the lock file (if it is still ours) and unlock it."""
    try:
        if _is_current(fd, path):
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a releasing holder unlinks it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
