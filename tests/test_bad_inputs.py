"""Every kind of bad file in tests/bad_inputs.py gets its expected outcome: used, or
skipped with a reason naming the problem; a folder of junk raises DataError."""
from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainlib.data.census import census
from brainlib.data.dataset import load_dataset
from brainlib.data.discovery import DataError, DataWarning
from tests.bad_inputs import CASES, UNREADABLE, build_corpus, build_imageless_folder, build_size_claims

ROOT = Path(__file__).resolve().parents[1]
# Reads a clean folder (every import, thread pool and arena warmed), then caps the address space
# at 1 GiB above what the process holds (Linux) and reads the folder of size claims: the census
# and the loader must skip each file from its header, and the peak resident memory barely move.
UNDER_A_MEMORY_CAP = textwrap.dedent("""
    import json, resource, sys, warnings
    from brainlib.data.census import census
    from brainlib.data.dataset import load_dataset
    good, claims, cache = sys.argv[1:]
    warnings.simplefilter("ignore")
    census(good)
    load_dataset(good, image_size=32, cache_dir=cache, progress=False)
    if sys.platform == "linux":
        held = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (held + 2**30, resource.RLIM_INFINITY))
    per_kb = 1024 if sys.platform == "darwin" else 1  # ru_maxrss: bytes on macOS, kB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // per_kb
    report = census(claims)
    dataset = load_dataset(claims, image_size=32, cache_dir=cache, progress=False)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // per_kb - peak) / 1024
    print(json.dumps({"census": {s["path"]: s["reason"] for s in report["skipped"]},
                      "load": dict(dataset.skipped), "images": len(dataset), "grew_mb": grew_mb}))
""")


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    build_corpus(root)
    locked = str(root / UNREADABLE)
    if os.access(locked, os.R_OK):
        # running as root: chmod 000 does not stop us reading, so simulate what a normal user meets
        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if str(file) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return real_open(file, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", guarded_open)
    return root


def _skipped_reasons(skipped, root):
    return {os.path.relpath(p, root): r.lower() for p, r in skipped}


def test_each_bad_input_gets_its_outcome(corpus, tmp_path):
    with pytest.warns(DataWarning, match=r"files under .* were skipped"):
        ds = load_dataset(corpus, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    used = {os.path.relpath(s.split("#")[0], corpus) for s in ds.sources}
    reasons = _skipped_reasons(ds.skipped, corpus)
    for case in CASES:
        if case.outcome == "accepted":
            assert case.path in used, f"{case.path} should be used; skipped as {reasons.get(case.path)}"
            assert case.path not in reasons
        else:
            assert case.path in reasons, f"{case.path} should be skipped"
            assert case.reason in reasons[case.path], f"{case.path}: {reasons[case.path]!r}"
            assert case.path not in used
    assert len(reasons) == sum(c.outcome == "skipped" for c in CASES)  # nothing else skipped


def test_accepted_awkward_formats_are_converted_sensibly(corpus, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = load_dataset(corpus, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    by_name = {os.path.basename(s.split("#")[0]): ds.images[i] for i, s in enumerate(ds.sources)}
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (32, 32)
    rgba = by_name["rgba.png"].astype(int)
    assert rgba[:, :12].mean() > 240 and rgba[:, -12:].max() == 0  # transparent part composited on black
    good = by_name["good_0.jpeg"].astype(int)
    assert np.abs(by_name["cmyk.jpg"].astype(int) - good).mean() < 12  # same picture via CMYK
    for name in ("cmyk.jpg", "sixteen_bit.png"):  # same picture, other encodings (16-bit rescaled)
        assert np.corrcoef(by_name[name].ravel(), good.ravel())[0, 1] > 0.95, name
    assert by_name["sixteen_bit.png"].max() > 200  # 16-bit range scaled, not clipped or truncated
    nifti = [s for s in ds.sources if "volume.nii.gz#" in s]
    assert len(nifti) > 1 and all(ds.labels[ds.sources.index(s)] == 0 for s in nifti)


def test_census_reports_the_same_skips(corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        report = census(corpus)
    reasons = {os.path.relpath(s["path"], corpus): s["reason"].lower() for s in report["skipped"]}
    for case in CASES:
        if case.outcome == "skipped":
            assert case.reason in reasons.get(case.path, ""), case.path
    accepted = [c for c in CASES if c.outcome == "accepted"]
    assert report["per_class"] == {"AD": sum(c.path.startswith("AD") for c in accepted),
                                   "NC": sum(c.path.startswith("NC") for c in accepted)}
    assert report["n_skipped"] == len(report["skipped"]) == sum(c.outcome == "skipped" for c in CASES)


def test_folder_without_images_raises_clear_error(tmp_path):
    root = build_imageless_folder(tmp_path / "junk_only")
    with pytest.raises(DataError) as err:
        load_dataset(root, cache_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert str(root / "AD") in message and "accepted layouts" in message


def test_all_files_unreadable_raises_clear_error(tmp_path):
    (tmp_path / "d" / "AD").mkdir(parents=True)
    (tmp_path / "d" / "AD" / "a.png").write_text("not an image")
    with pytest.raises(DataError, match=r"none of the 1 image files .* could be read"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            load_dataset(tmp_path / "d", classes=["AD"], cache_dir=tmp_path / "cache", progress=False)


def test_size_claims_are_skipped_from_the_header_under_a_memory_cap(tmp_path):
    """A 416-byte NIfTI claiming 2000x2000x500, a 500 KB deflated DICOM inflating to 16000x16000,
    and files holding less than their headers claim: skipped with a reason that says so, by the
    census and by the loader, before anything of the claimed size is allocated."""
    expected = build_size_claims(tmp_path / "claims")
    good = tmp_path / "good"
    for cls in ("AD", "NC"):
        (good / cls).mkdir(parents=True)
        (good / cls / "good_0.png").write_bytes((tmp_path / "claims" / cls / "good_0.png").read_bytes())
    done = subprocess.run([sys.executable, "-c", UNDER_A_MEMORY_CAP, str(good), str(tmp_path / "claims"),
                           str(tmp_path / "cache")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    for reader in ("census", "load"):
        reasons = {os.path.basename(p): r.lower() for p, r in result[reader].items()}
        assert set(reasons) == set(expected), reader
        for name, phrase in expected.items():
            assert phrase in reasons[name], (reader, name, reasons[name])
            assert "\n" not in reasons[name]
    assert result["images"] == 4  # the good slices still load
    assert result["grew_mb"] < 64, f"peak memory grew by {result['grew_mb']:.0f} MB reading files of a few KB"
