"""2-D slices in the dataset's form (uint8, square, intensity-scaled) from scan images and
volumes, and the size limits every reader checks before it allocates: shared by the NIfTI
and image readers (decoding.py) and the DICOM reader (dicom.py)."""
from __future__ import annotations

import numpy as np
from PIL import Image

EMPTY_SLICE_FRACTION = 0.02  # a slice with less foreground than this is left out
MAX_PIXELS = 64_000_000  # per 2D image or DICOM frame: larger ones are skipped as decompression bombs
MAX_VOXELS = 512 ** 3  # per NIfTI file, DICOM series or multi-frame file (512 MiB as float32): larger are skipped


class SkippedFile(Exception):
    """One file cannot be used; the message is the reason."""


def one_line(error: BaseException) -> str:
    """`Type: message` on one line (nibabel's, numpy's and pydicom's messages may span several)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _pad_to_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    s = max(h, w)
    out = np.zeros((s, s), a.dtype)
    out[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = a
    return out


def resize_slice(a: np.ndarray, image_size: int, pad_to_square: bool) -> np.ndarray:
    """float [H, W] in 0..255 -> uint8 [S, S], antialiased (Lanczos)."""
    if pad_to_square:
        a = _pad_to_square(a)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.float32))
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)


def _nifti_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A 2D slice of a RAS volume, display-oriented: superior/anterior up.

    A view, whatever the volume's memory order: nibabel's arrays are column-major, and
    `np.take` would first copy the whole volume into row-major order, once per slice."""
    return volume[(slice(None),) * axis + (index,)].T[::-1]


def canonical_volume(img) -> np.ndarray:
    """A nibabel image -> float32 3D volume reoriented to RAS (axis 2 axial, 1 coronal, 0 sagittal).

    Raises SkippedFile for 4D data and NaN or infinite voxels."""
    import nibabel as nib
    img = nib.as_closest_canonical(img)
    shape = img.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise SkippedFile(f"{len(shape)}D volume of shape {tuple(img.shape)}: expected one 3D volume per file")
    volume = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    if not np.isfinite(volume).all():
        raise SkippedFile(f"volume contains {int((~np.isfinite(volume)).sum())} NaN/infinite voxels")
    return volume


def _intensity_top(values: np.ndarray) -> float:
    """The 99.5th percentile of the foreground of `values` (already shifted to a minimum of 0)."""
    values = values.ravel(order="K")  # in memory order: a view, where boolean indexing of a
    foreground = values[values > 0]  # column-major volume would gather it in row-major order
    if foreground.size == 0:
        raise SkippedFile("image is empty (constant intensity)")
    return float(np.percentile(foreground, 99.5)) or float(foreground.max())


def scale_slice(image: np.ndarray, image_size: int, pad_to_square: bool) -> np.ndarray:
    """One 2D scan image (any intensity unit) -> uint8 [S, S], scaled as volumes are."""
    image = np.asarray(image, dtype=np.float32)
    image = image - image.min()
    return resize_slice(np.clip(image / _intensity_top(image), 0, 1) * 255.0, image_size, pad_to_square)


def slice_volume(volume: np.ndarray, image_size: int, pad_to_square: bool, axis: int = 2,
                 band: tuple[float, float] = (0.25, 0.75)) -> list[tuple[int, np.ndarray]]:
    """A RAS volume -> [(slice index, uint8 [S, S])] over the band, near-empty slices left out.

    Intensities are scaled per volume (0 .. 99.5th percentile of the foreground)."""
    if not 0 <= axis <= 2:
        raise ValueError(f"nifti_axis={axis} must be 0 (sagittal), 1 (coronal) or 2 (axial)")
    lo, hi = band
    n = volume.shape[axis]
    first, last = int(np.floor(lo * n)), int(np.ceil(hi * n))
    volume = volume - volume.min()
    try:
        top = _intensity_top(volume)
    except SkippedFile:
        raise SkippedFile("volume is empty (constant intensity)") from None
    out = []
    for k in range(max(first, 0), min(last, n)):
        s = _nifti_slice(volume, axis, k)
        if (s > 0.05 * top).mean() < EMPTY_SLICE_FRACTION:
            continue
        out.append((k, resize_slice(np.clip(s / top, 0, 1) * 255.0, image_size, pad_to_square)))
    if not out:
        raise SkippedFile(f"no non-empty slices in band {band} along axis {axis}")
    return out
