"""Atomic writes: whole files or none, and the permissions a plain open(..., "w") gives."""
import os
import stat
from pathlib import Path

import pytest

from brainlib.atomic import atomic_write, atomic_write_json, atomic_write_text, current_umask


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
