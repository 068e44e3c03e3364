"""A corpus of the bad (and awkward-but-fine) files users' datasets contain, built into a
folder at test time, with the outcome brainlib.data.dataset must give each one.

`build_corpus(root)` writes `<root>/{AD,NC}/...` and returns the table of cases."""
from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    path: str  # relative to the corpus root
    outcome: str  # "accepted" or "skipped"
    reason: str = ""  # a phrase the skip reason must contain (lower case)


CASES = [
    Case("AD/good_0.jpeg", "accepted"),
    Case("AD/good_1.bmp", "accepted"),
    Case("AD/good_2.tiff", "accepted"),
    Case("AD/cmyk.jpg", "accepted"),
    Case("AD/rgba.png", "accepted"),
    Case("AD/sixteen_bit.png", "accepted"),
    Case("AD/._good_0.jpeg", "skipped", "appledouble"),
    Case("AD/__MACOSX", "skipped", "__macosx"),
    Case("AD/.DS_Store", "skipped", ".ds_store"),
    Case("AD/readme.txt", "skipped", "not an image"),
    Case("AD/zero_bytes.png", "skipped", "0 bytes"),
    Case("AD/truncated.jpg", "skipped", "truncated"),
    Case("AD/text_named.png", "skipped", "not a readable image"),
    Case("AD/huge.png", "skipped", "decompression bomb"),
    Case("AD/pil_bomb.png", "skipped", "decompression bomb"),
    Case("AD/self_loop.png", "skipped", "symlink loop"),
    Case("AD/nested/loop_dir", "skipped", "symlink loop"),
    Case("AD/locked.png", "skipped", "permission denied"),
    Case("NC/good_0.png", "accepted"),
    Case("NC/volume.nii.gz", "accepted"),
    Case("NC/nan.nii.gz", "skipped", "nan"),
    Case("NC/four_d.nii.gz", "skipped", "4d volume"),
]
UNREADABLE = "AD/locked.png"


def brain_like(h: int = 60, w: int = 64, seed: int = 0) -> np.ndarray:
    """A bright ellipse with a dark centre and noise: enough structure to check resizing."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[:h, :w]
    inside = ((r - h / 2) / (0.45 * h)) ** 2 + ((c - w / 2) / (0.4 * w)) ** 2 < 1
    hole = ((r - h / 2) / (0.1 * h)) ** 2 + ((c - w / 2) / (0.08 * w)) ** 2 < 1
    img = inside * 200.0 - hole * 150.0 + rng.normal(0, 5, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixels: enough to trip a pixel-count guard."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def nifti_volume(shape=(20, 24, 16), seed: int = 0) -> np.ndarray:
    """A blob that fills the middle slices of axis 2 and leaves the outer ones empty."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    blob = ((x - shape[0] / 2) / 8) ** 2 + ((y - shape[1] / 2) / 10) ** 2 + ((z - shape[2] / 2) / 5) ** 2 < 1
    return (blob * 1000.0 + rng.normal(0, 1, shape) * blob).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray) -> None:
    import nibabel as nib
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def nifti_header_only(path: Path, shape: tuple[int, ...], dtype=np.uint8, data: bytes = b"\x01" * 64) -> Path:
    """A NIfTI-1 file whose header claims `shape` but holds only `data` after it (gzipped for .gz)."""
    import nibabel as nib
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    buf = io.BytesIO()
    header.write_to(buf)  # 348 bytes, then the 4-byte extension flag: voxels start at 352
    content = buf.getvalue() + data
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


def build_size_claims(root: Path) -> dict[str, str]:
    """<root>/{AD,NC} with a few good slices and, in AD, files whose headers claim more than the
    size limits or more data than they hold; returns {file name: phrase its skip reason contains}."""
    from tests.dicom_files import write_deflated, write_image
    for cls, seed in (("AD", 0), ("NC", 5)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(brain_like(seed=seed + i)).save(root / cls / f"good_{i}.png")
    ad = root / "AD"
    nifti_header_only(ad / "bomb.nii", (2000, 2000, 500))  # 416 bytes claiming 2 GB
    nifti_header_only(ad / "bomb.nii.gz", (2000, 2000, 500), np.float32)
    nifti_header_only(ad / "short.nii", (100, 100, 100), np.float32)
    nifti_header_only(ad / "short.nii.gz", (400, 400, 400), np.float32)  # 256 MB claimed, under the limit
    write_deflated(ad / "deflate_bomb.dcm", 16000, 16000, 16000 * 16000 * 2)  # ~500 KB inflating to 512 MB
    write_deflated(ad / "deflate_claim.dcm", 16000, 16000, 64)  # a header's claim, no pixels behind it
    write_image(ad / "short.dcm", np.zeros((4, 4)), "1.2.826.0.1.3680043.8.498.91")
    import pydicom
    short = pydicom.dcmread(ad / "short.dcm")
    short.Rows = short.Columns = 4000  # 16 Mpx claimed, 32 bytes held
    short.save_as(ad / "short.dcm")
    return {"bomb.nii": "oversized nifti volume: the header claims 2000x2000x500",
            "bomb.nii.gz": "oversized nifti volume: the header claims 2000x2000x500",
            "short.nii": "short nifti file: the header claims 100x100x100 voxels of float32",
            "short.nii.gz": "short nifti file: the header claims 400x400x400 voxels of float32",
            "deflate_bomb.dcm": "oversized deflated dicom file",
            "deflate_claim.dcm": "oversized dicom image: 16000x16000",
            "short.dcm": "short dicom file: the header claims 4000x4000 at 16 bits"}


def build_corpus(root: Path) -> list[Case]:
    root = Path(root)
    ad, nc = root / "AD", root / "NC"
    for d in (ad, nc, ad / "__MACOSX", ad / "nested"):
        d.mkdir(parents=True, exist_ok=True)
    img = brain_like()
    Image.fromarray(img).save(ad / "good_0.jpeg", quality=95)
    Image.fromarray(brain_like(seed=1)).save(ad / "good_1.bmp")
    Image.fromarray(brain_like(seed=2)).save(ad / "good_2.tiff")
    Image.fromarray(img).convert("CMYK").save(ad / "cmyk.jpg")
    rgba = np.zeros((60, 64, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the left half is opaque
    rgba[:, :32, 3] = 255
    Image.fromarray(rgba).save(ad / "rgba.png")
    Image.fromarray(img.astype(np.uint16) * 200).save(ad / "sixteen_bit.png")
    (ad / "._good_0.jpeg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 80)
    (ad / "__MACOSX" / "._good_0.jpeg").write_bytes(b"\x00\x05\x16\x07")
    (ad / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (ad / "readme.txt").write_text("scans from site 3\n")
    (ad / "zero_bytes.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(brain_like(120, 128)).save(buf, format="JPEG", quality=95)
    (ad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (ad / "text_named.png").write_text("this is not a picture\n" * 20)
    (ad / "huge.png").write_bytes(png_header_only(10_000, 10_000))  # over our 64 Mpx guard
    (ad / "pil_bomb.png").write_bytes(png_header_only(20_000, 20_000))  # over PIL's own limit too
    os.symlink("self_loop.png", ad / "self_loop.png")
    os.symlink("..", ad / "nested" / "loop_dir")  # AD/nested/loop_dir -> AD
    Image.fromarray(img).save(ad / "locked.png")
    os.chmod(ad / "locked.png", 0)
    Image.fromarray(brain_like(seed=3)).save(nc / "good_0.png")
    save_nifti(nc / "volume.nii.gz", nifti_volume())
    bad = nifti_volume()
    bad[5, 5, 5] = np.nan
    save_nifti(nc / "nan.nii.gz", bad)
    save_nifti(nc / "four_d.nii.gz", np.stack([nifti_volume()] * 3, axis=-1))
    return CASES


def build_imageless_folder(root: Path) -> Path:
    """A folder with class folders that hold no images, only junk."""
    (root / "AD").mkdir(parents=True, exist_ok=True)
    (root / "NC").mkdir(exist_ok=True)
    (root / "AD" / "notes.txt").write_text("todo\n")
    (root / "NC" / ".DS_Store").write_bytes(b"Bud1")
    return root
