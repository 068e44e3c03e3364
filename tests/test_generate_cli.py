"""`brainlib generate`: the original workbook's predict command, on saved random-weight runs."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brainlib.cli import main
from brainlib.config import preset
from brainlib.networks.layers import NoiseInjection
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.rundir import RunDir
from brainlib.synthesis.sampling import generate_to_folder
from brainlib.training.checkpoints import module_tensors, save_checkpoint


def save_run(out_root: Path, class_name: str) -> Path:
    """A finished-looking run folder holding a random smoke generator (noise switched on)."""
    cfg = preset("smoke", class_name=class_name, run=f"smoke-{class_name}", out_root=str(out_root))
    torch.manual_seed(1)
    G = Generator(network_settings(cfg))
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
    run_dir = out_root / cfg.run
    cfg.save(run_dir / "config.json")
    return save_checkpoint(run_dir, "02-16px", module_tensors(G, "G_ema"),
                           {"config": cfg.to_dict(), "res": 16, "alpha": 1.0, "images_seen": 64, "finished": True})


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    for c in ("AD", "NC", "both"):
        save_run(root, c)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def generate(out_root, *args) -> int:
    return main(["generate", *map(str, args), "--out-root", str(out_root)])


def test_writes_exactly_n_greyscale_pngs_at_the_trained_size(out_root, capsys):
    assert generate(out_root, "--model", "smoke-AD", "--output", "five", "--n", 5, "--seed", 3) == 0
    folder = out_root / "smoke-AD" / "generated_images" / "five"
    assert f"wrote 5 images to {folder}" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"img_{i}.png" for i in range(5))
    arrays = []
    for i in range(5):
        with Image.open(folder / f"img_{i}.png") as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (16, 16)
            arrays.append(np.asarray(im))
    assert len({a.tobytes() for a in arrays}) == 5
    assert not list(folder.parent.glob(".*"))  # no temporary folder left behind
    record = json.loads((folder.parent / "five.json").read_text())
    assert record["n"] == 5 and record["seed"] == 3 and record["psi"] == 1.0 and record["size"] == 16
    assert record["checkpoint"].endswith("02-16px.safetensors") and len(record["checkpoint_sha256"]) == 64


def test_same_seed_is_byte_identical_across_processes_and_seeds_differ(out_root):
    generate_to_folder("smoke-AD", "in-process", 4, seed=9, out_root=out_root)
    cmd = [sys.executable, "-m", "brainlib", "generate", "--model", "smoke-AD", "--output", "subprocess",
           "--n", "4", "--seed", "9", "--out-root", str(out_root)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    gen = out_root / "smoke-AD" / "generated_images"
    for i in range(4):
        assert (gen / "in-process" / f"img_{i}.png").read_bytes() == (gen / "subprocess" / f"img_{i}.png").read_bytes()
    generate_to_folder("smoke-AD", "other-seed", 4, seed=10, out_root=out_root)
    for i in range(4):
        assert (gen / "other-seed" / f"img_{i}.png").read_bytes() != (gen / "in-process" / f"img_{i}.png").read_bytes()


def test_checkpoint_path_writes_into_its_run_and_size_resizes(out_root):
    ckpt = out_root / "smoke-NC" / "checkpoints" / "02-16px.safetensors"
    assert generate(out_root, "--model", ckpt, "--output", "big", "--n", 2, "--size", 64, "--class", "NC") == 0
    folder = out_root / "smoke-NC" / "generated_images" / "big"
    with Image.open(folder / "img_1.png") as im:
        assert im.size == (64, 64) and im.mode == "L"
        big = np.asarray(im, dtype=float)
    small = generate_to_folder(ckpt, "small", 2, out_root=out_root, class_name="NC")
    with Image.open(small / "img_1.png") as im:
        reference = np.asarray(im.resize((64, 64), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(big - reference).max() <= 1  # the same image, resized with antialiasing


def test_conditional_model_makes_the_class_asked_for(out_root):
    ad = generate_to_folder("smoke-both", "ad", 2, class_name="AD", out_root=out_root)
    nc = generate_to_folder("smoke-both", "nc", 2, class_name="NC", out_root=out_root)
    assert (ad / "img_0.png").read_bytes() != (nc / "img_0.png").read_bytes()


@pytest.mark.parametrize("args, words", [
    (["--model", "no-such-run", "--output", "x", "--n", "3"], "no run or checkpoint named 'no-such-run'"),
    (["--model", "smoke-AD", "--output", "x", "--n", "0"], "--n must be a positive number"),
    (["--model", "smoke-AD", "--output", "x", "--n", "-2"], "--n must be a positive number"),
    (["--model", "smoke-AD", "--output", "x", "--n", "3", "--class", "NC"], "trained on AD only and cannot make NC"),
    (["--model", "smoke-both", "--output", "x", "--n", "3"], "conditional: choose a class"),
    (["--model", "smoke-AD", "--output", "../x", "--n", "3"], "plain folder name"),
    (["--model", "smoke-AD", "--output", "x", "--n", "3", "--size", "0"], "--size must be a positive"),
])
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(out_root, capsys, args, words):
    before = snapshot(out_root)
    assert generate(out_root, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainlib generate: error:") and words in err
    assert snapshot(out_root) == before


def test_existing_output_is_never_overwritten(out_root, capsys):
    assert generate(out_root, "--model", "smoke-AD", "--output", "mine", "--n", 2) == 0
    mine = out_root / "smoke-AD" / "generated_images" / "mine"
    (mine / "notes.txt").write_text("my annotations")
    before = snapshot(out_root)
    assert generate(out_root, "--model", "smoke-AD", "--output", "mine", "--n", 3, "--seed", 5) == 2
    err = capsys.readouterr().err
    assert "already exists; choose another --output" in err and str(mine) in err
    assert snapshot(out_root) == before


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_an_error_midway_leaves_nothing_behind(out_root, monkeypatch, error):
    import brainlib.synthesis.sampling as sampling

    calls = []

    def failing_write(images, folder, **kw):
        calls.append(folder)
        if len(calls) == 2:
            raise error
        return original(images, folder, **kw)

    original = sampling.write_pngs
    monkeypatch.setattr(sampling, "write_pngs", failing_write)
    generated = RunDir.named("smoke-AD", out_root).generated_images("interrupted").parent
    generated.mkdir(parents=True, exist_ok=True)
    before, entries = snapshot(out_root), sorted(generated.iterdir())
    with pytest.raises(type(error)):
        generate_to_folder("smoke-AD", "interrupted", 5, out_root=out_root, batch_size=2)
    assert len(calls) == 2 and calls[0].name.startswith(".interrupted.")  # written into a hidden folder
    assert snapshot(out_root) == before and sorted(generated.iterdir()) == entries  # no folder, hidden or not


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_generated_folder_follows_the_umask(out_root, umask):
    old = os.umask(umask)
    try:
        folder = generate_to_folder("smoke-AD", f"umask{umask:03o}", 1, out_root=out_root)
    finally:
        os.umask(old)
    assert folder == RunDir.named("smoke-AD", out_root).generated_images(f"umask{umask:03o}")
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # 0755 under umask 022, as every other folder


def test_checkpoint_path_relative_to_out_root_and_run_folder(out_root):
    rel = generate_to_folder("smoke-AD/checkpoints/02-16px.safetensors", "rel", 1, out_root=out_root)
    by_folder = generate_to_folder(out_root / "smoke-AD", "by-folder", 1, out_root=out_root)
    assert rel == out_root / "smoke-AD" / "generated_images" / "rel"
    assert by_folder == out_root / "smoke-AD" / "generated_images" / "by-folder"
    assert (rel / "img_0.png").read_bytes() == (by_folder / "img_0.png").read_bytes()


@pytest.mark.parametrize("args, words", [
    (["--truncation", "nan"], "argument --truncation: must be a number from 0 to 1 (got 'nan')"),
    (["--truncation", "5"], "argument --truncation: must be a number from 0 to 1 (got '5')"),
    (["--truncation", "-2"], "argument --truncation: must be a number from 0 to 1 (got '-2')"),
    (["--truncation", "inf"], "argument --truncation: must be a number from 0 to 1 (got 'inf')"),
    (["--seed", "-1"], "argument --seed: must be a whole number, 0 or more (got '-1')"),
])
def test_psi_and_seed_are_checked_where_parsed(out_root, capsys, args, words):
    before = snapshot(out_root)
    with pytest.raises(SystemExit) as e:
        generate(out_root, "--model", "smoke-AD", "--output", "x", "--n", 2, *args)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"brainlib generate: error: {words}"
    assert snapshot(out_root) == before
    with pytest.raises(ValueError, match=r"--truncation \(psi\) must be a number from 0 to 1 \(got nan\)"):
        generate_to_folder("smoke-AD", "x", 2, psi=float("nan"), out_root=out_root)


def test_size_and_n_are_bounded_before_anything_is_written(out_root, capsys):
    before = snapshot(out_root)
    assert generate(out_root, "--model", "smoke-AD", "--output", "x", "--n", 2, "--size", 1025) == 2
    assert "--size 1025 is too large for a model trained at 16 px; at most 1024" in capsys.readouterr().err
    assert generate(out_root, "--model", "smoke-AD", "--output", "x", "--n", 10**13) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10000000000000 files of up to 1.3 kB need up to" in err and "free" in err
    assert snapshot(out_root) == before


def test_a_full_disk_midway_is_one_line_and_leaves_nothing(out_root, capsys, monkeypatch):

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    before = snapshot(out_root)
    assert generate(out_root, "--model", "smoke-AD", "--output", "full", "--n", 3) == 2
    folder = out_root / "smoke-AD" / "generated_images" / "full"
    assert capsys.readouterr().err == f"brainlib generate: error: {folder}: the disk is full\n"
    monkeypatch.undo()
    assert snapshot(out_root) == before and not list(folder.parent.glob(".full*"))
