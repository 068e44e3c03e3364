"""brainlib.data.phantom: the embedded dataset is deterministic, varied, ADNI-shaped, and its
classes differ in the expected direction by a visible but imperfect margin."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import brainlib.data.phantom as phantom


def _pngs(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*.png"))


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _pngs(root)}


def _dark_central_fraction(img: np.ndarray) -> float:
    """Share of dark (CSF-like) pixels in the central box where the lateral ventricles lie."""
    h, w = img.shape
    box = img[int(0.3 * h):int(0.7 * h), int(0.35 * w):int(0.65 * w)]
    return float((box < 0.3 * np.percentile(img, 99)).mean())


def test_layout_size_and_metadata(tiny_phantom):
    root = Path(tiny_phantom)
    assert root.name == "AD_NC"
    for split, n in (("train", 19), ("test", 5)):
        for c in ("AD", "NC"):
            assert len(list((root / split / c).glob("*.png"))) == n
    with Image.open(_pngs(root)[0]) as im:
        assert im.size == (256, 240) and im.mode == "L"
    meta = json.loads((root / "phantom.json").read_text())
    assert meta["n_per_class"] == 24 and meta["orientation"] == "axial" and meta["seed"] == 0
    assert 0.0 <= meta["logistic_regression_32px_test_accuracy"] <= 1.0
    assert not list(root.parent.glob(".AD_NC-building-*"))  # the staging folder is gone


def test_images_look_like_skull_stripped_slices(tiny_phantom):
    img = np.asarray(Image.open(_pngs(Path(tiny_phantom))[0])).astype(float)
    assert img[:8, :8].mean() < 15 and img[-8:, -8:].mean() < 15  # dark background corners
    brain = img > 40
    assert 0.35 < brain.mean() < 0.8  # the brain fills much of the frame
    rows, cols = np.nonzero(brain)
    assert abs(rows.mean() - 120) < 25 and abs(cols.mean() - 128) < 25  # centred
    assert img.max() > 200


def test_same_seed_same_bytes_in_any_number_of_workers(tmp_path, tiny_phantom):
    one = phantom.build_phantom(tmp_path / "a", n_per_class=24, seed=0, workers=1, progress=False)
    two = phantom.build_phantom(tmp_path / "b", n_per_class=24, seed=0, workers=2, progress=False)
    assert _digest(one) == _digest(two) == _digest(Path(tiny_phantom))
    other = phantom.build_phantom(tmp_path / "c", n_per_class=3, seed=1, workers=1, progress=False)
    first = {k: v for k, v in _digest(one).items() if k in _digest(other)}
    assert first and all(_digest(other)[k] != v for k, v in first.items())


def test_no_two_images_identical(tiny_phantom):
    images = [np.asarray(Image.open(p)) for p in _pngs(Path(tiny_phantom))]
    flat = np.stack(images).reshape(len(images), -1).astype(np.int16)
    assert len({hashlib.sha256(a.tobytes()).hexdigest() for a in flat}) == len(images)
    diffs = [np.abs(flat[i] - flat[j]).mean() for i in range(0, len(flat), 7) for j in range(i + 1, len(flat), 5)]
    assert min(diffs) > 2.0  # different brains, not the same one with noise


def test_atrophy_enlarges_ventricles_on_the_same_brain():
    dark = []
    for atrophy in (0.0, 0.6, 1.5):
        rng = np.random.default_rng(7)  # same slice, deformation and noise: only atrophy changes
        dark.append(_dark_central_fraction(phantom.render_slice(rng, atrophy)))
    assert dark[0] < dark[1] < dark[2]
    assert dark[2] > 1.3 * dark[0]


def test_ad_has_more_central_csf_than_nc_on_average(tiny_phantom):
    root = Path(tiny_phantom)
    means = {c: np.mean([_dark_central_fraction(np.asarray(Image.open(p)).astype(float))
                         for p in root.glob(f"*/{c}/*.png")]) for c in ("AD", "NC")}
    assert means["AD"] > 1.15 * means["NC"]


def test_classes_separable_but_not_trivially(tmp_path):
    root = phantom.build_phantom(tmp_path, n_per_class=200, seed=0, workers=2, progress=False)
    accuracy = phantom.read_metadata(root)["logistic_regression_32px_test_accuracy"]
    assert 0.6 < accuracy < 0.97
    assert phantom.read_metadata(root)["logistic_regression_test_images"] == 80


@pytest.mark.parametrize("orientation", ["sagittal", "coronal"])
def test_other_orientations_render_centred_brains(orientation):
    img = phantom.render_slice(np.random.default_rng(0), 1.0, orientation)
    assert img.shape == (240, 256) and img.dtype == np.uint8
    brain = img > 40
    rows, cols = np.nonzero(brain)
    assert 0.3 < brain.mean() < 0.85 and abs(rows.mean() - 120) < 30 and abs(cols.mean() - 128) < 30


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="orientation"):
        phantom.build_phantom(n_per_class=2, orientation="oblique")
    with pytest.raises(ValueError, match="n_per_class"):
        phantom.build_phantom(n_per_class=1)


def test_interrupted_build_leaves_no_dataset(tmp_path, monkeypatch):
    def fail(job):
        raise KeyboardInterrupt
    monkeypatch.setattr(phantom, "_write_images", fail)
    with pytest.raises(KeyboardInterrupt):
        phantom.build_phantom(tmp_path, n_per_class=4, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_an_existing_dataset(tmp_path):
    first = phantom.build_phantom(tmp_path, n_per_class=3, seed=0, workers=1, progress=False)
    second = phantom.build_phantom(tmp_path, n_per_class=2, seed=0, workers=1, progress=False)
    assert first == second and len(_pngs(second)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AD_NC"]


def test_ensure_default_dataset_builds_once_under_the_project(tmp_path, monkeypatch):
    monkeypatch.setattr(phantom, "project_root", lambda: tmp_path)
    calls = []
    real_build = phantom.build_phantom

    def small_build(out=None, **kw):
        calls.append(out)
        return real_build(out, n_per_class=2, workers=1, progress=False)
    monkeypatch.setattr(phantom, "build_phantom", small_build)
    root = phantom.ensure_default_dataset()
    assert root == tmp_path / "data" / "phantom" / "AD_NC" and (root / "phantom.json").exists()
    assert phantom.ensure_default_dataset() == root and calls == [tmp_path / "data" / "phantom"]


def test_build_without_replace_keeps_a_finished_dataset(tmp_path):
    first = phantom.build_phantom(tmp_path, n_per_class=3, seed=0, workers=1, progress=False)
    before = _digest(first)
    phantom.build_phantom(tmp_path, n_per_class=2, seed=5, workers=1, progress=False, replace=False)
    assert _digest(first) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AD_NC"]
