"""The texture probe (training/texture_probe.py): its rows in metrics.jsonl, training unchanged by
it, the best snapshot it keeps, and `--snapshot best` in generate, export and evaluate."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from brainlib.cli import main
from brainlib.config import ConfigError, preset
from brainlib.data.dataset import SliceDataset
from brainlib.eval.evaluate import evaluate
from brainlib.eval.report import load_report
from brainlib.rundir import RunDir
from brainlib.training.checkpoints import best_checkpoint, latest_checkpoint, load_checkpoint
from brainlib.training.metrics_log import read_metrics
from brainlib.training.trainer import train


def _data(n: int = 32, size: int = 16) -> SliceDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return SliceDataset(images=images, labels=np.ones(n, np.int64), splits=np.array(["train"] * n),
                        sources=[f"img{i}" for i in range(n)], skipped=[], root=Path("memory"))


def _rows(run_dir, kind: str) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r.get("kind") == kind]


def _final_tensors(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run_dir))[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Smoke runs of 32 images per step (8 and 16 px, batches of 8): the probe every 8 images
    ("on"), off ("off"), and on but stopped after 6 batches and resumed ("cut")."""
    root = tmp_path_factory.mktemp("outputs")
    for name, every in (("on", 8), ("off", 0)):
        train(preset("smoke", run=name, out_root=str(root), texture_every=every), dataset=_data())
    cut = preset("smoke", run="cut", out_root=str(root), texture_every=8)
    train(cut, dataset=_data(), max_steps=6)
    train(cut, dataset=_data(), resume=True)
    return root


def test_each_probe_is_a_row_of_finite_figures_at_the_final_resolution(runs):
    probes = _rows(runs / "on", "texture")
    # 8 px (images 8 to 32) is not the final resolution; at 16 px after every batch, the end not twice
    assert [r["images_seen"] for r in probes] == [40, 48, 56, 64]
    assert [r["batch"] for r in probes] == [5, 6, 7, 8] and {r["res"] for r in probes} == {16}
    for r in probes:
        assert r["images"] == 16  # half of the 32 training slices: the other half is the floor's
        assert set(r["swd_reference"]) == {"16"} and set(r["spectrum"]) == {"16", "8", "4"}
        figures = [*r["swd_reference"].values(), *r["spectrum"].values(), r["score"],
                   *r["floor"]["swd_reference"].values(), *r["floor"]["spectrum"].values()]
        assert all(math.isfinite(v) and v > 0 for v in figures)
    assert probes[0]["floor"] == probes[-1]["floor"]  # the real side is computed once
    assert RunDir(runs / "on").texture_plot.is_file() and not RunDir(runs / "off").texture_plot.exists()


def test_training_with_the_probe_gives_the_same_weights_as_without_it(runs):
    on, off = _final_tensors(runs / "on"), _final_tensors(runs / "off")
    assert on.keys() == off.keys() and any(k.startswith("opt_G/state/") for k in on)
    assert [k for k in on if not torch.equal(on[k], off[k])] == []  # RNG states included
    assert [r["d_loss"] for r in _rows(runs / "on", "batch")] == [r["d_loss"] for r in _rows(runs / "off", "batch")]


def test_a_resumed_run_probes_as_an_uninterrupted_one(runs):
    assert _rows(runs / "cut", "texture") == [{**r, "seconds": c["seconds"]} for r, c in
                                              zip(_rows(runs / "on", "texture"), _rows(runs / "cut", "texture"),
                                                  strict=True)]
    assert json.loads(RunDir(runs / "cut").best.read_text()) == json.loads(RunDir(runs / "on").best.read_text())


def test_the_best_snapshot_holds_the_lowest_scores_ema_generator(runs):
    probes = _rows(runs / "on", "texture")
    best = min(probes, key=lambda r: r["score"])
    run = RunDir(runs / "on")
    pointer = json.loads(run.best.read_text())
    assert pointer["score"] == best["score"] and pointer["images_seen"] == best["images_seen"]
    assert best_checkpoint(run) == run.best_snapshot(best["images_seen"])
    assert run.best_snapshots() == [best_checkpoint(run)]  # the earlier bests are deleted
    tensors, meta = load_checkpoint(best_checkpoint(run))
    assert {k.split("/")[0] for k in tensors} == {"G_ema"} and meta["texture"]["score"] == best["score"]
    assert latest_checkpoint(run).name == "02-16px.safetensors"  # latest.json stays on the newest checkpoint
    if best["images_seen"] == 64:  # the finished generator is the best: the same weights as the final checkpoint
        final = _final_tensors(run)
        assert all(torch.equal(v, final[k]) for k, v in tensors.items())


def test_generate_takes_the_best_snapshot(runs, capsys):
    assert main(["generate", "--model", "on", "--output", "best3", "--n", "3", "--snapshot", "best",
                 "--out-root", str(runs)]) == 0
    folder = RunDir(runs / "on").generated_images("best3")
    assert sorted(p.name for p in folder.iterdir()) == ["img_0.png", "img_1.png", "img_2.png"]
    record = json.loads(RunDir(runs / "on").generated_record("best3").read_text())
    assert Path(record["checkpoint"]) == best_checkpoint(runs / "on")


@pytest.mark.parametrize("command", [["generate", "--output", "x", "--n", "2"], ["export", "--out", "X", "--n", "2"],
                                     ["evaluate", "--n", "2"]])
def test_a_run_without_a_best_snapshot_is_refused_in_one_line(runs, capsys, command):
    command = [part if part != "X" else str(runs / "export") for part in command]
    assert main([*command, "--model", "off", "--snapshot", "best", "--out-root", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no best snapshot" in err and "use --snapshot latest" in err
    assert not (runs / "export").exists() and not (runs / "off" / "generated_images").exists()


def test_a_diffusion_run_probes_throughout_without_changing_its_weights(tmp_path):
    data = _data()
    for name, every in (("on", 8), ("off", 0)):
        train(preset("diffusion-smoke", run=name, out_root=str(tmp_path), texture_every=every), dataset=data)
    probes = _rows(tmp_path / "on", "texture")
    assert [r["images_seen"] for r in probes] == [8, 16, 24, 32]  # from the first batch, the end not twice
    assert all(math.isfinite(r["score"]) for r in probes)
    on, off = _final_tensors(tmp_path / "on"), _final_tensors(tmp_path / "off")
    assert [k for k in on if not torch.equal(on[k], off[k])] == [] and on.keys() == off.keys()
    tensors, meta = load_checkpoint(best_checkpoint(tmp_path / "on"))
    assert meta["family"] == "diffusion" and {k.split("/")[0] for k in tensors} == {"G_ema"}
    assert main(["generate", "--model", "on", "--output", "b", "--n", "2", "--snapshot", "best",
                 "--out-root", str(tmp_path)]) == 0


def test_texture_every_is_a_whole_number_of_images():
    assert preset("demo").texture_every > 0 and preset("smoke").texture_every == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="texture_every"):
            preset("smoke", texture_every=bad)


def test_evaluate_and_export_take_the_best_snapshot(tmp_path):
    from smoke_batch import tiny_data
    train(preset("smoke", run="probed", out_root=str(tmp_path), data_root=str(tiny_data()), texture_every=8))
    best = json.loads(RunDir(tmp_path / "probed").best.read_text())
    path = evaluate(["probed"], n=8, out_root=tmp_path, quick=True, snapshot="best", usefulness=False,
                    embed_method=None, progress=False, encoder_cache=tmp_path / "encoders")
    assert path == tmp_path / "probed" / "eval-best.json" and not (tmp_path / "probed" / "eval.json").exists()
    report = load_report(path)
    assert report["snapshot"] == "best"
    assert report["fingerprint"]["checkpoints"][0]["images_seen"] == best["images_seen"]
    assert all(Path(f).parent == tmp_path / "probed" / "eval-best" for f in report["figures"].values())
    assert main(["export", "--model", "probed", "--out", str(tmp_path / "syn"), "--n", "2", "--snapshot", "best",
                 "--out-root", str(tmp_path)]) == 0
    manifest = (tmp_path / "syn" / "manifest.csv").read_text()
    assert f"probed/checkpoints/{best['checkpoint']}" in manifest
    sheet = (tmp_path / "syn" / "DATASHEET.md").read_text()
    assert "--snapshot best`" in sheet and "From `probed/eval-best.json`" in sheet and "Caution" not in sheet
