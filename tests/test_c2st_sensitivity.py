"""benchmarks/c2st_sensitivity.py: each known change does what its row says, and the --quick
run on a tiny phantom writes one well-formed row per change."""
from __future__ import annotations

import importlib
import json

import pytest
import torch


@pytest.fixture(scope="module")
def script():
    return importlib.import_module("benchmarks.c2st_sensitivity")


def brain_on_black() -> torch.Tensor:
    """Four 32 px images: a mid-grey square (the brain) on a -1 background."""
    x = torch.full((4, 1, 32, 32), -1.0)
    x[..., 8:24, 8:24] = 0.2
    return x


def test_changes_do_what_their_rows_say(script):
    x, gen = brain_on_black(), torch.Generator().manual_seed(0)
    brain = x > script.BACKGROUND
    noisy = script.gaussian_noise(0.03)(x, gen)
    assert abs(float((noisy - x)[brain].std()) - 0.03) < 0.003
    lifted = script.background_noise(0.06)(x, gen)
    assert torch.equal(lifted[brain], x[brain]) and (lifted[~brain] >= -1).all()
    assert 0.03 < float((lifted - x)[~brain].mean()) < 0.06  # half-normal mean: 0.06 * sqrt(2 / pi)
    brighter = script.brightness(0.02)(x, gen)
    torch.testing.assert_close(brighter[brain], x[brain] + 0.02)
    assert torch.equal(brighter[~brain], x[~brain])
    blurred = script.blur(1.0)(x, gen)
    torch.testing.assert_close(blurred[..., 14:18, 14:18], x[..., 14:18, 14:18])  # flat inside
    assert -1 < float(blurred[0, 0, 16, 8]) < 0.2  # the edge is softened
    coarse = script.quantise(32)(noisy, gen)
    assert len(torch.unique(coarse)) <= 32 and float((coarse - noisy).abs().max()) <= 1 / 31 + 1e-6


def test_quick_run_writes_one_row_per_change(script, tmp_path):
    from brainlib.data.phantom import build_phantom
    data = build_phantom(out=tmp_path / "data", n_per_class=40, seed=3, workers=1, progress=False)  # 8 held out
    out = tmp_path / "sens.json"
    result = script.main(["--quick", "--data", str(data), "--res", "32", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and saved["benchmark"] == "c2st_sensitivity"
    assert [r["change"] for r in saved["rows"]] == [name for name, _, _ in script.CHANGES]
    assert saved["compared"] == 8 and saved["seeds"] == 1
    floor, *changed = saved["rows"]
    assert floor["max_abs_change"] == 0 and all(r["max_abs_change"] > 0 for r in changed)
    assert all(0.0 <= r["c2st"] <= 1.0 for r in saved["rows"])
