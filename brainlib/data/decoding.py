"""Decoding one file (a 2D image, a NIfTI volume) or one DICOM series into uint8 slices,
and the list of decoding jobs for a dataset; unusable input raises `SkippedFile` with the reason."""
from __future__ import annotations

import errno
import gzip
import os
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from brainlib.data.dicom import decode_series, find_series
from brainlib.data.discovery import NIFTI_SUFFIXES, FileEntry
from brainlib.data.slices import (
    MAX_PIXELS,
    MAX_VOXELS,
    SkippedFile,
    canonical_volume,
    one_line,
    resize_slice,
    slice_volume,
)


def _to_greyscale(im) -> np.ndarray:
    """A PIL image of any common mode -> float32 [H, W] in 0..255."""
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


def open_nifti(path: Path):
    """nibabel's image of `path`, its header checked before any voxel is read: one 3D volume
    of at most MAX_VOXELS voxels, and a file (inflated, for .nii.gz) long enough for what the
    header claims. Raises SkippedFile with the reason."""
    import nibabel as nib
    try:
        img = nib.load(str(path))  # the header only; voxels are read on first use
        dtype = img.header.get_data_dtype()
        offset = int(img.header.get_data_offset())
    except PermissionError as e:
        raise SkippedFile(f"permission denied: {e.strerror or e}") from None
    except Exception as e:  # nibabel raises many types on corrupt files
        raise SkippedFile(f"not a readable NIfTI volume: {one_line(e)}") from None
    shape = tuple(int(d) for d in img.shape)
    if len(shape) > 3 and any(d != 1 for d in shape[3:]):
        raise SkippedFile(f"{len(shape)}D volume of shape {shape}: expected one 3D volume per file")
    voxels = int(np.prod(shape, dtype=np.int64))
    size = "x".join(map(str, shape))
    if voxels > MAX_VOXELS:
        raise SkippedFile(f"oversized NIfTI volume: the header claims {size} = {voxels:,} voxels, over the "
                          f"per-file limit of {MAX_VOXELS:,}")
    needed = offset + voxels * dtype.itemsize
    try:
        held = _gzip_size(path, needed) if path.name.lower().endswith(".gz") else path.stat().st_size
    except (OSError, EOFError, zlib.error) as e:
        raise SkippedFile(f"damaged NIfTI file: {one_line(e)}") from None
    if held < needed:
        holds = "inflates to" if path.name.lower().endswith(".gz") else "holds"
        raise SkippedFile(f"short NIfTI file: the header claims {size} voxels of {dtype}, {needed:,} bytes with "
                          f"the header, but the file {holds} {held:,}")
    return img


def _gzip_size(path: Path, needed: int) -> int:
    """The inflated size of a gzip file, as far as `needed` bytes: its trailer's ISIZE when that
    is enough (the last member's size modulo 4 GiB), else counted in a stream, nothing kept."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        size = int.from_bytes(f.read(4), "little")
    if size >= needed:
        return size
    size = 0
    with gzip.open(path, "rb") as f:
        while size < needed and (chunk := f.read(1 << 22)):
            size += len(chunk)
    return size


def nifti_voxels(img) -> np.ndarray:
    """The float32 volume of an image from open_nifti, reoriented to RAS (slices.canonical_volume).
    Raises SkippedFile with the reason (nibabel checks the length of what it reads, too)."""
    try:
        return canonical_volume(img)
    except SkippedFile:
        raise
    except PermissionError as e:
        raise SkippedFile(f"permission denied: {e.strerror or e}") from None
    except (OSError, EOFError, zlib.error) as e:  # nibabel: "Expected n bytes, got m"; gzip: ended early
        claim = f"{'x'.join(map(str, img.shape))} voxels of {img.get_data_dtype()}"
        raise SkippedFile(f"short or damaged NIfTI file: the header claims {claim}, but the data ended early "
                          f"or cannot be read ({one_line(e)})") from None
    except Exception as e:
        raise SkippedFile(f"not a readable NIfTI volume: {one_line(e)}") from None


def decode_nifti(path: Path, image_size: int, pad_to_square: bool, axis: int = 2,
                 band: tuple[float, float] = (0.25, 0.75)) -> list[tuple[int, np.ndarray]]:
    """One NIfTI volume -> [(slice index, uint8 [S, S])] over the band, near-empty slices left out.

    The volume is reoriented to RAS first, so axis 2 is axial, 1 coronal, 0 sagittal;
    intensities are scaled per volume (0 .. 99.5th percentile of the foreground)."""
    return slice_volume(nifti_voxels(open_nifti(path)), image_size, pad_to_square, axis, band)


def decode_file(path: Path, image_size: int, pad_to_square: bool, nifti_axis: int,
                nifti_band: tuple[float, float]) -> list[tuple[str, np.ndarray]]:
    """Any supported file -> [(source, uint8 [S, S])]; raises SkippedFile with the reason."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return [(f"{path}#{k}", a) for k, a in decode_nifti(path, image_size, pad_to_square, nifti_axis, nifti_band)]
    return [(str(path), decode_image(path, image_size, pad_to_square))]


@contextmanager
def quiet_decoder_warnings():
    """PIL's DecompressionBombWarning is redundant with our lower MAX_PIXELS guard."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module="pydicom")  # odd header values it tolerates, from threads
        yield


@dataclass
class DecodingUnit:
    """What decodes as one: a file, or the files of one DICOM series (class and split from `entry`)."""
    entry: FileEntry
    decode: Callable[[], list[tuple[str, np.ndarray]]]


def decoding_units(entries: list[FileEntry], options: dict) -> tuple[list[DecodingUnit], list[tuple[str, str]]]:
    """Decoding jobs in dataset order, and the DICOM files that fit no series."""
    args = (options["image_size"], options["pad"], options["nifti_axis"], tuple(options["nifti_band"]))
    units = [DecodingUnit(e, partial(decode_file, Path(e.path), *args)) for e in entries if not e.dicom]
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple[int, str], list[FileEntry]] = {}
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
            units += [DecodingUnit(by_path[s.files[0]], partial(decode_series, s, *args)) for s in series]
    return sorted(units, key=lambda u: (-u.entry.label, u.entry.split, u.entry.path)), skipped


def decode_or_reason(decode: Callable[[], list[tuple[str, np.ndarray]]]) -> list[tuple[str, np.ndarray]] | str:
    try:
        return decode()
    except SkippedFile as e:
        return str(e)
    except Exception as e:  # never a bare traceback on user data
        return f"could not be decoded: {type(e).__name__}: {e}"


