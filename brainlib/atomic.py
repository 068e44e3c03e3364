"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A crash or a full disk mid-write leaves the previous file untouched, never a
half-written one. The file ends with the mode a plain `open(path, "w")` gives: an existing
file keeps its mode, a new one gets 0666 less the umask (0644 under umask 022), not the
0600 of the temporary file.

Whole folders (`new_folder`) are built under a hidden name beside their final one, by one
writer at a time (brainlib/runlock.py), and renamed when complete. Ctrl-C and SIGTERM
remove the unfinished folder; one left by a killed process (SIGKILL, power loss) is removed,
with a notice, by the next `new_folder` in the same parent."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brainlib.runlock import FolderBusyError, acquire, describe, folder_lock, read_record, release


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then move tmp_path over `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only or full folder: name the file we were asked for
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _plain_open_mode(path))
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.errno is not None and e.filename in (None, tmp):  # a full disk names no file, or the temporary one
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False))


def _plain_open_mode(path: Path) -> int:
    """The permission bits `open(path, "w")` would leave: the existing file's, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be writing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) so that a second process
    waits for the first. Without fcntl (Windows) there is no lock; atomic renames still
    keep every file whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class FolderExistsError(FileExistsError, ValueError):
    """The output folder exists and holds files: we never write into or over it."""


class NotEnoughSpace(ValueError):
    """The file system cannot hold what a command is about to write; nothing was written."""


class Terminated(SystemExit):
    """SIGTERM as an exception in the main thread, so that unfinished output is removed as on
    Ctrl-C; its exit status is the shell's for SIGTERM (143)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated in the main thread (once: a second SIGTERM
    during the cleanup is ignored). A no-op off the main thread and where a handler other than
    the default is installed (a notebook kernel's, an enclosing block's)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    raised = False

    def raise_once(signum, frame):
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated()

    signal.signal(signal.SIGTERM, raise_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def new_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder `.<name>.tmp` beside `final`; when the block ends without
    error it is renamed to `final`, else deleted (also on SIGTERM). An existing non-empty `final`
    is refused before anything is written, so a reader sees either nothing or the whole folder,
    and no user file is touched. The folder's lock (runlock.folder_lock) is held throughout: a
    second writer of the same folder is refused at once. Unfinished folders that killed
    processes left in the same parent are removed first, with a notice."""
    final = Path(final)
    with folder_lock(final) as previous, terminate_as_exception():
        if final.exists() and (not final.is_dir() or any(final.iterdir())):
            raise FolderExistsError(f"{final} already exists and is not empty; choose another output folder "
                                    "(nothing was written, the existing files are kept)")
        tmp = final.parent / f".{final.name}.tmp"
        if tmp.exists() or tmp.is_symlink():
            if previous is None or not tmp.is_dir() or tmp.is_symlink():
                raise FolderExistsError(f"{tmp} is in the way and was not left by brainlib; move it away "
                                        "or choose another output folder (nothing was written)")
            _remove_unfinished(tmp, previous)
        sweep_unfinished(final.parent)
        os.mkdir(tmp, 0o700)
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~current_umask())  # a shared dataset follows the umask
            os.rename(tmp, final)  # replaces at most an empty folder; fails if one was filled meanwhile
            _fsync_dir(final.parent)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno is not None and e.filename is None:  # a full disk mid-write: name the folder
                raise OSError(e.errno, e.strerror or str(e), str(final)) from e
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def sweep_unfinished(parent: Path) -> None:
    """Remove the unfinished folders (`.<name>.tmp`) that killed brainlib processes left in
    `parent`, each with a one-line notice. A folder goes only when its lock file is brainlib's
    and no live process holds it; anything else is left alone."""
    for lock in sorted(Path(parent).glob(".*.lock")):
        tmp = lock.with_name(lock.name[:-len(".lock")] + ".tmp")
        if not tmp.is_dir() or tmp.is_symlink() or read_record(lock) is None:
            continue
        try:
            fd, previous = acquire(lock, tmp)
        except (FolderBusyError, OSError):
            continue  # its writer is alive, or we may not touch it
        try:
            if previous is not None:
                _remove_unfinished(tmp, previous)
        finally:
            release(fd, lock)


def _remove_unfinished(tmp: Path, record: dict) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"removed {tmp}: unfinished output of {describe(record)}, which stopped before finishing",
          file=sys.stderr, flush=True)


def check_free_space(folder: Path, n_files: int, bytes_per_file: int) -> None:
    """Raise NotEnoughSpace, before anything is written, when the file system that will hold
    `folder` has no room (or no inodes) for `n_files` files of up to `bytes_per_file` each."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    block = st.f_frsize or 4096
    need = n_files * -(-bytes_per_file // block) * block
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise NotEnoughSpace(f"{n_files} files of up to {human_bytes(bytes_per_file)} need up to "
                             f"{human_bytes(need)} and {probe} has {human_bytes(free)} free; ask for fewer "
                             "or free some space "
                             "(nothing was written)")
    if st.f_files and n_files > st.f_favail:
        raise NotEnoughSpace(f"{n_files} files are more than the {st.f_favail} more the file system at {probe} "
                             "can hold; ask for fewer (nothing was written)")


def human_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"
