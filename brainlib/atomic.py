"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A crash or a full disk mid-write leaves the previous file untouched, never a
half-written one. The file ends with the mode a plain `open(path, "w")` gives: an existing
file keeps its mode, a new one gets 0666 less the umask (0644 under umask 022), not the
0600 of the temporary file."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then move tmp_path over `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _plain_open_mode(path))
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
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


@contextmanager
def new_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `final`; when the block ends without error it is
    renamed to `final`, else deleted. An existing non-empty `final` is refused before anything is
    written, so a reader sees either nothing or the whole folder, and no user file is touched."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FolderExistsError(f"{final} already exists and is not empty; choose another output folder "
                                "(nothing was written, the existing files are kept)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would keep a shared dataset private
        os.rename(tmp, final)  # replaces at most an empty folder; fails if one was filled meanwhile
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
