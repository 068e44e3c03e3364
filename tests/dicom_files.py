"""DICOM files written at test time with pydicom: volumes as series of single-frame files or
as one enhanced multi-frame file, from a RAS array and its affine (as a NIfTI volume is given).

A volume's voxel (i, j, k) is DICOM pixel (row j, column i) of slice k, so the series
describes exactly the space the affine does and must load like the NIfTI volume."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0])  # NIfTI's RAS to DICOM's LPS


def _dataset(sop_class: str, series_uid: str, rows: int, columns: int, modality: str = "MR"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, series_uid, "1.2.826.0.1.3680043.8.498.1"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def save(ds, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom 3
    except TypeError:  # pydicom 2.4
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def geometry(affine: np.ndarray, k: int) -> tuple[list[float], list[float], list[float]]:
    """(ImageOrientationPatient, ImagePositionPatient, PixelSpacing) of slice k."""
    along_i, along_j = affine[:3, 0], affine[:3, 1]
    orientation = np.concatenate([LPS @ along_i / np.linalg.norm(along_i), LPS @ along_j / np.linalg.norm(along_j)])
    position = LPS @ (affine @ [0, 0, k, 1])[:3]
    return [float(v) for v in orientation], [float(v) for v in position], \
        [float(np.linalg.norm(along_j)), float(np.linalg.norm(along_i))]


def write_series(folder: Path, volume: np.ndarray, affine: np.ndarray, series_uid: str, *,
                 slopes: list[float] | None = None, intercept: float = -100.0, names: list[str] | None = None,
                 sizes: dict[int, tuple[int, int]] | None = None) -> list[Path]:
    """Slice k of `volume` (axis 2) as one file, stored as int16 with RescaleSlope slopes[k] and
    RescaleIntercept `intercept`; `names` (one per slice) lets the file order differ from the
    slice order; `sizes` {k: (rows, columns)} gives some slices a different size."""
    from pydicom.uid import MRImageStorage
    n = volume.shape[2]
    slopes = slopes or [1.0] * n
    names = names or [f"slice_{k:03d}.dcm" for k in range(n)]
    paths = []
    for k in range(n):
        pixels = volume[:, :, k].T  # rows follow j, columns follow i
        if sizes and k in sizes:
            pixels = np.zeros(sizes[k], np.float32)
        ds = _dataset(MRImageStorage, series_uid, *pixels.shape)
        ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing = geometry(affine, k)
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], intercept
        ds.InstanceNumber = n - k  # the opposite of the slice order: only positions may order them
        ds.PixelData = np.rint((pixels - intercept) / slopes[k]).astype("<i2").tobytes()
        paths.append(save(ds, folder / names[k]))
    return paths


def write_multiframe(path: Path, volume: np.ndarray, affine: np.ndarray, series_uid: str,
                     frame_order: list[int] | None = None) -> Path:
    """`volume` as one enhanced MR file, frame f holding slice frame_order[f] with its position."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage
    n = volume.shape[2]
    order = frame_order or list(range(n))
    ds = _dataset(EnhancedMRImageStorage, series_uid, volume.shape[1], volume.shape[0])
    orientation, _, spacing = geometry(affine, 0)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = orientation
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = spacing
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = geometry(affine, k)[1]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = n
    ds.PixelData = np.stack([volume[:, :, k].T for k in order]).round().astype("<i2").tobytes()
    return save(ds, path)


def write_image(path: Path, pixels: np.ndarray, series_uid: str, *, pixel_data: bool = True) -> Path:
    """A single-frame 2D image without position or orientation (a secondary capture)."""
    from pydicom.uid import SecondaryCaptureImageStorage
    ds = _dataset(SecondaryCaptureImageStorage, series_uid, *pixels.shape, modality="OT")
    if pixel_data:
        ds.PixelData = pixels.astype("<i2").tobytes()
    return save(ds, path)


def write_deflated(path: Path, rows: int, columns: int, pixel_bytes: int) -> Path:
    """A 16-bit MR image of Columns x Rows in Deflated Explicit VR Little Endian whose pixel data
    is `pixel_bytes` zero bytes (the header's claim and the data can differ), written without
    ever holding the pixels: a compressed megabyte of zeros, flushed so it stands alone, repeated."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, MRImageStorage
    ds = _dataset(MRImageStorage, "1.2.826.0.1.3680043.8.498.90", rows, columns)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta, body = DicomBytesIO(), DicomBytesIO()
    for f in (meta, body):
        f.is_little_endian, f.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    write_dataset(body, ds)
    pixel_element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")  # (7FE0,0010) OW
    def deflate(data: bytes, mode: int) -> bytes:
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return z.compress(data) + z.flush(mode)
    megabyte = deflate(bytes(1 << 20), zlib.Z_FULL_FLUSH)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(128) + b"DICM" + meta.getvalue())
        f.write(deflate(body.getvalue() + pixel_element, zlib.Z_FULL_FLUSH))
        for _ in range(pixel_bytes >> 20):
            f.write(megabyte)
        f.write(deflate(bytes(pixel_bytes & ((1 << 20) - 1)), zlib.Z_FINISH))
    return path


def mni_volume(step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 T1 template that nilearn ships, every `step`-th voxel: (volume, affine)."""
    import nibabel as nib

    from brainlib.data.phantom import _TEMPLATE, template_dir
    img = nib.load(template_dir() / _TEMPLATE.format("t1"))
    volume = np.asarray(img.dataobj, dtype=np.float32)[::step, ::step, ::step]
    affine = img.affine.copy()
    affine[:3, :3] *= step
    return volume, affine


PYDICOM_SAMPLES = {  # files bundled in pydicom's wheel (never downloaded) -> what the loader must do
    "MR_small_RLE.dcm": "one slice (RLE lossless, pydicom's own decoder)",
    "CT_small.dcm": "one slice",
    "SC_rgb_rle_2frame.dcm": "two slices (multi-frame colour, no positions: one slice per frame)",
    "examples_palette.dcm": "one slice (palette colour)",
    "reportsi.dcm": "skipped: no pixel data (Basic Text SR Storage)",
    "liver_1frame.dcm": "skipped: Modality SEG (segmentation)",
    "SC_rgb_jpeg_gdcm.dcm": "one slice if a JPEG lossless decoder is installed, else skipped",
}
PYDICOM_CT_SERIES = "dicomdirtests/98892001/CT5N"  # five axial CT slices of one series: a volume


def copy_pydicom_samples(folder: Path) -> Path:
    """The pydicom samples above and one five-file CT series (with its DICOMDIR beside it)."""
    import shutil

    from pydicom.data import get_testdata_file
    folder.mkdir(parents=True, exist_ok=True)
    for name in PYDICOM_SAMPLES:
        shutil.copy(get_testdata_file(name, download=False), folder / name)
    ct = Path(get_testdata_file("CT_small.dcm", download=False)).parent / PYDICOM_CT_SERIES
    shutil.copytree(ct, folder / "CT5N")
    shutil.copy(ct.parent / ".." / "DICOMDIR", folder / "DICOMDIR")
    return folder
