"""Projection of a real slice into a smoke conditional model trained here."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from smoke_conditional import train_smoke

from brainlib.cli import main
from brainlib.data.dataset import load_dataset
from brainlib.synthesis.projection import POOR_FIT_PSNR, load_latent, load_slice, project, psnr
from brainlib.synthesis.sampling import load, synthesize, to_uint8


@pytest.fixture(scope="module")
def out_root(tmp_path_factory, tiny_phantom, tiny_dataset_cache) -> Path:
    root = tmp_path_factory.mktemp("projection_runs")
    train_smoke(root, tiny_phantom, tiny_dataset_cache)
    return root


@pytest.fixture(scope="module")
def model(out_root):
    return load("smoke-both", out_root=out_root)


@pytest.fixture(scope="module")
def slice_path(tiny_phantom) -> Path:
    return sorted((tiny_phantom / "test" / "NC").iterdir())[0]


def test_the_slice_is_preprocessed_as_the_training_data(model, slice_path, tiny_phantom, tmp_path):
    G, cfg, _ = model
    ds = load_dataset(tiny_phantom, splits=["test"], image_size=16, cache_dir=tmp_path, progress=False)
    expected = ds.images[ds.sources.index(str(slice_path))]
    x = load_slice(slice_path, cfg)
    assert x.shape == (1, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x)[0], expected)


@pytest.mark.parametrize("options", [{}, {"per_layer": True}, {"optimise_noise": True}])
def test_projection_improves_psnr_over_its_start(model, slice_path, options):
    G, cfg, _ = model
    target = load_slice(slice_path, cfg)
    result = project(G, target, class_name="NC", steps=60, **options)
    assert result.ws.shape == (1, G.num_ws_at(16), cfg.w_dim)
    assert result.psnr > result.start_psnr + 1.0
    assert result.curve[0]["step"] == 0 and result.curve[-1]["step"] == 60
    assert (result.noise is not None) == bool(options.get("optimise_noise"))
    if not options.get("optimise_noise"):  # the styles alone remake the image
        again = synthesize(G, result.ws, noise_mode="const").clamp(-1, 1)
        assert torch.allclose(again, result.image, atol=1e-5)


def test_project_command_writes_image_latent_curve_and_quality(out_root, model, slice_path, tmp_path, capsys):
    G = model[0]
    out = tmp_path / "fit"
    assert main(["project", "--model", "smoke-both", "--image", str(slice_path), "--steps", "40", "--class", "NC",
                 "--out", str(out), "--out-root", str(out_root)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fit_curve.png", "latent.safetensors", "projected.png",
                                                     "projection.json", "target.png"]
    report = json.loads((out / "projection.json").read_text())
    shown = float(re.search(r"PSNR (\d+\.\d\d) dB", printed)[1])  # the printed figure, to 2 decimals
    assert abs(shown - report["psnr_db"]) <= 0.0051 and report["psnr_db"] > report["start_psnr_db"]
    assert 0 < report["ssim"] <= 1 and report["poor_fit"] == (report["psnr_db"] < POOR_FIT_PSNR)
    assert len(report["curve"]) == 41 and report["steps"] == 40
    ws = load_latent(out)
    projected = np.asarray(Image.open(out / "projected.png")).astype(int)
    remade = to_uint8(synthesize(G, ws, noise_mode="const").clamp(-1, 1))[0]
    assert np.abs(projected - remade).max() <= 1
    assert set(load_file(str(out / "latent.safetensors"))) == {"ws"}
    with Image.open(out / "fit_curve.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_a_slice_the_model_cannot_make_is_reported_as_a_poor_fit(out_root, tmp_path, capsys):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert main(["project", "--model", "smoke-both", "--image", str(tmp_path / "noise.png"), "--steps", "10",
                 "--out", str(tmp_path / "fit"), "--out-root", str(out_root)]) == 0
    printed = capsys.readouterr().out
    assert f"POOR FIT (below {POOR_FIT_PSNR:g} dB)" in printed
    assert json.loads((tmp_path / "fit" / "projection.json").read_text())["poor_fit"] is True


def test_bad_image_and_existing_folder_are_refused_without_writing(out_root, slice_path, tmp_path, capsys):
    bad = tmp_path / "scan.png"
    bad.write_text("not an image")
    out = tmp_path / "fit"
    assert main(["project", "--model", "smoke-both", "--image", str(bad), "--out", str(out),
                 "--out-root", str(out_root)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot be used as a slice" in err and not out.exists()
    assert main(["project", "--model", "smoke-both", "--image", str(tmp_path / "missing.png"), "--out", str(out),
                 "--out-root", str(out_root)]) == 2
    assert "does not exist" in capsys.readouterr().err
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["project", "--model", "smoke-both", "--image", str(slice_path), "--out", str(out),
                 "--out-root", str(out_root)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_psnr_is_measured_in_0_1_over_the_whole_frame():
    x = torch.rand(2, 1, 8, 8) - 0.5
    assert torch.allclose(psnr(x, x + 0.2), torch.tensor([20.0, 20.0]), atol=1e-4)  # error 0.1 in [0, 1]
    assert (psnr(x, x) > 100).all() and (psnr(x, x + 0.1) > psnr(x, x + 0.4)).all()


def test_ssim_is_one_for_identical_images_and_the_luminance_term_for_flat_ones():
    from brainlib.eval.metrics import ssim

    x = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    a, b = torch.full((1, 1, 16, 16), -0.5), torch.full((1, 1, 16, 16), 0.5)  # 0.25 and 0.75 in [0, 1]
    expected = (2 * 0.25 * 0.75 + 1e-4) / (0.25**2 + 0.75**2 + 1e-4)
    assert float(ssim(a, b)[0]) == pytest.approx(expected, rel=1e-3)  # float32 variances: E[x^2] - E[x]^2
    assert float(ssim(x, x.flip(-1)).mean()) < 0.5


def test_a_volume_needs_a_slice_index_and_gives_that_slice(model, tmp_path):
    import nibabel as nib

    from brainlib.data.decoding import decode_nifti

    cfg = model[1]
    volume = np.zeros((20, 20, 12), np.float32)
    volume[4:16, 4:16, :] = np.linspace(1, 2, 12)  # a bright square whose level changes along z
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"volume with \d+ usable slices .* choose one with slice_index"):
        load_slice(path, cfg)
    k, expected = decode_nifti(path, 16, False)[1]
    assert np.array_equal(to_uint8(load_slice(path, cfg, slice_index=k))[0], expected)
    with pytest.raises(ValueError, match="choose one"):
        load_slice(path, cfg, slice_index=0)  # outside the band the loader takes
