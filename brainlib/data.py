"""Real user data: folders of 2D slices, NIfTI volumes or DICOM series -> validated -> cached uint8 array.

Accepted layouts (class folder names configurable with `class_dirs`, matched
case-insensitively; AD has label 1, NC label 0):

    <root>/{train,test}/{AD,NC}/*   the ADNI 2D layout (splits combined unless `splits` picks)
    <root>/{AD,NC}/*                 class folders, no split
    <root>/*                         one class only: the caller names it (`classes=["AD"]`)

Files: JPEG, PNG, BMP, TIFF slices, and NIfTI volumes (.nii, .nii.gz) sliced along
`nifti_axis` over the band `nifti_band` (fractions of the axis), near-empty slices
left out. DICOM files (.dcm or any name with the DICOM marker) are grouped into
series and stacked into volumes that are sliced the same way (brainlib.dicom).
Preprocessing follows the original: greyscale, optional pad to square, antialiased
resize to `image_size`, stored as uint8. Nothing is flipped or rotated.

Files that cannot be used (macOS metadata, zero bytes, truncated, not an image,
decompression bombs, symlink loops, unreadable, NaN or 4D volumes, DICOM without
pixel data or in inconsistent series) are skipped and reported with their reason.
Problems with the folder itself raise `DataError`.

Decoding happens once: the array is cached as `.npy` (loaded back with mmap) keyed
on the file list with sizes and modification times plus the preprocessing options,
so a second load costs one `stat` per file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.config import CLASS_LABELS, project_root
from brainlib.dicom import decode_series, find_series, inspect_series, is_dicom
from brainlib.progress import progress_bar
from brainlib.slices import SkippedFile, canonical_volume, resize_slice, scale_slice, slice_volume  # noqa: F401

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
MAX_PIXELS = 64_000_000  # larger images are skipped as decompression bombs
CACHE_VERSION = 1
ACCEPTED_LAYOUTS = (
    "accepted layouts: <root>/{train,test}/{AD,NC}/<images> (ADNI 2D), <root>/{AD,NC}/<images>, "
    "or <root>/<images> for one class (pass classes=['AD'] or ['NC']); class folder names can be "
    "changed with class_dirs, e.g. {'NC': 'CN'}; images: .jpg .jpeg .png .bmp .tif .tiff .nii .nii.gz "
    "and DICOM series (.dcm or no extension)"
)
EVERY_SPLIT = "to read every split instead, set splits=None (on the command line: --set splits=null)"


class DataError(ValueError):
    """The dataset folder cannot be used; the message names the path and the accepted layouts."""


class DataWarning(UserWarning):
    """Some files were skipped; the message counts them and names the first few."""


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


# ----------------------------------------------------------------------
# Finding the files.

@dataclass
class _Entry:
    path: str
    label: int
    split: str
    size: int
    mtime_ns: int
    dicom: bool = False


def _is_image_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(IMAGE_SUFFIXES) or lower.endswith(NIFTI_SUFFIXES)


def _is_dicom(path: str | os.PathLike) -> bool:
    return is_dicom(path)


def _is_data_file(path: Path) -> bool:
    return path.is_file() and (_is_image_name(path.name) or _is_dicom(path))


def _junk_reason(name: str, path: str) -> str | None:
    if name.startswith("._"):
        return "macOS AppleDouble metadata file (._*)"
    if name == ".DS_Store":
        return "macOS folder metadata (.DS_Store)"
    if name in ("Thumbs.db", "desktop.ini"):
        return "Windows folder metadata"
    if name.startswith("."):
        return "hidden file"
    if not _is_image_name(name) and not _is_dicom(path):
        return "not an image, NIfTI or DICOM file (by extension, and no DICOM marker)"
    return None


def _child_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders by lower-case name (macOS __MACOSX excluded)."""
    try:
        children = [p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    except OSError:
        return {}
    return {p.name.lower(): p for p in sorted(children)}


def _walk_files(folder: Path, skipped: list[tuple[str, str]]) -> list[os.DirEntry]:
    """Every file under `folder` (following folder symlinks, but not in circles), sorted;
    junk and non-image files go to `skipped`. DirEntry keeps its stat: one call per file."""
    found: list[os.DirEntry] = []
    seen_dirs: set[str] = set()

    def visit(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen_dirs:
            skipped.append((str(d), "symlink loop (folder already visited)"))
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skipped.append((str(d), f"folder cannot be read: {e.strerror or e}"))
            return
        for e in entries:
            if e.name == "__MACOSX":
                skipped.append((e.path, "macOS archive metadata folder (__MACOSX)"))
                continue
            try:
                if e.is_dir():  # follows symlinks
                    visit(Path(e.path))
                    continue
            except OSError:
                pass
            reason = _junk_reason(e.name, e.path)
            if reason:
                skipped.append((e.path, reason))
            else:
                found.append(e)

    visit(folder)
    return found


def _layout(root: Path, class_dirs: dict[str, str]) -> tuple[str, Path]:
    """('adni' | 'classes' | 'plain', the folder the layout starts at)."""
    wanted = {v.lower() for v in class_dirs.values()}
    for _ in range(3):  # descend through single wrapper folders (e.g. an unzipped AD_NC/)
        children = _child_dirs(root)
        splits = [p for name, p in children.items() if name in SPLIT_NAMES]
        if splits and any(wanted & set(_child_dirs(s)) for s in splits):
            return "adni", root
        if wanted & set(children):
            return "classes", root
        try:
            has_files = any(_is_data_file(f) for f in root.iterdir())
        except OSError as e:
            raise DataError(f"dataset folder {root} cannot be read ({e.strerror or e}); " + ACCEPTED_LAYOUTS) from None
        if has_files:
            return "plain", root
        if len(children) == 1:
            root = next(iter(children.values()))
            continue
        break
    raise DataError(f"no class folders ({', '.join(sorted(class_dirs.values()))}) and no images found in {root}; "
                    + ACCEPTED_LAYOUTS)


def _class_folder(parent: Path, folder_name: str) -> Path | None:
    return _child_dirs(parent).get(folder_name.lower())


def discover(root: str | Path, *, classes: Iterable[str] = ("AD", "NC"), class_dirs: dict[str, str] | None = None,
             splits: Iterable[str] | None = None) -> tuple[list[_Entry], list[tuple[str, str]], str]:
    """The usable-looking files of the chosen classes and splits, the junk skipped, and the layout."""
    root = Path(root).expanduser()
    classes = list(classes)
    class_dirs = {"AD": "AD", "NC": "NC", **(class_dirs or {})}
    for c in classes:
        if c not in CLASS_LABELS:
            raise DataError(f"class {c!r} is not one of {', '.join(CLASS_LABELS)} (reading {root})")
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; " + ACCEPTED_LAYOUTS)
    if not root.is_dir():
        raise DataError(f"dataset root {root} is a file, not a folder; " + ACCEPTED_LAYOUTS)
    layout, base = _layout(root, {c: class_dirs[c] for c in CLASS_LABELS})
    skipped: list[tuple[str, str]] = []
    groups: list[tuple[Path, int, str]] = []  # (folder, label, split)
    if layout == "plain":
        if len(classes) != 1:
            raise DataError(f"{base} holds images without class folders; it can only be one class, so pass "
                            f"classes=['AD'] or ['NC'] (got {classes}); " + ACCEPTED_LAYOUTS)
        groups.append((base, CLASS_LABELS[classes[0]], ""))
    elif layout == "classes":
        for c in classes:
            folder = _class_folder(base, class_dirs[c])
            if folder is None:
                raise DataError(f"no folder {class_dirs[c]!r} for class {c} in {base}; " + ACCEPTED_LAYOUTS)
            groups.append((folder, CLASS_LABELS[c], ""))
    else:
        split_dirs = {n: p for n, p in _child_dirs(base).items() if n in SPLIT_NAMES}
        chosen = sorted(split_dirs) if splits is None else [s.lower() for s in splits]
        for s in chosen:
            if s not in split_dirs:
                raise DataError(f"split {s!r} not found in {base} (found: {', '.join(sorted(split_dirs))}); "
                                f"{EVERY_SPLIT}; " + ACCEPTED_LAYOUTS)
        for c in classes:
            folders = [(_class_folder(split_dirs[s], class_dirs[c]), s) for s in chosen]
            if all(f is None for f, _ in folders):
                way_out = f"{EVERY_SPLIT}; " if splits is not None and len(chosen) < len(split_dirs) else ""
                raise DataError(f"no folder {class_dirs[c]!r} for class {c} under {base}/{{{','.join(chosen)}}}; "
                                f"{way_out}" + ACCEPTED_LAYOUTS)
            groups += [(f, CLASS_LABELS[c], s) for f, s in folders if f is not None]
    if layout != "adni" and splits is not None:
        warnings.warn(f"{base} has no split folders, so splits={list(splits)} is ignored and every image is used",
                      DataWarning, stacklevel=3)

    entries: list[_Entry] = []
    for folder, label, split in groups:
        for found in _walk_files(folder, skipped):
            try:
                st = found.stat()  # follows symlinks
            except OSError as e:
                reason = "symlink loop" if e.errno == errno.ELOOP else f"cannot be read: {e.strerror or e}"
                skipped.append((found.path, reason))
                continue
            if st.st_size == 0:
                skipped.append((found.path, "empty file (0 bytes)"))
                continue
            entries.append(_Entry(found.path, label, split, st.st_size, st.st_mtime_ns,
                                  dicom=not _is_image_name(found.name) and _is_dicom(found.path)))
    for c in classes:
        if not any(e.label == CLASS_LABELS[c] for e in entries):
            where = [str(f) for f, label, _ in groups if label == CLASS_LABELS[c]]
            raise DataError(f"class {c} has no image files in {', '.join(where)}; " + ACCEPTED_LAYOUTS)
    return entries, skipped, layout


# ----------------------------------------------------------------------
# Decoding one file.

def _to_greyscale(im) -> np.ndarray:
    """A PIL image of any common mode -> float32 [H, W] in 0..255."""
    from PIL import Image
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        if im.mode in ("I", "F") and a.ndim == 3:
            a = a[..., 0]
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    if im.mode == "CMYK":
        im = im.convert("RGB")
    return np.asarray(im.convert("L"), dtype=np.float32)


def decode_image(path: Path, image_size: int, pad_to_square: bool, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One 2D image file -> uint8 [S, S]; raises SkippedFile with the reason."""
    from PIL import Image, UnidentifiedImageError
    try:
        # PIL warns above its own pixel limit (ours is lower, so those are skipped anyway);
        # callers silence that warning once around their thread pool (filters are global)
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise SkippedFile(f"decompression bomb guard: {w}x{h} = {w * h:,} pixels is over the "
                                  f"limit of {max_pixels:,}")
            im.load()
            grey = _to_greyscale(im)
    except Image.DecompressionBombError as e:
        raise SkippedFile(f"decompression bomb guard: {e}") from None
    except UnidentifiedImageError:
        raise SkippedFile("not a readable image (content does not match any image format)") from None
    except PermissionError as e:
        raise SkippedFile(f"permission denied: {e.strerror or e}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SkippedFile("symlink loop") from None
        raise SkippedFile(f"corrupt or truncated image: {e}") from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise SkippedFile(f"corrupt image: {e}") from None
    return resize_slice(grey, image_size, pad_to_square)


def decode_nifti(path: Path, image_size: int, pad_to_square: bool, axis: int = 2,
                 band: tuple[float, float] = (0.25, 0.75)) -> list[tuple[int, np.ndarray]]:
    """One NIfTI volume -> [(slice index, uint8 [S, S])] over the band, near-empty slices left out.

    The volume is reoriented to RAS first, so axis 2 is axial, 1 coronal, 0 sagittal;
    intensities are scaled per volume (0 .. 99.5th percentile of the foreground)."""
    import nibabel as nib
    try:
        volume = canonical_volume(nib.load(str(path)))
    except SkippedFile:
        raise
    except PermissionError as e:
        raise SkippedFile(f"permission denied: {e.strerror or e}") from None
    except Exception as e:  # nibabel raises many types on corrupt files
        raise SkippedFile(f"not a readable NIfTI volume: {type(e).__name__}: {e}") from None
    return slice_volume(volume, image_size, pad_to_square, axis, band)


def decode_file(path: Path, image_size: int, pad_to_square: bool, nifti_axis: int,
                nifti_band: tuple[float, float]) -> list[tuple[str, np.ndarray]]:
    """Any supported file -> [(source, uint8 [S, S])]; raises SkippedFile with the reason."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return [(f"{path}#{k}", a) for k, a in decode_nifti(path, image_size, pad_to_square, nifti_axis, nifti_band)]
    return [(str(path), decode_image(path, image_size, pad_to_square))]


@contextmanager
def _quiet_pil_bomb_warning():
    """PIL's DecompressionBombWarning is redundant with our lower MAX_PIXELS guard."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module="pydicom")  # odd header values it tolerates, from threads
        yield


@dataclass
class _Unit:
    """What decodes as one: a file, or the files of one DICOM series (class and split from `entry`)."""
    entry: _Entry
    decode: Callable[[], list[tuple[str, np.ndarray]]]


def _units(entries: list[_Entry], options: dict) -> tuple[list[_Unit], list[tuple[str, str]]]:
    """Decoding jobs in dataset order, and the DICOM files that fit no series."""
    args = (options["image_size"], options["pad"], options["nifti_axis"], tuple(options["nifti_band"]))
    units = [_Unit(e, partial(decode_file, Path(e.path), *args)) for e in entries if not e.dicom]
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple[int, str], list[_Entry]] = {}
    for e in sorted((e for e in entries if e.dicom), key=lambda e: (e.split != "train", e.path)):
        groups.setdefault((e.label, e.split), []).append(e)
    if groups:
        left = {label: options.get("max_dicom_series") for label, _ in groups}  # None: no cap
        for (label, _), group in groups.items():
            by_path = {e.path: e for e in group}
            series, bad = find_series(list(by_path))
            skipped += bad
            series = series if left[label] is None else series[:left[label]]
            if left[label] is not None:
                left[label] -= len(series)
            units += [_Unit(by_path[s.files[0]], partial(decode_series, s, *args)) for s in series]
    return sorted(units, key=lambda u: (-u.entry.label, u.entry.split, u.entry.path)), skipped


def _decode_or_reason(decode: Callable[[], list[tuple[str, np.ndarray]]]) -> list[tuple[str, np.ndarray]] | str:
    try:
        return decode()
    except SkippedFile as e:
        return str(e)
    except Exception as e:  # never a bare traceback on user data
        return f"could not be decoded: {type(e).__name__}: {e}"


# ----------------------------------------------------------------------
# Loading with the cache.

def _cache_key(entries: list[_Entry], root: Path, options: dict) -> str:
    prefix = os.path.join(str(root), "")
    listing = sorted((e.path[len(prefix):] if e.path.startswith(prefix) else os.path.relpath(e.path, root),
                      e.label, e.split, e.size, e.mtime_ns) for e in entries)
    blob = json.dumps({"v": CACHE_VERSION, "files": listing, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    """Where decoded datasets (and, under encoders/, the evaluation's encoders) are cached."""
    return project_root() / "data" / "cache"


def _limit_per_class(entries: list[_Entry], max_per_class: int | None) -> list[_Entry]:
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
    first = "; ".join(f"{p} ({r})" for p, r in skipped[:3])
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
    key = _cache_key(entries, root, options)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    meta = _read_cache_meta(meta_path, array_path)
    if meta is None:
        meta = _decode_to_cache(entries, options, array_path, meta_path, progress)
    images = np.load(array_path, mmap_mode="r")
    skipped = skipped + [tuple(s) for s in meta["skipped"]]
    if len(meta["labels"]) == 0:
        raise DataError(f"none of the {len(entries)} image files under {root} could be read "
                        f"(first: {skipped[0][0]}: {skipped[0][1]}); " + ACCEPTED_LAYOUTS)
    _report_skipped(skipped, root)
    return SliceDataset(images=images, labels=np.asarray(meta["labels"], dtype=np.int64),
                        splits=np.asarray(meta["splits"], dtype=str), sources=list(meta["sources"]),
                        skipped=skipped, root=root, cache_path=array_path)


def _read_cache_meta(meta_path: Path, array_path: Path) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
        header_rows = np.load(array_path, mmap_mode="r").shape[0]
    except (OSError, ValueError):
        return None
    return meta if header_rows == len(meta.get("labels", ())) else None


def _decode_to_cache(entries: list[_Entry], options: dict, array_path: Path, meta_path: Path,
                     progress: bool) -> dict:
    """Decode every file (threads: PIL and zlib release the GIL) and write the cache atomically."""
    size = options["image_size"]
    units, skipped = _units(entries, options)
    images, labels, splits, sources = [], [], [], []
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool, _quiet_pil_bomb_warning():
        results = pool.map(_decode_or_reason, [u.decode for u in units], chunksize=16)
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


_CONFIG_SPLITS = object()


def dataset_root(cfg) -> Path:
    """The folder a RunConfig reads; `data_root=None` is the embedded phantom dataset (built on first use)."""
    if cfg.data_root is None:
        from brainlib.phantom import ensure_default_dataset  # scipy: only to build the default dataset
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


# ----------------------------------------------------------------------
# Census.

def _inspect(path: Path) -> dict:
    """Size, mode and type of one file, or the reason it cannot be used."""
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    try:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib
            img = nib.load(str(path))
            if len([d for d in img.shape if d > 1]) > 3 or len(img.shape) > 4:
                raise SkippedFile(f"{len(img.shape)}D volume of shape {tuple(img.shape)}: expected one 3D volume per file")
            data = np.asarray(img.dataobj, dtype=np.float32)
            if not np.isfinite(data).all():
                raise SkippedFile(f"volume contains {int((~np.isfinite(data)).sum())} NaN/infinite voxels")
            return dict(type=suffix, size="x".join(map(str, img.shape)), mode=str(img.get_data_dtype()))
        from PIL import Image
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
        return dict(reason=f"could not be read: {type(e).__name__}: {e}")


def census(root, *, class_dirs=None) -> dict:
    """Counts per split and class, image sizes, modes and file types seen, and skipped files
    with reasons. JSON-able. Reads every file (to find truncated ones) but decodes no cache.

    DICOM files count in `counts` when their series is usable; `series` and `slices` count,
    per split and class, the DICOM series and the slices they give with the default options."""
    root = Path(root).expanduser()
    class_dirs = {"AD": "AD", "NC": "NC", **(class_dirs or {})}
    if not root.exists() or not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder; " + ACCEPTED_LAYOUTS)
    layout, base = _layout(root, class_dirs)
    entries, skipped = [], []
    if layout == "plain":
        found, skipped, _ = discover(base, classes=["AD"], class_dirs=class_dirs)
        entries = [(e, "(one class)") for e in found]
    else:
        for c in ("AD", "NC"):
            try:
                found, junk, _ = discover(base, classes=[c], class_dirs=class_dirs)
            except DataError:
                continue  # a class may be absent; the counts say so
            entries += [(e, c) for e in found]
            skipped += junk
    from collections import Counter
    counts: dict[str, dict[str, int]] = {}
    series: dict[str, dict[str, int]] = {}
    slices: dict[str, dict[str, int]] = {}
    sizes, modes, types = Counter(), Counter(), Counter()
    dicom_groups: dict[tuple[str, str], list[str]] = {}
    for entry, cls in entries:
        if entry.dicom:
            dicom_groups.setdefault((entry.split or "(no split)", cls), []).append(entry.path)
    entries = [(e, cls) for e, cls in entries if not e.dicom]
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool, _quiet_pil_bomb_warning():
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
    for (entry, cls), info in zip(entries, infos):
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
    """The census as readable text (`show_root=False` for output that must not depend on paths)."""
    lines = [f"dataset: {report['root']}"] if show_root else []
    lines.append(f"layout: {report['layout']}   class folders: "
                 + ", ".join(f"{k}={v}" for k, v in report["class_dirs"].items()))
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
        lines.append(f"  {s['path']}: {s['reason']}")
    if report["n_skipped"] > max_skipped:
        lines.append(f"  ... and {report['n_skipped'] - max_skipped} more")
    return "\n".join(lines)


def format_skipped(dataset: SliceDataset, max_lines: int = 20) -> str:
    """The skipped files of a loaded dataset, one per line with the reason."""
    if not dataset.skipped:
        return "no files skipped"
    lines = [f"{len(dataset.skipped)} files skipped:"]
    lines += [f"  {p}: {r}" for p, r in dataset.skipped[:max_lines]]
    if len(dataset.skipped) > max_lines:
        lines.append(f"  ... and {len(dataset.skipped) - max_lines} more")
    return "\n".join(lines)
