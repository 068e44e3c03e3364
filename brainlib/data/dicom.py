"""DICOM input: files grouped into series, series stacked into volumes, volumes sliced as NIfTI.

A class folder may hold one series per sub-folder or the files of several series
mixed together; files are grouped by SeriesInstanceUID (within one class and split).
Per series:

- several single-frame files with ImagePositionPatient and ImageOrientationPatient:
  a volume, its files ordered by position along the slice normal, RescaleSlope and
  RescaleIntercept applied, then reoriented to RAS and sliced by `data.slice_volume`,
  exactly as a NIfTI volume (same axis, band and empty-slice rule);
- a multi-frame file with per-frame positions (enhanced MR/CT): a volume the same way;
- a single-frame file, or files without position and orientation: one 2D slice each;
- a multi-frame file without per-frame positions (a cine loop): one 2D slice per frame.

Sizes are checked from the headers before any pixel is read: at most MAX_PIXELS per frame and
MAX_VOXELS per file or series (slices.py), uncompressed pixel data no larger than the file, and a
deflated file (Deflated Explicit VR Little Endian) inflated first as a stream, nothing kept,
to at most DEFLATED_LIMIT bytes.

Skipped with a reason, never raised: files that are not DICOM, files without pixel data
(structured reports, presentation states, DICOMDIR), non-anatomical objects (segmentations,
dose grids), compressed pixel data no installed decoder can read, truncated pixel data, files
over the size limits, and inconsistent series (mixed sizes or orientations, two files at one
position, missing slices).
pydicom is imported only when a DICOM file is read.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainlib.data.slices import MAX_PIXELS, MAX_VOXELS, SkippedFile, canonical_volume, scale_slice, slice_volume

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NOT_ANATOMY = {"SEG": "segmentation", "RTDOSE": "radiotherapy dose grid", "RTSTRUCT": "radiotherapy structure set",
               "RTPLAN": "radiotherapy plan", "SR": "structured report", "PR": "presentation state",
               "KO": "key object selection", "REG": "registration", "DOC": "encapsulated document"}
GAP_TOLERANCE = 1.5  # a step this many times the median slice spacing means missing slices
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)
DEFLATED_LIMIT = 2 * MAX_VOXELS  # bytes a deflated file may inflate to: MAX_VOXELS 16-bit voxels (256 MiB)


def is_dicom(path: str | Path) -> bool:
    """A DICOM file by name (.dcm, .dicom, .ima) or by the 'DICM' marker after the 128-byte preamble."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@dataclass
class Series:
    """Files that become slices together. `kind`: "volume" (stacked along the slice normal),
    "image" (one single-frame file: one slice) or "frames" (one multi-frame file, a slice per frame)."""
    uid: str
    files: list[str]  # a volume's files in slice order
    kind: str
    size: str  # "<columns>x<rows>"
    mode: str  # photometric interpretation and bits, e.g. "MONOCHROME2 16-bit"
    affine: np.ndarray | None = None  # volume index (row, column, slice) -> RAS mm
    frame_order: list[int] | None = None  # a multi-frame volume's frames in slice order

    def describe(self) -> str:
        return f"series {self.uid} ({len(self.files)} files)" if len(self.files) > 1 else f"series {self.uid}"


@dataclass
class _Header:
    path: str
    uid: str | None
    rows: int
    columns: int
    frames: int
    mode: str
    orientation: np.ndarray | None  # 6 direction cosines (row, then column direction)
    position: np.ndarray | None  # ImagePositionPatient (LPS mm)
    spacing: tuple[float, float]  # between rows, between columns (mm)
    frame_positions: np.ndarray | None  # [frames, 3] for multi-frame files that have them


# ----------------------------------------------------------------------
# Headers and series


def _floats(value, n: int) -> np.ndarray | None:
    try:
        a = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.shape == (n,) and np.isfinite(a).all() else None


def _functional(ds, group: str, sequence: str, keyword: str, frame: int | None = None):
    """A value from the shared (or one frame's) functional groups of an enhanced multi-frame file."""
    groups = ds.get(group)
    if not groups:
        return None
    item = groups[frame if frame is not None else 0]
    inner = item.get(sequence)
    return inner[0].get(keyword) if inner else None


def _deflated_offset(path: str) -> int | None:
    """Where the deflated data set starts, for a file in Deflated Explicit VR Little Endian; else None."""
    from pydicom.filereader import read_dataset, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    with open(path, "rb") as f:
        if read_preamble(f, True) is None:
            return None  # no DICM marker: no file meta information, so not deflated
        meta = read_dataset(f, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        return f.tell() if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian else None


def _inflated_size(path: str, offset: int, limit: int) -> int | None:
    """The bytes the deflate stream from `offset` inflates to, counted with nothing kept
    (4 MiB at a time); None as soon as it passes `limit`."""
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as f:
        f.seek(offset)
        while (chunk := f.read(1 << 20)) and not inflater.eof:
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 22))
                if total > limit:
                    return None
                chunk = inflater.unconsumed_tail
    return total + len(inflater.flush())


def _check_size(ds, rows: int, columns: int, frames: int, available: int, compressed: bool, deflated: bool) -> None:
    """Raises SkippedFile when the header claims more pixels than the limits allow, or (pixel
    data not compressed) more bytes of pixel data than the file holds (`available`, inflated)."""
    if rows * columns > MAX_PIXELS:
        raise SkippedFile(f"oversized DICOM image: {columns}x{rows} (Columns x Rows) = {rows * columns:,} pixels, "
                          f"over the per-image limit of {MAX_PIXELS:,}")
    if rows * columns * frames > MAX_VOXELS:
        raise SkippedFile(f"oversized DICOM file: {frames} frames of {columns}x{rows} = {rows * columns * frames:,} "
                          f"pixels, over the per-file limit of {MAX_VOXELS:,}")
    try:
        bits, samples = int(ds.get("BitsAllocated")), int(ds.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError):
        return  # no usable BitsAllocated: decoding says what is wrong
    needed = (rows * columns * frames * samples * bits + 7) // 8
    if not compressed and needed > available:
        frames_text = f" x {frames} frames" if frames > 1 else ""
        samples_text = f" x {samples} samples" if samples > 1 else ""
        raise SkippedFile(f"short DICOM file: the header claims {columns}x{rows}{frames_text} at {bits} bits"
                          f"{samples_text}, {needed:,} bytes of pixel data, but the file "
                          f"{'inflates to' if deflated else 'holds'} {available:,}")


def _header(path: str) -> _Header:
    """The geometry and pixel description of one file (pixel data not read); raises SkippedFile."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        available, deflated = os.path.getsize(path), _deflated_offset(path)
        if deflated is not None:
            available = _inflated_size(path, deflated, DEFLATED_LIMIT)
            if available is None:
                raise SkippedFile(f"oversized deflated DICOM file: it inflates to more than {DEFLATED_LIMIT:,} bytes, "
                                  "the per-file limit")
        ds = pydicom.dcmread(path, defer_size=1024, force=path.lower().endswith(DICOM_SUFFIXES))
    except SkippedFile:
        raise
    except InvalidDicomError as e:
        raise SkippedFile(f"not a DICOM file: {e}") from None
    except Exception as e:  # pydicom raises many types on damaged headers
        raise SkippedFile(f"unreadable DICOM header: {type(e).__name__}: {e}") from None
    modality = str(ds.get("Modality", "") or "")
    if not getattr(ds, "file_meta", None) and not any(k in ds for k in ("SOPClassUID", "Modality", "Rows")):
        raise SkippedFile("not a DICOM file: no DICM marker and no DICOM image elements")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
        kind = getattr(kind, "name", None) or (f"Modality {modality}" if modality else "unknown object")
        raise SkippedFile(f"no pixel data ({kind}): expected an image")
    if modality in NOT_ANATOMY:
        raise SkippedFile(f"Modality {modality} ({NOT_ANATOMY[modality]}): expected an image of anatomy")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or columns < 1:
        raise SkippedFile(f"image size {columns}x{rows} (Columns x Rows): expected both at least 1")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    syntax = getattr(getattr(ds, "file_meta", None), "get", lambda _: None)("TransferSyntaxUID")
    _check_size(ds, rows, columns, frames, available, compressed=bool(getattr(syntax, "is_compressed", False)),
                deflated=deflated is not None)
    bits = ds.get("BitsAllocated")
    mode = f"{ds.get('PhotometricInterpretation', 'MONOCHROME2')} {bits}-bit" if bits else \
        str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    orientation = _floats(ds.get("ImageOrientationPatient")
                          or _functional(ds, "SharedFunctionalGroupsSequence", "PlaneOrientationSequence",
                                         "ImageOrientationPatient") or (), 6)
    spacing = _floats(ds.get("PixelSpacing")
                      or _functional(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "PixelSpacing")
                      or (1.0, 1.0), 2)
    frame_positions = None
    if frames > 1 and ds.get("PerFrameFunctionalGroupsSequence"):
        found = [_floats(_functional(ds, "PerFrameFunctionalGroupsSequence", "PlanePositionSequence",
                                     "ImagePositionPatient", i) or (), 3) for i in range(frames)]
        if all(p is not None for p in found):
            frame_positions = np.stack(found)
    uid = ds.get("SeriesInstanceUID")
    return _Header(path=path, uid=str(uid) if uid else None, rows=rows, columns=columns, frames=frames, mode=mode,
                   orientation=orientation, position=_floats(ds.get("ImagePositionPatient") or (), 3),
                   spacing=tuple(spacing) if spacing is not None else (1.0, 1.0), frame_positions=frame_positions)


def _stack_geometry(positions: np.ndarray, orientation: np.ndarray, spacing: tuple[float, float],
                    names: list[str]) -> tuple[list[int], np.ndarray]:
    """Slice order along the normal and the RAS affine of the stacked volume; raises SkippedFile
    when two slices share a position or a step is a gap (missing slices)."""
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    along = positions @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    steps = np.diff(along[order])
    typical = float(np.median(steps))
    if typical <= 1e-4 or steps.min() <= 1e-3 * max(typical, 1e-3):
        i = int(np.argmin(steps))
        raise SkippedFile(f"inconsistent series: {names[order[i]]} and {names[order[i + 1]]} lie at the same "
                          f"position ({along[order[i]]:.2f} mm along the slice normal; several echoes or time "
                          "points in one series?): expected one slice per position")
    if steps.max() > GAP_TOLERANCE * typical:
        i = int(np.argmax(steps))
        raise SkippedFile(f"inconsistent series: missing slices, a gap of {steps[i]:.2f} mm after {names[order[i]]} "
                          f"where the other slices are {typical:.2f} mm apart")
    step = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = col_dir * spacing[0], row_dir * spacing[1]
    lps[:3, 2], lps[:3, 3] = step, positions[order[0]]
    return order, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS to NIfTI's RAS


def _volume_series(uid: str, headers: list[_Header]) -> Series:
    """Several single-frame files of one series as a volume; raises SkippedFile when inconsistent."""
    sizes = sorted({f"{h.columns}x{h.rows}" for h in headers})
    if len(sizes) > 1:
        n = {s: sum(f"{h.columns}x{h.rows}" == s for h in headers) for s in sizes}
        counts = ", ".join(f"{s} ({n[s]} file{'s' * (n[s] > 1)})" for s in sizes)
        raise SkippedFile(f"inconsistent series: mixed image sizes {counts}; expected one size per series")
    if any(h.orientation is None or h.position is None for h in headers):
        missing = sum(h.orientation is None or h.position is None for h in headers)
        raise SkippedFile(f"inconsistent series: {missing} of {len(headers)} files lack ImagePositionPatient or "
                          "ImageOrientationPatient; expected them in every file of a volume")
    if not all(np.allclose(h.orientation, headers[0].orientation, atol=1e-3) for h in headers):
        raise SkippedFile("inconsistent series: mixed slice orientations (ImageOrientationPatient); "
                          "expected one orientation per series")
    if len({h.spacing for h in headers}) > 1:
        raise SkippedFile("inconsistent series: mixed PixelSpacing; expected one pixel spacing per series")
    voxels = headers[0].rows * headers[0].columns * len(headers)
    if voxels > MAX_VOXELS:
        raise SkippedFile(f"oversized series: {len(headers)} files of {sizes[0]} = {voxels:,} voxels, over the "
                          f"per-series limit of {MAX_VOXELS:,}")
    order, affine = _stack_geometry(np.stack([h.position for h in headers]), headers[0].orientation,
                                    headers[0].spacing, [Path(h.path).name for h in headers])
    return Series(uid, [headers[i].path for i in order], "volume", sizes[0], headers[0].mode, affine)


def _multiframe_series(h: _Header) -> Series:
    """One multi-frame file: a volume when every frame has a position, else one slice per frame."""
    size = f"{h.columns}x{h.rows}"
    uid = h.uid or h.path
    if h.frame_positions is None or h.orientation is None:
        return Series(uid, [h.path], "frames", size, h.mode)
    order, affine = _stack_geometry(h.frame_positions, h.orientation, h.spacing,
                                    [f"{Path(h.path).name} frame {i}" for i in range(h.frames)])
    return Series(uid, [h.path], "volume", size, h.mode, affine, frame_order=order)


def find_series(paths: list[str]) -> tuple[list[Series], list[tuple[str, str]]]:
    """Group DICOM files (of one class and split) into series; (series, [(path, reason)] skipped).

    Reads headers only. Series come in the order of their first file's path."""
    headers, skipped = [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")  # pydicom warns about every odd value it tolerates
        for path in sorted(paths):
            try:
                headers.append(_header(path))
            except SkippedFile as e:
                skipped.append((path, str(e)))
            except Exception as e:  # a malformed functional group or value: never a traceback on user data
                skipped.append((path, f"unreadable DICOM header: {type(e).__name__}: {e}"))
    groups: dict[str, list[_Header]] = {}
    for h in headers:
        groups.setdefault(h.uid or f"(no SeriesInstanceUID) {h.path}", []).append(h)
    series = []
    for uid, members in groups.items():
        single = [h for h in members if h.frames == 1]
        multi = [h for h in members if h.frames > 1]
        for h in multi:
            try:
                series.append(_multiframe_series(h))
            except SkippedFile as e:
                skipped.append((h.path, str(e)))
        if len(single) == 1 or (single and all(h.orientation is None and h.position is None for h in single)):
            series += [Series(h.uid or h.path, [h.path], "image", f"{h.columns}x{h.rows}", h.mode) for h in single]
        elif single:
            try:
                series.append(_volume_series(uid, single))
            except SkippedFile as e:
                skipped.append((single[0].path, f"series {uid} of {len(single)} files skipped: {e}"))
    return sorted(series, key=lambda s: s.files[0]), skipped


# ----------------------------------------------------------------------
# Pixels


def _decode_failure(ds, error: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "get", lambda _: None)("TransferSyntaxUID")
    message = " ".join(str(error).split())
    if syntax is not None and getattr(syntax, "is_compressed", False):
        return (f"compressed pixel data ({syntax.name}) that no installed decoder can read: {message} "
                "(pydicom's decoder plugins, e.g. pylibjpeg with pylibjpeg-libjpeg, add support)")
    return f"pixel data cannot be decoded: {message}"


def _grey_pixels(path: str) -> tuple[np.ndarray, bool]:
    """float32 [frames, rows, columns] in the scanner's units (modality LUT applied; colour
    images as luminance) and whether the file is MONOCHROME1 (bright means low)."""
    import pydicom
    try:
        from pydicom.pixels import apply_color_lut, apply_modality_lut
    except ImportError:  # pydicom 2.4
        from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut
    try:
        ds = pydicom.dcmread(path, force=path.lower().endswith(DICOM_SUFFIXES))
    except Exception as e:
        raise SkippedFile(f"unreadable DICOM file: {type(e).__name__}: {e}") from None
    try:
        pixels = ds.pixel_array
    except Exception as e:  # missing decoder, truncated or malformed pixel data
        raise SkippedFile(_decode_failure(ds, e)) from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames") or 1)
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.shape[-1] == 3 and pixels.ndim == (4 if frames > 1 else 3):
        if photometric.startswith("YBR") and int(pydicom.__version__.split(".")[0]) < 3:
            grey = pixels[..., 0].astype(np.float32)  # pydicom 2 leaves YBR as stored: Y is the luminance
        else:
            grey = pixels.astype(np.float32) @ LUMINANCE
    else:
        grey = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    grey = grey.reshape(frames, *grey.shape[-2:])
    if not np.isfinite(grey).all():
        raise SkippedFile(f"pixel data contains {int((~np.isfinite(grey)).sum())} NaN/infinite values")
    return grey, photometric == "MONOCHROME1"


def _volume(series: Series) -> np.ndarray:
    """The series' pixels as float32 [rows, columns, slices] in slice order."""
    if series.frame_order is not None:
        grey, inverted = _grey_pixels(series.files[0])
        stack = grey[series.frame_order]
    else:
        slices, inverted = [], False
        for path in series.files:
            grey, inverted = _grey_pixels(path)
            if slices and grey.shape != (1, *slices[0].shape):
                raise SkippedFile(f"{path}: pixel data of shape {grey.shape[1:]}, expected {slices[0].shape}")
            slices.append(grey[0])
        stack = np.stack(slices)
    if inverted:
        stack = stack.max() - stack
    return np.moveaxis(stack, 0, -1)


def decode_series(series: Series, image_size: int, pad_to_square: bool, axis: int = 2,
                  band: tuple[float, float] = (0.25, 0.75)) -> list[tuple[str, np.ndarray]]:
    """One series -> [(source, uint8 [S, S])]; raises SkippedFile with the reason.

    Sources: the file for a single image, `<file>#<frame>` for frames, and
    `<folder>#series=<uid>#<slice>` for a volume (slice index after reorientation to RAS)."""
    import nibabel as nib
    if series.kind == "volume":
        try:
            volume = canonical_volume(nib.Nifti1Image(_volume(series), series.affine))
            slices = slice_volume(volume, image_size, pad_to_square, axis, band)
        except SkippedFile as e:
            raise SkippedFile(f"{series.describe()} skipped: {e}" if len(series.files) > 1 else str(e)) from None
        where = f"{Path(series.files[0]).parent}#series={series.uid}"
        return [(f"{where}#{k}", image) for k, image in slices]
    grey, inverted = _grey_pixels(series.files[0])
    if inverted:
        grey = grey.max() - grey
    if series.kind == "image":
        return [(series.files[0], scale_slice(grey[0], image_size, pad_to_square))]
    out = []
    for i, frame in enumerate(grey):
        try:
            out.append((f"{series.files[0]}#{i}", scale_slice(frame, image_size, pad_to_square)))
        except SkippedFile:
            continue  # an empty frame of a cine loop
    if not out:
        raise SkippedFile(f"all {len(grey)} frames are empty (constant intensity)")
    return out


def inspect_series(paths: list[str], axis: int = 2,
                   band: tuple[float, float] = (0.25, 0.75)) -> tuple[list[tuple[Series, int]], list[tuple[str, str]]]:
    """For a census: each usable series with the number of slices it gives (decoded at 8 px),
    and the files skipped with their reasons."""
    series, skipped = find_series(paths)
    usable = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        for s in series:
            try:
                usable.append((s, len(decode_series(s, 8, False, axis, band))))
            except SkippedFile as e:
                skipped.append((s.files[0], str(e)))
            except Exception as e:  # never a traceback on user data
                skipped.append((s.files[0], f"could not be decoded: {type(e).__name__}: {e}"))
    return usable, skipped
