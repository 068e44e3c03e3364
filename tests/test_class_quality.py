"""benchmarks/class_quality.py in --quick mode: a real (tiny) per-class run, measured against
its floors, appends a complete row; rows accumulate and checkpoints are removed unless kept."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from brainlib.training.devices import cpu_has_bf16


@pytest.fixture(scope="module")
def script():
    return importlib.import_module("benchmarks.class_quality")


def test_quick_rows_accumulate_with_every_figure(tmp_path, script):
    from brainlib.data.phantom import build_phantom
    data = build_phantom(out=tmp_path / "data", n_per_class=40, seed=3, workers=1, progress=False)
    common = ["--quick", "--data", str(data), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
              "--threads", "1"]
    first = script.main(common + ["--name", "q1", "--class", "NC", "--set", "lr=0.002"])
    second = script.main(common + ["--name", "q2", "--keep-run"])
    rows = [json.loads(line) for line in (tmp_path / "res" / "class_quality.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["q1", "q2"] and [r["class"] for r in rows] == ["NC", "AD"]
    assert rows[0] == json.loads(json.dumps(first))
    assert rows[0]["overrides"] == {"lr": "0.002"} and rows[0]["config"]["lr"] == 0.002
    for r in rows:
        assert r["config"]["class_name"] == r["class"] and r["preset"] == "smoke"
        assert r["images_seen"] == 64  # the smoke schedule: 32 images at each of 8 and 16 px
        assert r["compared"] == 8  # the held-out images of the class (20 % of 40)
        assert r["swd_x1e3"] > 0 and r["swd_floor"] > 0
        assert math.isclose(r["swd_ratio"], r["swd_x1e3"] / r["swd_floor"])
        assert set(r["swd_levels"]) == set(r["swd_floor_levels"]) == {"16"}  # the pyramid stops at 16 px
        assert set(r["swd_ref_levels"]) == set(r["swd_ref_floor_levels"]) == {"16"} and r["swd_ref_floor"] > 0
        assert list(r["spectrum_bands"]) == list(r["spectrum_floor_bands"]) == ["16", "8", "4"]
        assert 0.0 <= r["c2st"] <= 1.0 and 0.0 <= r["c2st_floor"] <= 1.0
        assert 0.0 <= r["c2st_half_res"] <= 1.0 and 0.0 <= r["c2st_half_res_floor"] <= 1.0
        assert r["train_minutes"] > 0 and len(r["loadavg_before"]) == 3
        assert r["precision"] == ("bfloat16" if cpu_has_bf16() else "float32")
        assert Path(r["grid"]).is_file()
    assert not (Path(first["run_dir"]) / "checkpoints").exists()
    assert any((Path(second["run_dir"]) / "checkpoints").iterdir())

    # benchmarks/compare_grids.py: the kept run's slices beside real held-out slices, in one PNG
    from PIL import Image
    grids = importlib.import_module("benchmarks.compare_grids")
    out = grids.figure([Path(second["run_dir"])], ["q2"], tmp_path / "compare.png")
    with Image.open(out) as im:
        assert im.width > 1.5 * im.height  # two panels side by side
    assert grids.tile(np.zeros((16, 5, 5), np.uint8)).shape == (4 * 5 + 3 * 2, 4 * 5 + 3 * 2)
    with pytest.raises(SystemExit):
        grids.main(["--run", second["run_dir"], "--label", "a", "--label", "b", "--out", str(tmp_path / "x.png")])


def test_bad_class_is_refused_before_any_work(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--class", "MCI"])
    assert "invalid choice" in capsys.readouterr().err
