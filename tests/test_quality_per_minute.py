"""benchmarks/quality_per_minute.py in --quick mode: one real (tiny) training and evaluation
appends a complete row, rows accumulate, bad settings and unreadable result files are handled."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from brainlib.config import ConfigError, preset


@pytest.fixture(scope="module")
def qpm():
    return importlib.import_module("benchmarks.quality_per_minute")


@pytest.fixture(scope="module")
def quick_row(tmp_path_factory, qpm):
    """One --quick row on a phantom with 8 held-out images per class (C2ST needs 8)."""
    from brainlib.data.phantom import build_phantom
    tmp = tmp_path_factory.mktemp("qpm")
    data = build_phantom(out=tmp / "data", n_per_class=40, seed=3, workers=1, progress=False)
    results = tmp / "results"
    row = qpm.main(["--quick", "--name", "quick-r1", "--data", str(data), "--runs", str(tmp / "runs"),
                    "--results", str(results), "--encoder-cache", str(tmp / "enc"), "--threads", "1",
                    "--set", "loss=logistic-r1", "--set", "reg_every=4"])
    return row, results


def test_quick_row_is_appended_with_every_field(quick_row, qpm):
    row, results = quick_row
    rows = json.loads((results / "quality_per_minute.json").read_text())
    assert len(rows) == 1 and rows[0]["name"] == "quick-r1"
    saved = rows[0]
    assert saved["overrides"] == {"loss": "logistic-r1", "reg_every": "4"}
    assert saved["config"]["loss"] == "logistic-r1" and saved["config"]["reg_every"] == 4
    assert saved["config"]["class_name"] == "both" and saved["config"]["splits"] == ["train"]
    assert saved["budget_seconds"] == 3.0
    assert sum(saved["seconds_per_res"].values()) == pytest.approx(3.0, abs=0.01)
    assert saved["images_seen"] > 0 and saved["batches"] > 0
    assert saved["train_wall_seconds"] >= 3.0  # the budget counts training steps only
    assert len(saved["loadavg_before"]) == 3 and all(v >= 0 for v in saved["loadavg_after"])
    assert saved["n_generated_per_class"] == 16
    assert Path(saved["grid"]).is_file() and Path(saved["eval_json"]).is_file()
    for group in ("mean", "AD", "NC"):
        figures = saved["figures"][group]
        assert set(figures) == {name for name, _ in qpm.FIGURES}
        for name in ("swd", "fid", "precision", "recall", "c2st", "memorised_px", "memorised_enc"):
            g, f = figures[name]["generated"], figures[name]["floor"]
            assert g is not None and f is not None and math.isfinite(g) and math.isfinite(f), (group, name)
        for name in ("precision", "recall", "c2st", "memorised_px", "memorised_enc"):
            assert 0.0 <= figures[name]["generated"] <= 1.0 and 0.0 <= figures[name]["floor"] <= 1.0
        assert figures["swd"]["generated"] > 0 and figures["swd"]["floor"] > 0
        if group != "mean":
            assert figures["swd"]["ratio"] == pytest.approx(figures["swd"]["generated"] / figures["swd"]["floor"])
    report = json.loads(Path(saved["eval_json"]).read_text())
    for c in ("AD", "NC"):  # quick sizes train one C2ST classifier a side; a full evaluation averages three
        c2st = report["per_class"][c]["c2st_accuracy"]
        assert c2st["seeds"] == 1 and c2st["std"] == 0
    md = (results / "quality_per_minute.md").read_text()
    assert "| 1 | **quick-r1** `loss=logistic-r1 reg_every=4` |" in md
    assert not (Path(saved["run_dir"]) / "checkpoints").exists()  # removed unless --keep-run


def test_rows_accumulate_and_markdown_lists_all(quick_row, qpm):
    row, results = quick_row
    second = {**row, "name": "second"}
    qpm.append_row(second, results)
    rows = qpm.load_rows(results)
    assert [r["name"] for r in rows] == ["quick-r1", "second"]
    md = (results / "quality_per_minute.md").read_text()
    assert "| 1 | **quick-r1**" in md and "| 2 | **second**" in md
    assert md.count("\n| ") == 3  # header + two rows (the separator starts with |-)


def test_unreadable_results_file_is_kept_aside_and_the_row_kept(quick_row, qpm, tmp_path):
    row, _ = quick_row
    (tmp_path / "quality_per_minute.json").write_text("{not json")
    qpm.append_row(row, tmp_path)
    assert [r["name"] for r in qpm.load_rows(tmp_path)] == ["quick-r1"]
    aside = list(tmp_path.glob("quality_per_minute.json.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"


def test_load_rows_names_the_file_when_not_a_list(qpm, tmp_path):
    (tmp_path / "quality_per_minute.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="quality_per_minute.json should hold a JSON list"):
        qpm.load_rows(tmp_path)


def test_budget_split_over_resolutions(qpm, tmp_path):
    cfg = qpm.row_config("demo", {"loss": "logistic-r1"}, budget=90, shares=(1, 1, 2, 4), run="r",
                         out_root=tmp_path, data_root=None)
    assert cfg.seconds_per_res == {8: 11.25, 16: 11.25, 32: 22.5, 64: 45.0}
    assert cfg.class_name == "both" and cfg.images_per_res is None and cfg.loss == "logistic-r1"
    with pytest.raises(ConfigError, match="--shares has 2 values but the run trains 4 resolutions"):
        qpm.seconds_per_res(preset("demo"), 90, (1, 1))
    with pytest.raises(ConfigError, match="must be positive"):
        qpm.seconds_per_res(preset("demo"), 0, (1, 1, 1, 1))
    with pytest.raises(ConfigError, match="unknown setting 'lrr'"):
        qpm.row_config("demo", {"lrr": "1"}, budget=90, shares=(1, 1, 1, 1), run="r", out_root=tmp_path,
                       data_root=None)


def test_paper_plus_is_the_paper_widths_with_the_measured_choices():
    paper, plus = preset("paper"), preset("paper-plus")
    assert plus.channels == paper.channels and plus.batch_sizes == paper.batch_sizes
    assert plus.image_size == paper.image_size == 128
    assert plus.loss == "logistic-r1" and plus.reg_every == 4 and plus.augment == "diffaugment"
    assert plus.mapping_lr / plus.lr == pytest.approx(0.01)  # StyleGAN's mapping multiplier
    assert paper.loss == "wgan-gp" and paper.augment == "none"  # the reference recipe is untouched
