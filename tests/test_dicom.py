"""DICOM input: series written here from the MNI template must load exactly as the same volume in
NIfTI; bad files and inconsistent series are skipped with reasons; pydicom's bundled samples go
through the census and a smoke training run."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest

from brainlib.cli import main
from brainlib.data.census import census
from brainlib.data.dataset import load_dataset
from brainlib.data.discovery import DataWarning
from tests.dicom_files import copy_pydicom_samples, mni_volume, write_image, write_multiframe, write_series


@pytest.fixture(scope="module")
def mni():
    """The MNI T1 template at 8 mm, integer intensities 0..1000 (so int16 storage is exact)."""
    volume, affine = mni_volume(step=8)
    return np.round(volume / volume.max() * 1000), affine


def _load(root, tmp_path, **kw):
    return load_dataset(root, cache_dir=tmp_path / "cache", image_size=32, progress=False, **kw)


def _coronal_acquisition(volume, affine):
    """The same image with its voxel axes pointing left, inferior and posterior: written slice by
    slice along its third axis, the files' slice normal is the coronal axis, running backwards."""
    img = nib.Nifti1Image(volume, affine)
    ornt = nib.orientations.axcodes2ornt(("L", "I", "P"))
    moved = img.as_reoriented(nib.orientations.ornt_transform(nib.io_orientation(affine), ornt))
    return np.asarray(moved.dataobj, dtype=np.float32), moved.affine


def test_series_loads_exactly_as_the_same_volume_in_nifti(tmp_path, mni):
    volume, affine = mni
    (tmp_path / "nii" / "NC").mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "nii" / "NC" / "brain.nii.gz"))
    stored, stored_affine = _coronal_acquisition(volume, affine)
    n = stored.shape[2]
    names = [f"IM{i:04d}" for i in np.random.default_rng(0).permutation(n)]  # no extension, shuffled
    write_series(tmp_path / "dcm" / "NC" / "subject1", stored, stored_affine, "1.2.826.0.1.3680043.8.498.10",
                 slopes=[(0.25, 0.5, 1.0)[k % 3] for k in range(n)], names=names)
    write_multiframe(tmp_path / "multi" / "NC" / "enhanced.dcm", stored, stored_affine, "1.2.826.0.1.3680043.8.498.11",
                     frame_order=[int(i) for i in np.random.default_rng(1).permutation(n)])
    for axis, band in ((2, (0.25, 0.75)), (1, (0.0, 1.0))):
        reference = _load(tmp_path / "nii", tmp_path, classes=["NC"], nifti_axis=axis, nifti_band=band)
        assert len(reference) > 3
        for folder in ("dcm", "multi"):
            ds = _load(tmp_path / folder, tmp_path, classes=["NC"], nifti_axis=axis, nifti_band=band)
            assert ds.images.shape == reference.images.shape
            np.testing.assert_array_equal(ds.images, reference.images)  # order, orientation, rescale, scaling
            assert [s.rsplit("#", 1)[1] for s in ds.sources] == [s.rsplit("#", 1)[1] for s in reference.sources]
            assert all("#series=1.2.826.0.1.3680043.8.498.1" in s for s in ds.sources) and not ds.skipped


def test_rescale_slope_and_intercept_are_applied_per_file(tmp_path, mni, monkeypatch):
    volume, affine = mni
    write_series(tmp_path / "dcm" / "AD", volume, affine, "1.2.826.0.1.3680043.8.498.12",
                 slopes=[(0.25, 0.5, 1.0)[k % 3] for k in range(volume.shape[2])])
    rescaled = _load(tmp_path / "dcm", tmp_path, classes=["AD"])
    import pydicom.pixels
    monkeypatch.setattr(pydicom.pixels, "apply_modality_lut", lambda pixels, ds: pixels)
    raw = load_dataset(tmp_path / "dcm", cache_dir=tmp_path / "other", image_size=32, classes=["AD"], progress=False)
    assert np.abs(raw.images.astype(int) - rescaled.images).mean() > 5  # stored values alone are not the image


def test_bad_files_and_inconsistent_series_are_skipped_with_reasons(tmp_path, mni):
    volume, affine = mni
    nc = tmp_path / "data" / "NC"
    n = volume.shape[2]
    write_series(nc / "good", volume, affine, "1.2.826.0.1.3680043.8.498.20")
    gap = write_series(nc / "gap", volume, affine, "1.2.826.0.1.3680043.8.498.21")
    gap[n // 2].unlink()
    write_series(nc / "sizes", volume, affine, "1.2.826.0.1.3680043.8.498.22", sizes={3: (8, 8)})
    write_series(nc / "echo1", volume, affine, "1.2.826.0.1.3680043.8.498.23")
    write_series(nc / "echo2", volume, affine, "1.2.826.0.1.3680043.8.498.23")  # same series, same positions
    write_image(nc / "capture.dcm", np.arange(144).reshape(12, 12) * 5, "1.2.826.0.1.3680043.8.498.24")
    write_image(nc / "no_pixels.dcm", np.zeros((12, 12)), "1.2.826.0.1.3680043.8.498.25", pixel_data=False)
    shutil.copy(pydicom.data.get_testdata_file("reportsi.dcm", download=False), nc / "report.dcm")
    shutil.copy(pydicom.data.get_testdata_file("MR_truncated.dcm", download=False), nc / "truncated.dcm")
    short = write_multiframe(nc / "short_groups.dcm", volume, affine, "1.2.826.0.1.3680043.8.498.26")
    broken = pydicom.dcmread(short)
    del broken.PerFrameFunctionalGroupsSequence[-1]  # one frame without its position group
    broken.save_as(short)
    (nc / "notes.dcm").write_text("not a DICOM file")
    (nc / "README").write_text("scanner export")
    expected = {"gap/slice_000.dcm": "missing slices",
                "sizes/slice_000.dcm": "mixed image sizes 25x30 (23 files), 8x8 (1 file)",
                "echo1/slice_000.dcm": "lie at the same position", "no_pixels.dcm": "no pixel data",
                "report.dcm": "no pixel data (basic text sr storage)", "truncated.dcm": "pixel data cannot be decoded",
                "notes.dcm": "not a dicom file", "README": "not an image, nifti or dicom file",
                "short_groups.dcm": "unreadable dicom header: indexerror"}

    with pytest.warns(DataWarning, match="were skipped"):
        ds = _load(tmp_path / "data", tmp_path, classes=["NC"])
    reasons = {str(Path(p).relative_to(nc)): r.lower() for p, r in ds.skipped}
    for path, phrase in expected.items():
        assert phrase in reasons.get(path, ""), (path, reasons.get(path))
    assert set(reasons) == set(expected)
    reference = _load(tmp_path / "data" / "NC" / "good", tmp_path, classes=["NC"])
    assert len(ds) == len(reference) + 1  # the good series and the 2D capture
    assert str(nc / "capture.dcm") in ds.sources
    assert ds.images[ds.sources.index(str(nc / "capture.dcm"))].max() == 255

    report = census(tmp_path / "data")
    assert report["series"] == {"(no split)": {"NC": 2}}
    assert report["slices"] == {"(no split)": {"NC": len(reference) + 1}}
    assert report["counts"] == {"(no split)": {"NC": n + 1}} and report["types"] == {"dicom": n + 1}
    assert {s["path"] for s in report["skipped"]} == {str(p) for p, _ in ds.skipped}


def test_max_images_caps_series_never_cuts_one(tmp_path, mni):
    volume, affine = mni
    for i in range(3):
        write_series(tmp_path / "d" / "AD" / f"s{i}", volume, affine, f"1.2.826.0.1.3680043.8.498.3{i}")
    one = _load(tmp_path / "d", tmp_path, classes=["AD"], max_per_class=1)
    every = _load(tmp_path / "d", tmp_path, classes=["AD"])
    assert len(every) == 3 * len(one) and len({s.split("#")[1] for s in one.sources}) == 1
    np.testing.assert_array_equal(one.images, every.images[:len(one)])


def test_pydicom_samples_and_a_written_series_through_census_and_smoke_training(tmp_path, mni, capsys):
    volume, affine = mni
    root = tmp_path / "data"
    write_series(root / "AD" / "mni", volume, affine, "1.2.826.0.1.3680043.8.498.40")
    copy_pydicom_samples(root / "NC")
    try:
        _ = pydicom.dcmread(root / "NC" / "SC_rgb_jpeg_gdcm.dcm").pixel_array
        jpeg_lossless = 1
    except Exception:  # no JPEG lossless decoder installed: the file must be skipped, saying so
        jpeg_lossless = 0

    assert main(["data", "census", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series"] == {"(no split)": {"AD": 1, "NC": 5 + jpeg_lossless}}
    n_ad = report["slices"]["(no split)"]["AD"]
    assert n_ad > 2 and report["slices"]["(no split)"]["NC"] == 8 + jpeg_lossless  # 1 + 1 + 3 of 5 CT + 2 frames + 1
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in report["skipped"]}
    assert "Basic Text SR Storage" in reasons["reportsi.dcm"] and "SEG" in reasons["liver_1frame.dcm"]
    assert "Media Storage Directory" in reasons["DICOMDIR"]
    if not jpeg_lossless:
        assert "no installed decoder" in reasons["SC_rgb_jpeg_gdcm.dcm"]
    assert main(["data", "census", str(root)]) == 0
    text = capsys.readouterr().out
    assert f"DICOM series            1{5 + jpeg_lossless:>12}" in text and "types: dicom" in text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # no split folders; the skipped samples
        assert main(["train", "--preset", "smoke", "--class", "both", "--data", str(root),
                     "--out-root", str(tmp_path / "runs"), "--run", "dicom"]) == 0
    run = tmp_path / "runs" / "dicom"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest and list((run / "checkpoints").glob("*.safetensors"))
    assert "training dicom: " + f"{n_ad + 8 + jpeg_lossless} images of AD, NC" in capsys.readouterr().out
