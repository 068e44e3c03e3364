"""Finding a dataset's files: the accepted layouts, class and split folders, and the junk
skipped on the way (macOS and Windows metadata, hidden files, symlink loops, empty files)."""
from __future__ import annotations

import errno
import os
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from brainlib.config import CLASS_LABELS
from brainlib.data.dicom import is_dicom

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
ACCEPTED_LAYOUTS = (
    "accepted layouts: <root>/{train,test}/{AD,NC}/<images> (ADNI 2D), <root>/{AD,NC}/<images>, "
    "or <root>/<images> for one class (pass classes=['AD'] or ['NC']); class folder names can be "
    "changed with class_dirs, e.g. {'NC': 'CN'}; images: .jpg .jpeg .png .bmp .tif .tiff .nii .nii.gz "
    "and DICOM series (.dcm or no extension)"
)
EVERY_SPLIT = "to read every split instead, set splits=None (on the command line: --set splits=null)"


class DataError(ValueError):
    """The dataset folder cannot be used; the message names the path and the accepted layouts."""


class EmptyClassError(DataError):
    """A class folder exists but holds no image files."""


class DataWarning(UserWarning):
    """Some files were skipped; the message counts them and names the first few."""


def printable(text: str) -> str:
    """`text` for a terminal or a log line: control and format characters (newline, escape,
    bidirectional overrides, line separators) escaped as \\n, \\x1b, \\u202e..., and bytes that
    were not UTF-8 (Python's surrogate escapes in file names) as \\xff."""
    out = []
    for ch in text:
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


@dataclass
class FileEntry:
    path: str
    label: int
    split: str
    size: int
    mtime_ns: int
    dicom: bool = False


def is_image_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(IMAGE_SUFFIXES) or lower.endswith(NIFTI_SUFFIXES)


def _is_data_file(path: Path) -> bool:
    return path.is_file() and (is_image_name(path.name) or is_dicom(path))


def _junk_reason(name: str, path: str) -> str | None:
    if name.startswith("._"):
        return "macOS AppleDouble metadata file (._*)"
    if name == ".DS_Store":
        return "macOS folder metadata (.DS_Store)"
    if name in ("Thumbs.db", "desktop.ini"):
        return "Windows folder metadata"
    if name.startswith("."):
        return "hidden file"
    if not is_image_name(name) and not is_dicom(path):
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


def find_layout(root: Path, class_dirs: dict[str, str]) -> tuple[str, Path]:
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
             splits: Iterable[str] | None = None) -> tuple[list[FileEntry], list[tuple[str, str]], str]:
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
    layout, base = find_layout(root, {c: class_dirs[c] for c in CLASS_LABELS})
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

    entries: list[FileEntry] = []
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
            entries.append(FileEntry(found.path, label, split, st.st_size, st.st_mtime_ns,
                                  dicom=not is_image_name(found.name) and is_dicom(found.path)))
    for c in classes:
        if not any(e.label == CLASS_LABELS[c] for e in entries):
            where = [str(f) for f, label, _ in groups if label == CLASS_LABELS[c]]
            raise EmptyClassError(f"class {c} has no image files in {', '.join(where)}; " + ACCEPTED_LAYOUTS)
    return entries, skipped, layout


