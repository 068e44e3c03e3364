"""A corpus of the bad (and awkward-but-fine) files users' datasets contain, built into a
folder at test time, with the outcome brainlib.data.dataset must give each one.

`build_corpus(root)` writes `<root>/{AD,NC}/...` and returns the table of cases."""
from __future__ import annotations

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
