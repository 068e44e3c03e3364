"""The decoded-dataset cache: one `.npy` array and one JSON of labels, splits and sources per
key (the file list with sizes and modification times, plus the preprocessing options)."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.config import project_root
from brainlib.data.decoding import decode_or_reason, decoding_units, quiet_decoder_warnings
from brainlib.data.discovery import FileEntry
from brainlib.progress import progress_bar
CACHE_VERSION = 1


def cache_key(entries: list[FileEntry], root: Path, options: dict) -> str:
    prefix = os.path.join(str(root), "")
    listing = sorted((e.path[len(prefix):] if e.path.startswith(prefix) else os.path.relpath(e.path, root),
                      e.label, e.split, e.size, e.mtime_ns) for e in entries)
    blob = json.dumps({"v": CACHE_VERSION, "files": listing, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    """Where decoded datasets (and, under encoders/, the evaluation's encoders) are cached."""
    return project_root() / "data" / "cache"


def read_cache_meta(meta_path: Path, array_path: Path) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
        header_rows = np.load(array_path, mmap_mode="r").shape[0]
    except (OSError, ValueError):
        return None
    return meta if header_rows == len(meta.get("labels", ())) else None


def decode_to_cache(entries: list[FileEntry], options: dict, array_path: Path, meta_path: Path,
                     progress: bool) -> dict:
    """Decode every file (threads: PIL and zlib release the GIL) and write the cache atomically."""
    size = options["image_size"]
    units, skipped = decoding_units(entries, options)
    images, labels, splits, sources = [], [], [], []
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool, quiet_decoder_warnings():
        results = pool.map(decode_or_reason, [u.decode for u in units], chunksize=16)
        for unit, result in progress_bar(zip(units, results), total=len(units), desc="decoding images",
                                         unit="file", disable=not progress, mininterval=0.5):
            if isinstance(result, str):
                skipped.append((unit.entry.path, result))
                continue
            for source, image in result:
                images.append(image)
                labels.append(unit.entry.label)
                splits.append(unit.entry.split)
                sources.append(source)
    array = np.stack(images) if images else np.zeros((0, size, size), np.uint8)

    def write_array(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(array_path, write_array)
    meta = dict(labels=labels, splits=splits, sources=sources, skipped=skipped, options=options)
    atomic_write_json(meta_path, meta)
    return meta


