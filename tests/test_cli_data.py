"""`brainlib data census` and `brainlib data phantom` through the command line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from brainlib.cli import main


@pytest.fixture
def phantom_with_junk(tiny_phantom, tmp_path):
    root = tmp_path / "AD_NC"
    shutil.copytree(tiny_phantom, root)
    (root / "train" / "AD" / "._AD_00000.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "train" / "NC" / "broken.png").write_text("not a png")
    (root / "test" / "NC" / "empty.jpeg").write_bytes(b"")
    return root


def test_census_json_via_subprocess(phantom_with_junk):
    result = subprocess.run([sys.executable, "-m", "brainlib", "data", "census", str(phantom_with_junk), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"train": {"AD": 19, "NC": 19}, "test": {"AD": 5, "NC": 5}}
    assert report["total"] == 48 and report["sizes"] == {"256x240": 48}
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"._AD_00000.png", "broken.png", "empty.jpeg"}
    assert "AppleDouble" in reasons["._AD_00000.png"] and "0 bytes" in reasons["empty.jpeg"]
    assert "not a readable image" in reasons["broken.png"]


def test_census_text_and_class_dir_option(tmp_path, tiny_phantom, capsys):
    root = tmp_path / "renamed"
    shutil.copytree(tiny_phantom, root)
    for split in ("train", "test"):
        (root / split / "NC").rename(root / split / "CN")
    assert main(["data", "census", str(root), "--class-dir", "NC=CN"]) == 0
    out = capsys.readouterr().out
    assert "NC=CN" in out and "(48 images)" in out and "skipped: 0 files" in out


def test_census_of_missing_folder_is_one_line_error(tmp_path, capsys):
    assert main(["data", "census", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "accepted layouts" in err and "Traceback" not in err


def test_phantom_command_builds_a_dataset(tmp_path, capsys):
    assert main(["data", "phantom", "--n", "3", "--seed", "2", "--out", str(tmp_path)]) == 0
    assert str(tmp_path / "AD_NC") in capsys.readouterr().out
    assert len(list((tmp_path / "AD_NC").glob("*/*/*.png"))) == 6
    assert json.loads((tmp_path / "AD_NC" / "phantom.json").read_text())["seed"] == 2


def test_census_text_escapes_control_characters_in_file_names(tmp_path, tiny_phantom, capsys):
    root = tmp_path / "AD_NC"
    shutil.copytree(tiny_phantom, root)
    (root / "train" / "AD" / "x.png\nskipped: 0 files").write_text("not a png")
    (root / "train" / "NC" / "bad\x1b[2K\u202e.png").write_text("not a png")
    assert main(["data", "census", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("skipped:")] == ["skipped: 2 files"]
    assert f"  {root}/train/AD/x.png\\nskipped: 0 files: not an image" in "\n".join(lines)
    assert any(line.startswith(f"  {root}/train/NC/bad\\x1b[2K\\u202e.png: not a readable image") for line in lines)
    assert not any(ch in "".join(lines) for ch in "\x1b\u202e")


def test_census_of_an_empty_class_folder_is_an_error_naming_it(tmp_path, tiny_phantom, capsys):
    from brainlib.data.census import census
    from brainlib.data.discovery import DataError
    root = tmp_path / "AD_NC"
    shutil.copytree(tiny_phantom, root)
    for png in (root / "test" / "NC").iterdir():
        png.unlink()
    shutil.rmtree(root / "train" / "NC")
    (root / "train" / "NC").mkdir()
    (root / "train" / "NC" / "notes.txt").write_text("todo")  # junk only: still no images
    with pytest.raises(DataError, match="class NC has no image files in") as err:
        census(root)
    assert str(root / "train" / "NC") in str(err.value) and str(root / "test" / "NC") in str(err.value)
    assert main(["data", "census", str(root)]) == 2
    err = capsys.readouterr().err
    assert "class NC has no image files" in err and len(err.strip().splitlines()) == 1
    shutil.rmtree(root / "train" / "NC")
    shutil.rmtree(root / "test" / "NC")
    assert main(["data", "census", str(root)]) == 0  # an absent class is counted as none, as before
