"""benchmarks/stage_layout.py on a trained smoke run: one row per end-of-step checkpoint, with
floors, written as JSON; a run without its checkpoints is refused by name."""
from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
from smoke_batch import ROOT, refresh, trained_runs

sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of scripts, importable from the root
from benchmarks.stage_layout import main  # noqa: E402 (importable once the root is on sys.path)


def test_one_row_per_stage_with_floors(tmp_path, capsys):
    run = trained_runs() / f"{refresh.SMOKE_NAME}-AD"
    result = main([str(run), "--n", "12", "--threads", "1", "--out", str(tmp_path / "layout.json")])
    stages = result["runs"][0]["stages"]
    assert [s["stage"] for s in stages] == ["01-8px", "02-16px"] and [s["res"] for s in stages] == [8, 16]
    for s in stages:
        assert 2 <= s["compared"] <= 12
        for key in ("layout_swd_x1e3", "layout_swd_floor", "pixel_spread", "pixel_spread_real"):
            assert math.isfinite(s[key]) and s[key] > 0
        assert s["layout_ratio"] == pytest.approx(s["layout_swd_x1e3"] / s["layout_swd_floor"])
    written = json.loads((tmp_path / "layout.json").read_text())
    assert written["runs"] == json.loads(json.dumps(result["runs"])) and written["machine"]
    assert "02-16px" in capsys.readouterr().out


def test_a_run_without_stage_checkpoints_is_named(tmp_path):
    run = tmp_path / "gone-AD"
    shutil.copytree(trained_runs() / f"{refresh.SMOKE_NAME}-AD", run)
    for ck in (run / "checkpoints").glob("*.safetensors"):
        ck.unlink()
    with pytest.raises(FileNotFoundError, match="gone-AD"):
        main([str(run), "--out", str(tmp_path / "x.json")])
