"""brainlib.data.dataset: layouts, class folders, splits, NIfTI slicing, errors, the cache, model input."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import brainlib.data.dataset as data
from brainlib.config import preset
from brainlib.data import census, decoding, slices
from brainlib.data.cache import CacheWarning
from brainlib.data.dataset import load_dataset, to_model_input
from brainlib.data.discovery import DataError, DataWarning
from tests.bad_inputs import brain_like, nifti_volume, save_nifti


def _write(folder, n, seed=0, suffix=".jpeg", size=(64, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(brain_like(size[1], size[0], seed=seed + i)).save(folder / f"img_{i}{suffix}")


def _load(root, tmp_path, **kw):
    kw.setdefault("image_size", 32)
    return load_dataset(root, cache_dir=tmp_path / "cache", progress=False, **kw)


def test_adni_layout_combines_splits_and_labels_classes(tmp_path):
    root = tmp_path / "AD_NC"
    _write(root / "train" / "AD", 3)
    _write(root / "test" / "AD", 1)
    _write(root / "train" / "NC", 2)
    _write(root / "test" / "NC", 2)
    ds = _load(root, tmp_path)
    assert ds.images.shape == (8, 32, 32) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.class_counts() == {"AD": 4, "NC": 4}
    assert sorted(ds.splits.tolist()) == ["test"] * 3 + ["train"] * 5
    for source, label in zip(ds.sources, ds.labels, strict=True):
        assert (f"{os.sep}AD{os.sep}" in source) == (label == 1)
    train_only = _load(root, tmp_path, splits=["train"])
    assert len(train_only) == 5 and set(train_only.splits) == {"train"}
    ad_test = _load(root, tmp_path, classes=["AD"], splits=["test"])
    assert len(ad_test) == 1 and ad_test.labels.tolist() == [1]


def test_class_folder_layout_with_renamed_and_case_insensitive_folders(tmp_path):
    root = tmp_path / "oasis"
    _write(root / "Demented", 2, suffix=".png")
    _write(root / "nondemented", 3, suffix=".png")
    ds = _load(root, tmp_path, class_dirs={"AD": "demented", "NC": "NonDemented"})
    assert ds.class_counts() == {"AD": 2, "NC": 3}
    assert set(ds.splits) == {""}
    with pytest.warns(DataWarning, match="no split folders"):
        _load(root, tmp_path, class_dirs={"AD": "demented", "NC": "NonDemented"}, splits=["train"])


def test_plain_folder_is_one_class_named_by_the_caller(tmp_path):
    root = tmp_path / "scans"
    _write(root, 4, suffix=".bmp")
    ds = _load(root, tmp_path, classes=["NC"])
    assert len(ds) == 4 and set(ds.labels.tolist()) == {0}
    with pytest.raises(DataError, match=r"can only be one class") as err:
        _load(root, tmp_path)
    assert str(root) in str(err.value) and "accepted layouts" in str(err.value)


def test_unzipped_wrapper_folder_is_descended(tmp_path):
    _write(tmp_path / "download" / "AD_NC" / "train" / "AD", 2)
    _write(tmp_path / "download" / "AD_NC" / "train" / "NC", 2)
    assert len(_load(tmp_path / "download", tmp_path)) == 4


@pytest.mark.parametrize("setup, match", [
    (lambda r: None, "does not exist"),
    (lambda r: (r / "stuff").mkdir(parents=True) or (r / "other").mkdir(), "no class folders"),
    (lambda r: _write(r / "AD", 2) or (r / "NC").mkdir(), "class NC has no image files"),
    (lambda r: _write(r / "AD", 2), "no folder 'NC' for class NC"),
    (lambda r: _write(r / "train" / "AD", 1) or _write(r / "train" / "NC", 1), "split 'valid' not found"),
])
def test_bad_dataset_folders_raise_clear_errors(tmp_path, setup, match):
    root = tmp_path / "dataset"
    setup(root)
    with pytest.raises(DataError, match=match) as err:
        _load(root, tmp_path, splits=["valid"] if "split" in match else None)
    assert str(root) in str(err.value)
    assert "accepted layouts" in str(err.value) and "{train,test}/{AD,NC}" in str(err.value)


def test_a_preset_missing_its_split_says_how_to_read_every_split(tmp_path, capsys):
    from brainlib.cli import main
    _write(tmp_path / "d" / "test" / "AD", 8)
    args = ["train", "--preset", "smoke", "--class", "AD", "--data", str(tmp_path / "d"),
            "--out-root", str(tmp_path / "runs")]  # smoke reads the train split only
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "split 'train' not found" in err and "accepted layouts" in err
    assert "set splits=None (on the command line: --set splits=null)" in err
    assert main(args + ["--set", "splits=null"]) == 0  # the way out works
    assert (tmp_path / "runs" / "smoke-AD" / "checkpoints" / "latest.json").is_file()
    assert "8 images of AD" in capsys.readouterr().out


def test_max_per_class_takes_train_first(tmp_path):
    _write(tmp_path / "d" / "train" / "AD", 3)
    _write(tmp_path / "d" / "test" / "AD", 3, seed=10)
    ds = _load(tmp_path / "d", tmp_path, classes=["AD"], max_per_class=2)
    assert len(ds) == 2 and set(ds.splits) == {"train"}


def test_images_are_resized_greyscale_with_optional_padding(tmp_path):
    folder = tmp_path / "d" / "AD"
    folder.mkdir(parents=True)
    wide = np.full((20, 80, 3), 200, np.uint8)  # a wide white RGB bar
    Image.fromarray(wide).save(folder / "wide.png")
    stretched = _load(tmp_path / "d", tmp_path, classes=["AD"], image_size=16)
    assert stretched.images.shape == (1, 16, 16) and np.all(np.abs(stretched.images[0].astype(int) - 200) <= 1)
    padded = _load(tmp_path / "d", tmp_path, classes=["AD"], image_size=16, pad_to_square=True)
    column = padded.images[0, :, 8].astype(int)
    # black bars above and below (Lanczos rings a little)
    assert column[0] == 0 and column[-1] == 0 and abs(column[8] - 200) <= 8


def test_nifti_volume_sliced_over_band_skipping_empty_slices(tmp_path):
    folder = tmp_path / "vol" / "AD"
    folder.mkdir(parents=True)
    vol = nifti_volume((20, 24, 16))  # the blob covers axis-2 slices 4..11 (|z - 8| < 5)
    save_nifti(folder / "subject.nii.gz", vol)
    save_nifti(folder / "subject_b.nii", vol)
    full = _load(tmp_path / "vol", tmp_path, classes=["AD"], nifti_band=(0.0, 1.0))
    indices = sorted({int(s.split("#")[1]) for s in full.sources})
    assert indices == list(range(4, 13)) or indices == list(range(4, 12))  # empty slices left out
    assert len(full) == 2 * len(indices)
    assert all(s.split("#")[0].endswith((".nii.gz", ".nii")) for s in full.sources)
    band = _load(tmp_path / "vol", tmp_path, classes=["AD"], nifti_band=(0.5, 0.75))
    assert sorted({int(s.split("#")[1]) for s in band.sources}) == list(range(8, 12))
    coronal = _load(tmp_path / "vol", tmp_path, classes=["AD"], nifti_axis=1, nifti_band=(0.5, 0.55))
    assert {int(s.split("#")[1]) for s in coronal.sources} == {12, 13}
    mid = full.images[full.sources.index(f"{folder / 'subject.nii.gz'}#8")]
    assert mid.max() > 200 and mid[0, 0] == 0  # bright blob, dark corner


def test_nifti_slices_are_views_whatever_the_memory_order():
    """A slice never copies the volume (np.take did, once per slice, for nibabel's column-major arrays)."""
    volume = nifti_volume((20, 24, 16))
    for array in (volume, np.asfortranarray(volume)):
        for axis in range(3):
            view = slices._nifti_slice(array, axis, 7)
            assert np.shares_memory(view, array) and view.base is not None
            np.testing.assert_array_equal(view, np.take(volume, 7, axis=axis).T[::-1])


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    _write(tmp_path / "d" / "AD", 3)
    _write(tmp_path / "d" / "NC", 3, seed=5)
    first = _load(tmp_path / "d", tmp_path)
    calls = []
    real = decoding.decode_file
    monkeypatch.setattr(decoding, "decode_file", lambda *a: calls.append(a[0]) or real(*a))
    second = _load(tmp_path / "d", tmp_path)
    assert calls == []
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(first.images, second.images)
    assert second.sources == first.sources and second.cache_path == first.cache_path
    other_size = _load(tmp_path / "d", tmp_path, image_size=16)  # options are part of the key
    assert len(calls) == 6 and other_size.images.shape[1:] == (16, 16)
    touched = tmp_path / "d" / "AD" / "img_1.jpeg"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    calls.clear()
    _load(tmp_path / "d", tmp_path)
    assert len(calls) == 6  # a changed mtime invalidates the cached array


def _zero_pixel_body(npy):
    with open(npy, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        read_header(f)  # leaves f at the first pixel
        body = npy.stat().st_size - f.tell()
        f.write(bytes(body))


def _flip_64_bytes(npy):
    with open(npy, "r+b") as f:
        f.seek(npy.stat().st_size - 200)
        data = f.read(64)
        f.seek(npy.stat().st_size - 200)
        f.write(bytes(b ^ 0xFF for b in data))


def _edit_a_label(npy):
    meta_path = npy.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["labels"][0] = 1 - meta["labels"][0]
    meta_path.write_text(json.dumps(meta))


def _drop_checksums(npy):  # a cache written before checksums were recorded
    meta_path = npy.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["checksums"]
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("tamper, reason", [
    (_zero_pixel_body, "the pixels do not match their checksum"),
    (_flip_64_bytes, "the pixels do not match their checksum"),
    (_edit_a_label, "does not match its checksum"),
    (lambda npy: npy.write_bytes(b""), "the array is empty (0 bytes)"),
    (lambda npy: npy.write_bytes(npy.read_bytes()[:-1000]), "the array cannot be read"),
    (lambda npy: npy.with_suffix(".json").write_text('{"labels": [1, 0'), "cannot be read (JSONDecodeError"),
    (lambda npy: npy.with_suffix(".json").unlink(), "cannot be read (FileNotFoundError"),
    (_drop_checksums, "holds no checksums"),
])
def test_a_damaged_cache_is_rebuilt_with_a_notice_never_used(tmp_path, tamper, reason):
    _write(tmp_path / "d" / "AD", 3)
    _write(tmp_path / "d" / "NC", 3, seed=5)
    first = _load(tmp_path / "d", tmp_path)
    images, labels = np.array(first.images), first.labels.copy()
    tamper(first.cache_path)
    with pytest.warns(CacheWarning) as caught:
        again = _load(tmp_path / "d", tmp_path)
    message = str(caught[0].message)
    assert str(first.cache_path) in message and reason in message and "\n" not in message
    np.testing.assert_array_equal(again.images, images)
    np.testing.assert_array_equal(again.labels, labels)
    assert again.sources == first.sources
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # the rebuilt cache passes its checks
        np.testing.assert_array_equal(_load(tmp_path / "d", tmp_path).images, images)


def test_skipped_files_are_remembered_by_the_cache(tmp_path):
    _write(tmp_path / "d" / "AD", 2)
    (tmp_path / "d" / "AD" / "broken.jpeg").write_text("nope")
    for _ in range(2):
        with pytest.warns(DataWarning, match=r"1 files under .* skipped: .*broken.jpeg"):
            ds = _load(tmp_path / "d", tmp_path, classes=["AD"])
        assert [os.path.basename(p) for p, _ in ds.skipped] == ["broken.jpeg"]


def test_to_model_input_area_downsamples_and_normalises():
    images = torch.zeros(2, 8, 8, dtype=torch.uint8)
    images[0, :4, :4] = 255  # top-left quarter white
    images[1, ::2] = 255  # alternating rows: averages to grey
    x = to_model_input(images, 2)
    assert x.shape == (2, 1, 2, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, 0], torch.tensor([[1.0, -1.0], [-1.0, -1.0]]))
    torch.testing.assert_close(x[1, 0], torch.full((2, 2), 0.0))
    same = to_model_input(images.unsqueeze(1), 8)
    assert same.min() == -1.0 and same.max() == 1.0 and same.shape == (2, 1, 8, 8)
    from_numpy = to_model_input(images.numpy(), 4)
    assert from_numpy.shape == (2, 1, 4, 4)
    up = to_model_input(images[:1], 16)  # bilinear: a blurred copy, still in [-1, 1]
    assert up.shape == (1, 1, 16, 16) and up[0, 0, 0, 0] == 1.0 and up[0, 0, -1, -1] == -1.0
    torch.testing.assert_close(to_model_input(x, 1), x.mean(dim=(2, 3), keepdim=True))  # float in, float out


def test_dataset_for_config_uses_the_config(tmp_path, tiny_phantom, monkeypatch):
    cfg = preset("smoke", data_root=str(tiny_phantom), class_name="both", max_images=5)
    ds = data.dataset_for_config(cfg, cache_dir=tmp_path / "cache", progress=False)
    assert ds.images.shape == (10, 16, 16) and ds.class_counts() == {"AD": 5, "NC": 5}
    assert set(ds.splits) == {"train"}  # the smoke preset trains on the train split
    everything = data.dataset_for_config(cfg.replace(max_images=None, class_name="NC"), splits=None,
                                         cache_dir=tmp_path / "cache", progress=False)
    assert everything.class_counts() == {"NC": 24} and set(everything.splits) == {"train", "test"}
    import brainlib.data.phantom
    monkeypatch.setattr(brainlib.data.phantom, "ensure_default_dataset", lambda: tiny_phantom)
    default = data.dataset_for_config(cfg.replace(data_root=None), cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(default.images, ds.images)


def test_census_counts_splits_classes_sizes_and_modes(tiny_phantom):
    report = census.census(tiny_phantom)
    assert report["layout"] == "adni" and report["total"] == 48
    assert report["counts"] == {"train": {"AD": 19, "NC": 19}, "test": {"AD": 5, "NC": 5}}
    assert report["sizes"] == {"256x240": 48} and report["modes"] == {"L": 48} and report["types"] == {".png": 48}
    text = census.format_census(report)
    assert str(tiny_phantom) in text and "train" in text and "(48 images)" in text
    assert str(tiny_phantom) not in census.format_census(report, show_root=False)


def test_loading_warns_nothing_on_a_clean_dataset(tiny_phantom, tiny_dataset_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        ds = load_dataset(tiny_phantom, image_size=64, cache_dir=tiny_dataset_cache, progress=False)
    assert len(ds) == 48 and ds.skipped == []


def test_dataset_figures(tiny_phantom, tiny_dataset_cache):
    from brainlib.data import figures as dataviz
    ds = load_dataset(tiny_phantom, image_size=64, cache_dir=tiny_dataset_cache, progress=False)
    means = dataviz.class_means(ds)
    assert set(means) == {"AD", "NC"} and means["AD"].shape == (64, 64)
    np.testing.assert_allclose(means["NC"], ds.images[ds.labels == 0].astype(np.float32).mean(0), rtol=1e-5)
    grid = dataviz.sample_grid(ds, per_class=4)
    assert len(grid.axes) == 8 and sum(len(ax.images) for ax in grid.axes) == 8
    hist = dataviz.intensity_histograms(ds)
    assert len(hist.axes[0].patches) == 2
    diff = dataviz.mean_and_difference(ds)
    assert [ax.get_title() for ax in diff.axes[:3]] == ["mean AD", "mean NC", "AD - NC"]
    import matplotlib.pyplot as plt
    plt.close("all")
