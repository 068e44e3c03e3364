"""Atomic writes: whole files or none, and the permissions a plain open(..., "w") gives; whole
folders by one writer at a time, with nothing left behind by SIGTERM, SIGKILL or a full disk."""
import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from brainlib.atomic import (
    FolderExistsError,
    NotEnoughSpace,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    current_umask,
    new_folder,
)
from brainlib.runlock import FolderBusyError


@pytest.fixture
def umask():
    """Set the process umask for one test, restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    atomic_write_json(tmp_path / "sub" / "eval.json", {"a": 1})
    assert _mode(tmp_path / "plain.txt") == expected
    assert _mode(tmp_path / "atomic.txt") == expected
    assert _mode(tmp_path / "sub" / "eval.json") == expected


def test_an_existing_file_keeps_its_mode_when_replaced(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "report.html"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


# ----------------------------------------------------------------------
# new_folder: one writer, nothing left behind after SIGTERM, leftovers of SIGKILL swept

ROOT = Path(__file__).resolve().parents[1]
WRITER = """import sys, time
from pathlib import Path
from brainlib.atomic import new_folder
with new_folder(Path(sys.argv[1])) as tmp:
    for i in range(3):
        (tmp / f"img_{i}.png").write_bytes(b"x" * 100)
    print("writing", flush=True)
    time.sleep(300)
"""


def start_writer(final: Path) -> subprocess.Popen:
    """Another process in the middle of new_folder(final), three files written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "writing"
    assert len(list((final.parent / f".{final.name}.tmp").iterdir())) == 3
    return proc


def test_sigterm_mid_folder_leaves_nothing(tmp_path):
    proc = start_writer(tmp_path / "out")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary folder, no lock file


def test_a_killed_writers_folder_is_swept_with_a_notice_a_live_ones_is_not(tmp_path, capsys):
    killed, live = start_writer(tmp_path / "killed"), start_writer(tmp_path / "live")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    foreign = tmp_path / ".mine.tmp"  # not brainlib's: no lock file of ours beside it
    foreign.mkdir()
    (tmp_path / ".theirs.lock").write_text("pid 1")
    (tmp_path / ".theirs.tmp").mkdir()
    try:
        with new_folder(tmp_path / "next") as tmp:
            (tmp / "a").write_text("a")
        err = capsys.readouterr().err
        assert f"removed {tmp_path / '.killed.tmp'}: unfinished output of process {killed.pid}" in err
        assert err.count("\n") == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".live.lock", ".live.tmp", ".mine.tmp", ".theirs.lock", ".theirs.tmp", "next"]
        with pytest.raises(FolderBusyError, match=f"process {live.pid}"), new_folder(tmp_path / "live"):
            pass
    finally:
        live.kill()
        live.wait()
    with new_folder(tmp_path / "live") as tmp:  # the same name after its writer died: swept, then written
        (tmp / "b").write_text("b")
    assert "removed" in capsys.readouterr().err and sorted(p.name for p in (tmp_path / "live").iterdir()) == ["b"]
    with pytest.raises(FolderExistsError, match="was not left by brainlib"), new_folder(tmp_path / "mine"):
        pass
    assert foreign.is_dir()


def test_a_full_disk_mid_folder_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e, new_folder(tmp_path / "out") as tmp:
        monkeypatch.setattr(Path, "write_bytes", full)
        (tmp / "img_0.png").write_bytes(b"png")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_under_a_file_is_refused_naming_it(tmp_path):
    (tmp_path / "afile").write_text("x")
    for final in (tmp_path / "afile" / "sub", tmp_path / "afile" / "a" / "b"):
        with pytest.raises(NotADirectoryError) as e, new_folder(final):
            pass
        assert e.value.errno == errno.ENOTDIR and str(tmp_path / "afile") in e.value.filename


def test_free_space_is_checked_with_the_numbers(tmp_path, monkeypatch):
    real = os.statvfs(tmp_path)
    fields = {k: getattr(real, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_files", "f_ffree",
                                            "f_favail", "f_flag", "f_namemax")}
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(**{**fields, "f_frsize": 4096, "f_bavail": 25}))
    check_free_space(tmp_path / "new" / "folder", 25, 1300)  # 25 files of one 4 kB block: exactly fits
    with pytest.raises(NotEnoughSpace, match=r"26 files of up to 1.3 kB need up to 106.5 kB and .* has 102.4 kB free"):
        check_free_space(tmp_path / "new" / "folder", 26, 1300)
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(**{**fields, "f_bavail": 10**9, "f_files": 100,
                                                                    "f_favail": 5}))
    with pytest.raises(NotEnoughSpace, match="more than the 5 more"):
        check_free_space(tmp_path, 6, 100)
