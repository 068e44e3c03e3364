"""The decoded-dataset cache: one `.npy` array and one JSON of labels, splits and sources per
key (the file list with sizes and modification times, plus the preprocessing options).

The JSON records a SHA-256 of the pixel bytes and of the labels, splits, sources, skipped files
and options; both are checked on every load (a 4000x128x128 cache: 62.5 MiB, a fraction of a
second). A cache that is incomplete, unreadable, of the wrong shape or whose checksums do not
match is decoded again from the source files, with a CacheWarning naming the file and the
reason: a damaged cache is never trained on."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.config import project_root
from brainlib.data.decoding import decode_or_reason, decoding_units, quiet_decoder_warnings
from brainlib.data.discovery import FileEntry
from brainlib.progress import progress_bar

CACHE_VERSION = 1
CHECKED_KEYS = ("labels", "splits", "sources", "skipped", "options")  # the JSON's payload, checksummed


class CacheWarning(UserWarning):
    """A decoded cache failed its checks and is being rebuilt from the source files."""


def cache_key(entries: list[FileEntry], root: Path, options: dict) -> str:
    prefix = os.path.join(str(root), "")
    listing = sorted((e.path[len(prefix):] if e.path.startswith(prefix) else os.path.relpath(e.path, root),
                      e.label, e.split, e.size, e.mtime_ns) for e in entries)
    blob = json.dumps({"v": CACHE_VERSION, "files": listing, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    """Where decoded datasets (and, under encoders/, the evaluation's encoders) are cached."""
    return project_root() / "data" / "cache"


def pixel_checksum(array: np.ndarray) -> str:
    """SHA-256 of the array's bytes (a memory map is read once, page by page)."""
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


def meta_checksum(meta: dict) -> str:
    """SHA-256 of the JSON's payload: labels, splits, sources, skipped files and options."""
    payload = json.dumps({k: meta.get(k) for k in CHECKED_KEYS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class _Unusable(Exception):
    """The cache failed a check; the message says which."""


def _verified_meta(meta_path: Path, array_path: Path, image_size: int) -> dict:
    """The cache's JSON once it and the array pass every check; raises _Unusable."""
    if not array_path.exists():
        raise _Unusable("its array is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise _Unusable(f"its JSON {meta_path.name} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("checksums"), dict):
        raise _Unusable(f"its JSON {meta_path.name} holds no checksums")
    if meta["checksums"].get("meta") != meta_checksum(meta):
        raise _Unusable(f"its JSON {meta_path.name} does not match its checksum (labels, splits or sources changed)")
    if array_path.stat().st_size == 0:
        raise _Unusable("the array is empty (0 bytes)")
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise _Unusable(f"the array cannot be read ({type(e).__name__}: {e})") from None
    expected = (len(meta["labels"]), image_size, image_size)
    if array.dtype != np.uint8 or array.shape != expected:
        raise _Unusable(f"the array is {array.dtype} {tuple(array.shape)}, expected uint8 {expected}")
    if meta["checksums"].get("pixels") != pixel_checksum(array):
        raise _Unusable("the pixels do not match their checksum")
    return meta


def read_cache_meta(meta_path: Path, array_path: Path, image_size: int) -> dict | None:
    """The cache's JSON if both files pass their checks; None if there is no cache, or (with a
    CacheWarning naming the file and why) if it failed one: the caller then decodes again."""
    if not meta_path.exists() and not array_path.exists():
        return None
    try:
        return _verified_meta(meta_path, array_path, image_size)
    except (_Unusable, OSError) as e:
        reason = str(e) if isinstance(e, _Unusable) else f"{type(e).__name__}: {e}"
    reason = " ".join(reason.split())  # one line, whatever the error said
    warnings.warn(f"decoded cache {array_path} is not used: {reason}; decoding the source files again",
                  CacheWarning, stacklevel=3)
    return None


def decode_to_cache(entries: list[FileEntry], options: dict, array_path: Path, meta_path: Path,
                     progress: bool) -> dict:
    """Decode every file (threads: PIL and zlib release the GIL) and write the cache atomically."""
    size = options["image_size"]
    units, skipped = decoding_units(entries, options)
    images, labels, splits, sources = [], [], [], []
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool, quiet_decoder_warnings():
        results = pool.map(decode_or_reason, [u.decode for u in units], chunksize=16)
        for unit, result in progress_bar(zip(units, results, strict=True), total=len(units), desc="decoding images",
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
    meta["checksums"] = {"pixels": pixel_checksum(array), "meta": meta_checksum(meta)}
    atomic_write_json(meta_path, meta)
    return meta


