"""brainlib.data.colin27: the second development set builds offline from Debian's mricron-data in
the layout the loader reads, its classes differ in the expected direction, and its noise is at
the stated SNR. Without mricron-data these tests fail with the install instruction (`make test`
installs it when it can)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import brainlib.data.colin27 as colin27
from brainlib.cli import main
from brainlib.data.dataset import load_dataset

PER_CLASS = 24  # 19 train and 5 test images per class, as the tiny phantom


@pytest.fixture(scope="module")
def tiny_colin27(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("colin27")
    return colin27.build_colin27(out, n_per_class=PER_CLASS, seed=0, workers=1, progress=False)


def _dark_central_fraction(img: np.ndarray) -> float:
    """Share of dark (CSF-like) pixels in the central box where the lateral ventricles lie."""
    h, w = img.shape
    box = img[int(0.3 * h):int(0.7 * h), int(0.35 * w):int(0.65 * w)].astype(float)
    return float((box < 0.3 * np.percentile(img, 99)).mean())


def test_layout_metadata_and_the_loader_reads_it(tiny_colin27, tmp_path):
    root = tiny_colin27
    assert root.name == "AD_NC" and not list(root.parent.glob(".AD_NC-building-*"))
    for split, n in (("train", 19), ("test", 5)):
        for c in ("AD", "NC"):
            assert len(list((root / split / c).glob("*.png"))) == n
    with Image.open(next(root.glob("train/AD/*.png"))) as im:
        assert im.size == (256, 240) and im.mode == "L"
    meta = json.loads((root / "colin27.json").read_text())
    assert meta == colin27.read_metadata(root) and meta["n_per_class"] == PER_CLASS
    assert "ch2better" in meta["source"] and len(meta["scanners"]) == len(colin27.SCANNERS)
    ds = load_dataset(root, image_size=64, cache_dir=tmp_path, progress=False)
    assert ds.images.shape == (2 * PER_CLASS, 64, 64) and ds.class_counts() == {"AD": PER_CLASS, "NC": PER_CLASS}
    assert not ds.skipped


def test_images_are_skull_stripped_brains_of_real_texture(tiny_colin27):
    images = [np.asarray(Image.open(p)).astype(float) for p in sorted(tiny_colin27.glob("*/*/*.png"))]
    for img in images:
        assert img[:8, :8].max() == 0 and img[-8:, -8:].max() == 0  # background outside the brain mask
        brain = img > 40
        assert 0.3 < brain.mean() < 0.8 and img.max() > 180
        rows, cols = np.nonzero(brain)
        assert abs(rows.mean() - 120) < 30 and abs(cols.mean() - 128) < 30
    flat = np.stack(images[::4]).reshape(-1, 240 * 256)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(len(flat)) for j in range(i)) > 2.0


def test_same_seed_same_image_and_scanners_differ():
    a, b = (colin27.render_slice(np.random.default_rng(3), 0.5, colin27.SCANNERS[0]) for _ in range(2))
    assert a.dtype == np.uint8 and a.shape == (240, 256) and np.array_equal(a, b)
    other = colin27.render_slice(np.random.default_rng(3), 0.5, colin27.SCANNERS[1])
    assert np.abs(a.astype(float) - other).mean() > 2.0


def test_atrophy_enlarges_the_ventricles_on_the_same_brain():
    dark = [_dark_central_fraction(colin27.render_slice(np.random.default_rng(7), atrophy, colin27.SCANNERS[0]))
            for atrophy in (0.0, 0.6, 1.5)]
    assert dark[0] < dark[1] < dark[2] and dark[2] > 1.3 * dark[0]


def test_ad_slices_have_more_central_csf_than_nc_ones(tiny_colin27):
    fractions = {c: [_dark_central_fraction(np.asarray(Image.open(p))) for p in tiny_colin27.glob(f"*/{c}/*.png")]
                 for c in ("AD", "NC")}
    assert np.mean(fractions["AD"]) > 1.1 * np.mean(fractions["NC"])  # ~1.3x expected; slices vary a lot


def test_noise_is_at_each_scanners_stated_snr(tiny_colin27):
    """Two acquisitions that differ only in their noise: SNR = white-matter mean / (std of the difference / sqrt 2)."""
    for k, scanner in enumerate(colin27.SCANNERS):
        measured = []
        for r in range(3):
            first, second = (colin27.render_slice(np.random.default_rng([11, k, r]), 0.0, scanner,
                                                  noise_rng=np.random.default_rng([12, k, r, draw]))
                             for draw in (0, 1))
            measured.append(colin27.measure_snr(first, second))
        assert np.mean(measured) == pytest.approx(scanner.snr, rel=0.12), scanner.name
    recorded = colin27.read_metadata(tiny_colin27)["snr_measured"]
    assert recorded.keys() == {s.name for s in colin27.SCANNERS}
    for s in colin27.SCANNERS:
        assert recorded[s.name] == pytest.approx(s.snr, rel=0.12)


def test_without_mricron_data_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(colin27, "COLIN27", tmp_path / "no" / "ch2better.nii.gz")
    with pytest.raises(colin27.Colin27Missing, match="apt-get install mricron-data"):
        colin27.build_colin27(tmp_path / "out", n_per_class=2, progress=False)
    assert main(["data", "colin27", "--n", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install mricron-data" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_command_builds_the_set(tmp_path, capsys):
    assert main(["data", "colin27", "--n", "2", "--seed", "4", "--out", str(tmp_path)]) == 0
    assert str(tmp_path / "AD_NC") in capsys.readouterr().out
    assert len(list((tmp_path / "AD_NC").glob("*/*/*.png"))) == 4
    assert colin27.read_metadata(tmp_path / "AD_NC")["seed"] == 4


def test_development_sets_by_name_build_once_under_the_project(tmp_path, monkeypatch):
    from brainlib.data.devsets import development_set
    monkeypatch.setattr(colin27, "project_root", lambda: tmp_path)
    calls = []
    real_build = colin27.build_colin27

    def small_build(out=None, **kw):
        calls.append(out)
        return real_build(out, n_per_class=2, workers=1, progress=False)
    monkeypatch.setattr(colin27, "build_colin27", small_build)
    root = development_set("colin27")
    assert root == tmp_path / "data" / "colin27" / "AD_NC" and (root / "colin27.json").exists()
    assert development_set("colin27") == root and calls == [tmp_path / "data" / "colin27"]
    with pytest.raises(ValueError, match="phantom, colin27"):
        development_set("adni")
