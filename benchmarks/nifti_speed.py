"""NIfTI slicing speed: slices per second of brainlib's NIfTI reader, beside the time nibabel
takes to load the same file.

    .venv/bin/python benchmarks/nifti_speed.py [--quick] [--shapes 256x256x256 512x512x256] [--axes 2]

Each shape is written as an uncompressed float32 `.nii` in a temporary folder (a noisy
brain-sized ellipsoid, so the band holds real slices and the empty ones are left out).
Timed, best of --repeats:
- load: nibabel reading the file into a float32 array (`nib.load(f, mmap=False)`, the data read
  into memory; a memory map would defer the reading to the first use), what any reader pays;
- slice: `slices.slice_volume` on the loaded volume (the default band of the axis, 128 px slices:
  intensity scaling, the empty-slice test and the Lanczos resize of every slice);
- decode: the whole `decoding.decode_nifti` (load, checks, reorientation, slicing).
Prints slices/s and decode time as a multiple of load time; writes outputs/bench/nifti_speed.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, peak_rss_mb, set_threads, write_result
from brainlib.data.decoding import decode_nifti
from brainlib.data.slices import slice_volume

IMAGE_SIZE = 128


def brain_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """float32: an ellipsoid filling ~60% of each axis, intensity ~1000 with noise, zero outside."""
    rng = np.random.default_rng(seed)
    x, y, z = (((np.arange(n, dtype=np.float32) - n / 2) / (0.3 * n)) ** 2 for n in shape)
    inside = x[:, None, None] + y[None, :, None] + z[None, None, :] < 1
    volume = rng.standard_normal(shape, dtype=np.float32)
    volume *= 50
    volume += 1000
    volume *= inside
    return volume


def best_seconds(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(path: Path, axis: int, repeats: int) -> dict:
    import nibabel as nib
    load_s, volume = best_seconds(lambda: np.asarray(nib.load(str(path), mmap=False).dataobj, dtype=np.float32),
                                  repeats)
    slice_s, slices = best_seconds(partial(slice_volume, volume, IMAGE_SIZE, False, axis), repeats)
    volume = None  # freed before the whole decode is timed
    decode_s, decoded = best_seconds(lambda: decode_nifti(path, IMAGE_SIZE, False, axis), repeats)
    assert len(decoded) == len(slices)
    return {"axis": axis, "slices": len(slices), "load_s": load_s, "slice_s": slice_s, "decode_s": decode_s,
            "slices_per_s": len(slices) / slice_s, "decode_over_load": decode_s / load_s}


def parse_shape(text: str) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in text.lower().split("x"))
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected three sizes, e.g. 256x256x256")
    return shape


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small volumes (64^3, 96x96x48), one repeat")
    p.add_argument("--shapes", type=parse_shape, nargs="+", default=[(256, 256, 256), (512, 512, 256)])
    p.add_argument("--axes", type=int, nargs="+", default=[2], choices=(0, 1, 2))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.quick:
        args.shapes, args.repeats = [(64, 64, 64), (96, 96, 48)], 1
    import nibabel as nib
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            path = Path(tmp) / ("x".join(map(str, shape)) + ".nii")
            nib.save(nib.Nifti1Image(brain_volume(shape), np.eye(4)), str(path))
            for axis in args.axes:
                row = {"shape": "x".join(map(str, shape)), "mb": round(path.stat().st_size / 2**20, 1),
                       **measure(path, axis, args.repeats)}
                rows.append(row)
                print(f"{row['shape']} axis {axis}: load {row['load_s']:.3g} s, decode {row['decode_s']:.3g} s, "
                      f"{row['slices_per_s']:.3g} slices/s", flush=True)
            path.unlink()
    print(format_table(rows, ["shape", "axis", "slices", "load_s", "slice_s", "decode_s", "slices_per_s",
                              "decode_over_load"]))
    result = {"rows": rows, "image_size": IMAGE_SIZE, "repeats": args.repeats, "quick": args.quick,
              "peak_rss_mb": round(peak_rss_mb(), 1), "cpus": os.cpu_count()}
    path = write_result("nifti_speed", result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
