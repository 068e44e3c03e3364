"""Speed of the data path: building the embedded dataset, the first (decoding) load of a
large ADNI-sized folder, and the cached second load (stat calls + mmap only).

    .venv/bin/python benchmarks/data_speed.py [--n-per-class 2000] [--copies 4]

The large folder is hard links to the built phantom's PNGs, repeated `--copies` times
(4 x 4000 = 16,000 images), in a temporary folder. Prints a table and writes
benchmarks/data_speed.json. A benchmark, not a test: on 2 busy cores it takes minutes.
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from brainlib.data import load_dataset
from brainlib.phantom import build_phantom, read_metadata


def hardlinked_copies(source: Path, dest: Path, copies: int) -> int:
    n = 0
    for png in sorted(source.glob("*/*/*.png")):
        folder = dest / png.parent.relative_to(source)
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(copies):
            os.link(png, folder / f"copy{k}_{png.name}")
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-per-class", type=int, default=2000)
    p.add_argument("--copies", type=int, default=4)
    args = p.parse_args()
    result = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        root = build_phantom(tmp / "phantom", n_per_class=args.n_per_class, progress=False)
        result["phantom_build_seconds"] = round(time.perf_counter() - t0, 1)
        result["phantom_images"] = 2 * args.n_per_class
        result["logistic_regression_32px_test_accuracy"] = read_metadata(root)["logistic_regression_32px_test_accuracy"]
        big = tmp / "big"
        result["load_images"] = hardlinked_copies(root, big, args.copies)
        t0 = time.perf_counter()
        load_dataset(big, cache_dir=tmp / "cache", progress=False)
        result["first_load_seconds"] = round(time.perf_counter() - t0, 2)
        seconds = []
        for _ in range(3):
            t0 = time.perf_counter()
            load_dataset(big, cache_dir=tmp / "cache", progress=False)
            seconds.append(time.perf_counter() - t0)
        result["cached_load_seconds"] = round(min(seconds), 3)
    for key, value in result.items():
        print(f"{key:<42} {value}")
    Path(__file__).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
