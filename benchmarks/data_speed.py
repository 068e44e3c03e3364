"""Data path speed: one epoch of training batches from brainlib's cached uint8 array versus
the baseline's DataLoader, which decodes the image files again every epoch.

    .venv/bin/python benchmarks/data_speed.py [--quick] [--data ROOT] [--limit N] [--res 64 128]
    .venv/bin/python benchmarks/data_speed.py --scaling      # epoch time at 1x, 2x, 4x the images

brainlib's epoch: a permutation, then per batch an index into the in-memory uint8 array and
`to_model_input` (area down-sampling to the training resolution, [-1, 1]). The first,
decoding load that builds the cache is timed once as well (it happens once per dataset).
The baseline's epoch: `ImageFolder` + `DataLoader(shuffle=True)` with PIL decoding and
Grayscale/Resize/ToTensor/Normalize, at 0 and 2 worker processes (benchmarks/baseline.py).
Both read the train split of the embedded phantom dataset (256x240 PNGs) unless --data is given.
Prints a table and writes outputs/bench/data_speed.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baseline import folder_loader
from benchmarks.common import (
    cached_images,
    dataset_root,
    format_table,
    peak_rss_mb,
    set_threads,
    write_result,
)
from brainlib.data.dataset import to_model_input


def cached_epoch_seconds(images_u8: torch.Tensor, res: int, batch: int) -> float:
    """One epoch of model-ready batches from the uint8 array (what the Trainer does per batch)."""
    t0 = time.perf_counter()
    perm = torch.randperm(len(images_u8))
    for lo in range(0, len(perm) - batch + 1, batch):
        to_model_input(images_u8[perm[lo:lo + batch]], res)
    return time.perf_counter() - t0


def decoding_epoch_seconds(root: Path, res: int, batch: int, limit: int | None, workers: int) -> float:
    """One epoch through the baseline's DataLoader (every file decoded, workers started)."""
    loader = folder_loader(root / "train", res, batch, limit=limit, workers=workers)
    t0 = time.perf_counter()
    for _images, _labels in loader:
        pass
    return time.perf_counter() - t0


def compare(root: Path, *, limit: int | None, resolutions: list[int], batch: int, workers: list[int],
            repeats: int, image_size: int = 128) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        dataset = cached_images(root, image_size, limit, cache_dir=cache)  # the one-off decode
        first_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        dataset = cached_images(root, image_size, limit, cache_dir=cache)  # what every later run does
        cached_load = time.perf_counter() - t0
        images_u8 = torch.from_numpy(dataset.images.copy())
    n = len(images_u8)
    rows = []
    for res in resolutions:
        row = {"res": res, "images": n, "batch": batch,
               "cached_epoch_s": min(cached_epoch_seconds(images_u8, res, batch) for _ in range(repeats))}
        for w in workers:  # interleaved with the cached epochs above by resolution
            row[f"decode_w{w}_epoch_s"] = min(decoding_epoch_seconds(root, res, batch, n, w) for _ in range(repeats))
        best_decoding = min(row[f"decode_w{w}_epoch_s"] for w in workers)
        row["speedup"] = round(best_decoding / row["cached_epoch_s"], 1)
        rows.append(row)
    return {"first_load_s": round(first_load, 3), "cached_load_s": round(cached_load, 4), "images": n, "rows": rows}


def epoch_scaling(root: Path, *, limit: int, res: int, batch: int, factors=(1, 2, 4)) -> list[dict]:
    """Cached epoch time at 1x, 2x, 4x the images (the array repeated): it should be linear."""
    base = torch.from_numpy(cached_images(root, 128, limit).images.copy())
    rows = []
    for f in factors:
        images = base.repeat(f, 1, 1)
        seconds = min(cached_epoch_seconds(images, res, batch) for _ in range(3))
        rows.append({"factor": f, "images": len(images), "epoch_s": seconds,
                     "us_per_image": 1e6 * seconds / len(images)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 images, one resolution, one repeat, no workers")
    p.add_argument("--data", default=None, help="image folder with a train/ split (default: the phantom)")
    p.add_argument("--limit", type=int, default=None, help="use this many images (default: all of train)")
    p.add_argument("--res", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--scaling", action="store_true", help="also: cached epoch time at 1x, 2x, 4x the images")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.quick:
        args.limit, args.res, args.workers, args.repeats = args.limit or 64, [64], [0], 1
    root = dataset_root(args.data)
    result = compare(root, limit=args.limit, resolutions=args.res, batch=args.batch, workers=args.workers,
                     repeats=args.repeats)
    print(f"{result['images']} images from {root}: first (decoding) load {result['first_load_s']} s, "
          f"cached load {result['cached_load_s']} s")
    cols = ["res", "images", "cached_epoch_s"] + [f"decode_w{w}_epoch_s" for w in args.workers] + ["speedup"]
    print(format_table(result["rows"], cols))
    if args.scaling:
        result["scaling"] = epoch_scaling(root, limit=args.limit or 1024, res=args.res[-1], batch=args.batch)
        print(format_table(result["scaling"], ["factor", "images", "epoch_s", "us_per_image"]))
    result |= {"root": str(root), "quick": args.quick, "peak_rss_mb": round(peak_rss_mb(), 1),
               "cpus": os.cpu_count()}
    path = write_result("data_speed", result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
