"""The census of a dataset folder: counts per split and class, sizes, modes and types seen,
and every skipped file with its reason, without building a cache."""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from brainlib.data.decoding import decode_image, nifti_voxels, open_nifti, quiet_decoder_warnings
from brainlib.data.dicom import inspect_series
from brainlib.data.discovery import (
    ACCEPTED_LAYOUTS,
    NIFTI_SUFFIXES,
    DataError,
    EmptyClassError,
    discover,
    find_layout,
    printable,
)
from brainlib.data.slices import SkippedFile, one_line


def _inspect(path: Path) -> dict:
    """Size, mode and type of one file, or the reason it cannot be used."""
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    try:
        if suffix in NIFTI_SUFFIXES:
            img = open_nifti(path)  # the header's size checked before anything is read
            nifti_voxels(img)  # every voxel read: catches short files and NaN
            return dict(type=suffix, size="x".join(map(str, img.shape)), mode=str(img.get_data_dtype()))
        with Image.open(path) as im:
            size, mode = f"{im.size[0]}x{im.size[1]}", im.mode
        decode_image(path, 8, False)  # a full decode catches truncation
        return dict(type=suffix, size=size, mode=mode)
    except SkippedFile as e:
        return dict(reason=str(e))
    except Exception as e:
        try:
            decode_image(path, 8, False)
        except SkippedFile as s:
            return dict(reason=str(s))
        return dict(reason=f"could not be read: {one_line(e)}")


def census(root, *, class_dirs=None) -> dict:
    """Counts per split and class, image sizes, modes and file types seen, and skipped files
    with reasons. JSON-able. Reads every file (to find truncated ones) but decodes no cache.

    DICOM files count in `counts` when their series is usable; `series` and `slices` count,
    per split and class, the DICOM series and the slices they give with the default options.
    A class whose folder is absent counts nothing; a class folder without image files raises
    DataError (EmptyClassError) naming it."""
    root = Path(root).expanduser()
    class_dirs = {"AD": "AD", "NC": "NC", **(class_dirs or {})}
    if not root.exists() or not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder; " + ACCEPTED_LAYOUTS)
    layout, base = find_layout(root, class_dirs)
    entries, skipped = [], []
    if layout == "plain":
        found, skipped, _ = discover(base, classes=["AD"], class_dirs=class_dirs)
        entries = [(e, "(one class)") for e in found]
    else:
        for c in ("AD", "NC"):
            try:
                found, junk, _ = discover(base, classes=[c], class_dirs=class_dirs)
            except EmptyClassError:
                raise
            except DataError:
                continue  # a class may be absent; the counts say so
            entries += [(e, c) for e in found]
            skipped += junk
    counts: dict[str, dict[str, int]] = {}
    series: dict[str, dict[str, int]] = {}
    slices: dict[str, dict[str, int]] = {}
    sizes, modes, types = Counter(), Counter(), Counter()
    dicom_groups: dict[tuple[str, str], list[str]] = {}
    for entry, cls in entries:
        if entry.dicom:
            dicom_groups.setdefault((entry.split or "(no split)", cls), []).append(entry.path)
    entries = [(e, cls) for e, cls in entries if not e.dicom]
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool, quiet_decoder_warnings():
        infos = list(pool.map(_inspect, [Path(e.path) for e, _ in entries]))
    if dicom_groups:
        for (split, cls), paths in dicom_groups.items():
            usable, bad = inspect_series(paths)
            skipped += bad
            for s, n_slices in usable:
                for table, n in ((counts, len(s.files)), (series, 1), (slices, n_slices)):
                    table.setdefault(split, {}).setdefault(cls, 0)
                    table[split][cls] += n
                sizes[s.size] += len(s.files)
                modes[s.mode] += len(s.files)
                types["dicom"] += len(s.files)
    for (entry, cls), info in zip(entries, infos, strict=True):
        if "reason" in info:
            skipped.append((entry.path, info["reason"]))
            continue
        split = entry.split or "(no split)"
        counts.setdefault(split, {}).setdefault(cls, 0)
        counts[split][cls] += 1
        sizes[info["size"]] += 1
        modes[info["mode"]] += 1
        types[info["type"]] += 1
    skipped = sorted(set(skipped))
    per_class = Counter()
    for split_counts in counts.values():
        per_class.update(split_counts)
    return dict(root=str(root), layout=layout, class_dirs=class_dirs, counts=counts,
                per_class=dict(per_class), total=int(sum(per_class.values())), series=series, slices=slices,
                sizes=dict(sizes.most_common()), modes=dict(modes.most_common()), types=dict(types.most_common()),
                skipped=[dict(path=p, reason=r) for p, r in skipped], n_skipped=len(skipped))


def format_census(report: dict, *, show_root: bool = True, max_skipped: int = 10) -> str:
    """The census as readable text (`show_root=False` for output that must not depend on paths).
    Control characters in names and reasons are escaped: each line printed is one line."""
    lines = [f"dataset: {printable(report['root'])}"] if show_root else []
    lines.append(f"layout: {report['layout']}   class folders: "
                 + ", ".join(printable(f"{k}={v}") for k, v in report["class_dirs"].items()))
    classes = sorted({c for s in report["counts"].values() for c in s})
    lines.append("split        " + "".join(f"{c:>12}" for c in classes))
    for split in sorted(report["counts"]):
        lines.append(f"{split:<13}" + "".join(f"{report['counts'][split].get(c, 0):>12}" for c in classes))
    lines.append(f"{'total':<13}" + "".join(f"{report['per_class'].get(c, 0):>12}" for c in classes)
                 + f"   ({report['total']} images)")
    for name, table in (("series", report.get("series")), ("slices", report.get("slices"))):
        if table:  # DICOM: files above, series and the slices they give here
            per_class = {c: sum(t.get(c, 0) for t in table.values()) for c in classes}
            lines.append(f"{'DICOM ' + name:<13}" + "".join(f"{per_class[c]:>12}" for c in classes)
                         + f"   ({sum(per_class.values())} {name})")
    lines.append("sizes: " + ", ".join(f"{k} ({v})" for k, v in report["sizes"].items()))
    lines.append("modes: " + ", ".join(f"{k} ({v})" for k, v in report["modes"].items()))
    lines.append("types: " + ", ".join(f"{k} ({v})" for k, v in report["types"].items()))
    lines.append(f"skipped: {report['n_skipped']} files")
    for s in report["skipped"][:max_skipped]:
        lines.append(f"  {printable(s['path'])}: {printable(s['reason'])}")
    if report["n_skipped"] > max_skipped:
        lines.append(f"  ... and {report['n_skipped'] - max_skipped} more")
    return "\n".join(lines)


