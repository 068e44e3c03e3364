"""`brainlib export`: a synthetic dataset in ADNI's layout from a smoke conditional run trained here."""
import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from smoke_conditional import train_smoke

from brainlib.cli import main
from brainlib.config import preset
from brainlib.data.dataset import load_dataset
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis.export import MANIFEST_FIELDS, export_dataset
from brainlib.synthesis.sampling import sample_images, to_uint8
from brainlib.training.checkpoints import module_tensors, save_checkpoint


@pytest.fixture(scope="module")
def out_root(tmp_path_factory, tiny_phantom, tiny_dataset_cache) -> Path:
    """smoke-both trained on the tiny phantom, evaluated (eval.json in its folder)."""
    from brainlib.eval.evaluate import evaluate

    root = tmp_path_factory.mktemp("export_runs")
    train_smoke(root, tiny_phantom, tiny_dataset_cache)
    evaluate(["smoke-both"], n=16, out_root=root, quick=True, usefulness=False, embed_method=None,
             encoder_cache=tmp_path_factory.mktemp("encoders"), progress=False)
    return root


def export(out_root, out, *args) -> int:
    return main(["export", "--model", *map(str, args), "--out", str(out), "--out-root", str(out_root)])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(out_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "synthetic"
    assert export(out_root, out, "smoke-both", "--n", 10, "--test-fraction", 0.3, "--seed", 2) == 0
    return out


def test_both_classes_in_adni_layout_at_the_trained_size(exported):
    for split, indices in (("train", range(7)), ("test", range(7, 10))):
        for c in ("AD", "NC"):
            files = sorted((exported / split / c).iterdir())
            assert [f.name for f in files] == [f"syn_{c}_{i:05d}.png" for i in indices]
            for f in files:
                with Image.open(f) as im:
                    assert (im.format, im.mode, im.size) == ("PNG", "L", (16, 16))
                    assert im.text["Synthetic"] == "true" and "SYNTHETIC" in im.text["Description"]
                    assert im.text["Class"] == c
    assert sorted(p.name for p in exported.iterdir()) == ["DATASHEET.md", "manifest.csv", "test", "train"]


def test_manifest_rows_reproduce_each_image_from_its_seed_and_index(exported, out_root):
    from brainlib.synthesis.sampling import load

    rows = list(csv.DictReader((exported / "manifest.csv").open()))
    assert tuple(rows[0]) == MANIFEST_FIELDS and len(rows) == 20
    ckpt = out_root / rows[0]["checkpoint"]
    assert all(r["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() for r in rows)
    assert {(r["class"], r["seed"]) for r in rows} == {("NC", "4"), ("AD", "5")}  # 2 x seed + label
    G = load("smoke-both", out_root=out_root)[0]
    for r in (rows[0], rows[-1]):
        expected = to_uint8(sample_images(G, 1, seed=int(r["seed"]), start=int(r["index"]), class_name=r["class"]))[0]
        written = np.asarray(Image.open(exported / r["file"])).astype(int)
        assert np.abs(written - expected).max() <= 1  # one grey level: batch sizes round differently


def test_datasheet_names_model_data_evaluation_and_use(exported, out_root):
    sheet = (exported / "DATASHEET.md").read_text()
    sha = hashlib.sha256((out_root / "smoke-both/checkpoints/02-16px.safetensors").read_bytes()).hexdigest()
    assert sha in sheet and "smoke-both/checkpoints/02-16px.safetensors" in sheet
    assert "never diagnosis" in sheet.lower() and "augmentation" in sheet
    assert "AD 19 files, NC 19 files (split train)" in sheet  # the tiny phantom's train split
    assert "| SWD x1e3 (avg) | AD |" in sheet and "| memorised share (pixels) | NC |" in sheet
    assert "No evaluation was found" not in sheet


def test_same_command_writes_the_same_bytes(exported, out_root, tmp_path):
    again = tmp_path / "again"
    assert export(out_root, again, "smoke-both", "--n", 10, "--test-fraction", 0.3, "--seed", 2) == 0
    assert snapshot(again) == snapshot(exported)


def test_the_workbook_loader_reads_the_export_back(exported, tmp_path):
    ds = load_dataset(exported, image_size=16, cache_dir=tmp_path, progress=False)
    assert ds.class_counts() == {"NC": 10, "AD": 10} and not ds.skipped
    assert sorted(set(ds.splits)) == ["test", "train"]
    first_ad = ds.sources.index(str(exported / "test" / "AD" / "syn_AD_00007.png"))
    assert np.array_equal(ds.images[first_ad], np.asarray(Image.open(exported / "test/AD/syn_AD_00007.png")))


def test_refuses_an_existing_folder_and_leaves_it_untouched(exported, out_root, capsys):
    before = snapshot(exported)
    assert export(out_root, exported, "smoke-both", "--n", 4) == 2
    assert "already exists" in capsys.readouterr().err
    assert snapshot(exported) == before


def test_a_failure_midway_leaves_nothing_behind(out_root, tmp_path, monkeypatch):
    import brainlib.synthesis.export as ex

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ex, "manifest_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(["smoke-both"], tmp_path / "half", 4, out_root=out_root, progress=False)
    assert list(tmp_path.iterdir()) == []


def save_random_run(out_root: Path, class_name: str, image_size: int = 16) -> None:
    cfg = preset("smoke", class_name=class_name, run=f"rand-{class_name}-{image_size}", out_root=str(out_root),
                 image_size=image_size, channels={4: 16, 8: 16, 16: 8, 32: 8}, batch_sizes={8: 8, 16: 8, 32: 8})
    G = Generator(network_settings(cfg))
    save_checkpoint(out_root / cfg.run, "final", module_tensors(G, "G_ema"),
                    {"config": cfg.to_dict(), "res": image_size, "alpha": 1.0, "images_seen": 0, "finished": True})


def test_an_ad_run_and_an_nc_run_make_one_dataset(tmp_path):
    root = tmp_path / "runs"
    torch.manual_seed(0)
    for c in ("AD", "NC"):
        save_random_run(root, c)
    out = export_dataset(["rand-AD-16", "rand-NC-16"], tmp_path / "pair", 3, test_fraction=0.0, out_root=root,
                         progress=False)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert {(r["class"], r["checkpoint"].split("/")[0]) for r in rows} == {("AD", "rand-AD-16"), ("NC", "rand-NC-16")}
    assert not (out / "test").exists()
    assert "No evaluation was found" in (out / "DATASHEET.md").read_text()


def test_bad_combinations_are_refused_before_writing(tmp_path, capsys):
    root = tmp_path / "runs"
    save_random_run(root, "AD")
    save_random_run(root, "NC", image_size=32)
    out = tmp_path / "x"
    assert export(root, out, "rand-AD-16", "rand-AD-16", "--n", 2) == 2
    assert "class AD comes from both" in capsys.readouterr().err
    assert export(root, out, "rand-AD-16", "rand-NC-32", "--n", 2) == 2
    assert "different sizes" in capsys.readouterr().err
    assert export(root, out, "rand-AD-16", "--n", 0) == 2
    assert "--n must be a positive" in capsys.readouterr().err
    assert not out.exists()


def test_sigterm_midway_leaves_nothing_and_says_so(tmp_path):
    root = tmp_path / "runs"
    for c in ("AD", "NC"):
        save_random_run(root, c)
    out = tmp_path / "big"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "brainlib", "export", "--model", "rand-AD-16", "rand-NC-16",
                             "--out", str(out), "--n", "5000", "--out-root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    tmp = tmp_path / ".big.tmp"
    deadline = time.monotonic() + 120
    while not (tmp.is_dir() and any(tmp.rglob("*.png"))) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the export ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert proc.stderr.read().splitlines()[-1] == "brainlib export: stopped by SIGTERM"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no folder, no temporary one, no lock


def test_bad_psi_a_path_under_a_file_and_too_little_space_are_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    save_random_run(root, "AD")
    (tmp_path / "afile").write_text("mine")
    assert export(root, tmp_path / "afile" / "sub", "rand-AD-16", "--n", 2) == 2
    assert capsys.readouterr().err == (f"brainlib export: error: {tmp_path / 'afile' / 'sub'}: "
                                       "a part of the path is a file, not a folder\n")
    assert export(root, tmp_path / "x", "rand-AD-16", "--n", 10**13) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10000000000002 files of up to 2.3 kB need up to" in err
    with pytest.raises(SystemExit):
        export(root, tmp_path / "x", "rand-AD-16", "--n", 2, "--truncation", "nan")
    assert "argument --truncation: must be a number from 0 to 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\(psi\) must be a number from 0 to 1"):
        export_dataset(["rand-AD-16"], tmp_path / "x", 2, psi=float("nan"), out_root=root, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "runs"]
    assert (tmp_path / "afile").read_text() == "mine"
