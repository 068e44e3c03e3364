"""Real user data: folders of 2D slices, NIfTI volumes or DICOM series -> validated -> cached uint8 array.

Accepted layouts (class folder names configurable with `class_dirs`, matched
case-insensitively; AD has label 1, NC label 0):

    <root>/{train,test}/{AD,NC}/*   the ADNI 2D layout (splits combined unless `splits` picks)
    <root>/{AD,NC}/*                 class folders, no split
    <root>/*                         one class only: the caller names it (`classes=["AD"]`)

Files: JPEG, PNG, BMP, TIFF slices, and NIfTI volumes (.nii, .nii.gz) sliced along
`nifti_axis` over the band `nifti_band` (fractions of the axis), near-empty slices
left out. DICOM files (.dcm or any name with the DICOM marker) are grouped into
series and stacked into volumes that are sliced the same way (brainlib.data.dicom).
Preprocessing follows the original: greyscale, optional pad to square, antialiased
resize to `image_size`, stored as uint8. Nothing is flipped or rotated.

Files that cannot be used (macOS metadata, zero bytes, truncated, not an image,
decompression bombs, symlink loops, unreadable, NaN or 4D volumes, NIfTI volumes and
DICOM files or series larger than the limits in slices.py or shorter than their headers
claim, DICOM without pixel data or in inconsistent series) are skipped and reported with
their reason; sizes are checked from the headers before anything is allocated.
Problems with the folder itself raise `DataError`.

Decoding happens once: the array is cached as `.npy` (loaded back with mmap) keyed
on the file list with sizes and modification times plus the preprocessing options,
so a second load costs one `stat` per file and one checksum of the cache (cache.py).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainlib.config import CLASS_LABELS
from brainlib.data.cache import cache_key, decode_to_cache, default_cache_dir, read_cache_meta
from brainlib.data.discovery import ACCEPTED_LAYOUTS, DataError, DataWarning, FileEntry, discover, printable


@dataclass
class SliceDataset:
    images: np.ndarray  # uint8 [N, S, S], usually a read-only memmap of the cache
    labels: np.ndarray  # int64 [N], NC=0 AD=1
    splits: np.ndarray  # str [N], "train"/"test"/"" (no split folder)
    sources: list[str]  # file path (and slice index for NIfTI) per image
    skipped: list[tuple[str, str]]  # (path, reason) of files that could not be used
    root: Path
    cache_path: Path | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == label).sum()) for name, label in CLASS_LABELS.items()
                if (self.labels == label).any()}


def _limit_per_class(entries: list[FileEntry], max_per_class: int | None) -> list[FileEntry]:
    """The first `max_per_class` files of each class in path order, train split first.
    DICOM files are all kept: a series is never cut (decoding caps the number of series)."""
    if max_per_class is None:
        return entries
    kept, count = [e for e in entries if e.dicom], {}
    for e in sorted((e for e in entries if not e.dicom), key=lambda e: (e.split != "train", e.path)):
        if count.get(e.label, 0) < max_per_class:
            count[e.label] = count.get(e.label, 0) + 1
            kept.append(e)
    return sorted(kept, key=lambda e: (-e.label, e.split, e.path))


def _report_skipped(skipped: list[tuple[str, str]], root: Path) -> None:
    if not skipped:
        return
    first = "; ".join(f"{printable(p)} ({printable(r)})" for p, r in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(f"{len(skipped)} files under {root} were skipped: {first}{more} "
                  "(SliceDataset.skipped lists them all)", DataWarning, stacklevel=3)


def load_dataset(root, *, classes=("AD", "NC"), class_dirs=None, splits=None, image_size=128,
                 pad_to_square=False, nifti_axis=2, nifti_band=(0.25, 0.75), cache_dir=None,
                 max_per_class=None, progress=True) -> SliceDataset:
    """Find, validate, decode (once) and return the images of `classes` under `root`.

    Skipped files are listed in `.skipped` and summarised in a DataWarning."""
    root = Path(root).expanduser()
    entries, skipped, _ = discover(root, classes=classes, class_dirs=class_dirs, splits=splits)
    entries = _limit_per_class(sorted(entries, key=lambda e: (-e.label, e.split, e.path)), max_per_class)
    options = dict(image_size=int(image_size), pad=bool(pad_to_square), nifti_axis=int(nifti_axis),
                   nifti_band=[float(b) for b in nifti_band])
    if any(e.dicom for e in entries):
        options["max_dicom_series"] = max_per_class
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(entries, root, options)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    meta = read_cache_meta(meta_path, array_path, options["image_size"])
    if meta is None:
        meta = decode_to_cache(entries, options, array_path, meta_path, progress)
    images = np.load(array_path, mmap_mode="r")
    skipped = skipped + [tuple(s) for s in meta["skipped"]]
    if len(meta["labels"]) == 0:
        raise DataError(f"none of the {len(entries)} image files under {root} could be read "
                        f"(first: {skipped[0][0]}: {skipped[0][1]}); " + ACCEPTED_LAYOUTS)
    _report_skipped(skipped, root)
    return SliceDataset(images=images, labels=np.asarray(meta["labels"], dtype=np.int64),
                        splits=np.asarray(meta["splits"], dtype=str), sources=list(meta["sources"]),
                        skipped=skipped, root=root, cache_path=array_path)


_CONFIG_SPLITS = object()


def dataset_root(cfg) -> Path:
    """The folder a RunConfig reads; `data_root=None` is the embedded phantom dataset (built on first use)."""
    if cfg.data_root is None:
        from brainlib.data.phantom import ensure_default_dataset  # scipy: only to build the default dataset
        return ensure_default_dataset()
    return Path(cfg.data_root)


def dataset_for_config(cfg, *, splits=_CONFIG_SPLITS, cache_dir=None, progress=True) -> SliceDataset:
    """The dataset a RunConfig trains on; `data_root=None` is the embedded phantom dataset."""
    root = dataset_root(cfg)
    return load_dataset(root, classes=tuple(cfg.classes), class_dirs=cfg.class_dirs,
                        splits=cfg.splits if splits is _CONFIG_SPLITS else splits,
                        image_size=cfg.image_size, pad_to_square=cfg.pad_to_square,
                        max_per_class=cfg.max_images, cache_dir=cache_dir, progress=progress)


def to_model_input(images: torch.Tensor | np.ndarray, res: int | None = None) -> torch.Tensor:
    """uint8 [N,S,S] / [N,1,S,S] (0..255, any device) or float [N,1,S,S] in [-1, 1] -> float32
    [N,1,R,R] in [-1, 1], R = `res` if given, else S.

    Down-sampling averages pixel blocks (area), as ProGAN's lower resolutions; up-sampling is
    bilinear. uint8 images are resampled before scaling, as the trainer always did."""
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected images [N,S,S] or [N,1,S,S], got shape {tuple(x.shape)}")
    is_uint8 = x.dtype == torch.uint8
    x = x.float()
    if res is not None and (x.shape[-1] != res or x.shape[-2] != res):
        if x.shape[-1] >= res and x.shape[-2] >= res:
            x = F.interpolate(x, size=(res, res), mode="area")
        else:
            x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    return x / 127.5 - 1.0 if is_uint8 else x


def format_skipped(dataset: SliceDataset, max_lines: int = 20) -> str:
    """The skipped files of a loaded dataset, one per line with the reason."""
    if not dataset.skipped:
        return "no files skipped"
    lines = [f"{len(dataset.skipped)} files skipped:"]
    lines += [f"  {printable(p)}: {printable(r)}" for p, r in dataset.skipped[:max_lines]]
    if len(dataset.skipped) > max_lines:
        lines.append(f"  ... and {len(dataset.skipped) - max_lines} more")
    return "\n".join(lines)
