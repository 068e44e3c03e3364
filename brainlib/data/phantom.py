"""The embedded default dataset: AD-like and NC-like 2D slices from real anatomy.

ADNI cannot be shipped, so we make ADNI-style slices (256 wide x 240 high greyscale
PNGs, skull-stripped, dark background) from the MNI ICBM152 2009a templates (T1 and
grey/white-matter probability maps) that nilearn ships inside its wheel. The files
are read offline with nibabel; nilearn's fetchers are never called.

Every image is a different plausible brain (elastic and small affine deformation,
tissue contrast, gamma, bias field, Rician noise, slice position). AD images add
atrophy of adjustable severity: enlarged lateral ventricles (a displacement field
pushing the ventricular CSF outward), thinner cortex with wider sulci (grey matter
next to CSF turned into CSF) and medial-temporal tissue loss (around the
hippocampi). NC images get at most mild age-like atrophy, and the AD severity is
drawn around the requested value, so the classes overlap slightly: a linear
classifier on 32x32 pixels does well above chance but not perfectly
(`phantom.json` records its accuracy).

All 3D work happens once per process (the template slices of the chosen band);
per-image work is 2D. Per-image seeds come from (seed, class, index), so building
with several worker processes gives the same bytes as building with one.

brainlib.data.colin27 builds a second set the same way from a real single-subject scan,
with this module's atrophy (`grey_matter_loss`, `_expand_ventricles`), deformation and
dataset writer (`write_dataset`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from brainlib.atomic import atomic_write_json, file_lock
from brainlib.config import project_root
from brainlib.progress import progress_bar

FRAME_HEIGHT, FRAME_WIDTH = 240, 256  # as the ADNI 2D slices
ORIENTATIONS = ("axial", "sagittal", "coronal")
CLASS_INDEX = {"NC": 0, "AD": 1}
TRAIN_FRACTION = 0.8
NC_SEVERITY_RANGE = (0.0, 0.3)  # mild, age-like atrophy
AD_SEVERITY_SPREAD = (0.5, 1.5)  # AD severity ~ U(0.5, 1.5) x the requested severity
_TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_MNI_ORIGIN = np.array([98, 134, 72])  # voxel index of MNI (0, 0, 0) in the 1 mm templates


def template_dir() -> Path:
    """The folder of MNI152 templates inside the installed nilearn package."""
    import importlib.util
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("nilearn is not installed; it ships the MNI152 templates the embedded dataset is built from")
    folder = Path(spec.origin).parent / "datasets" / "data"
    if not (folder / _TEMPLATE.format("t1")).exists():
        raise RuntimeError(f"MNI152 templates not found in {folder}; reinstall nilearn")
    return folder


@lru_cache(maxsize=1)
def load_templates() -> dict[str, np.ndarray]:
    """T1 intensity and tissue maps as float32 [197, 233, 189] (RAS, 1 mm), scaled to [0, 1].

    Adds `brain` (mask), `csf` (brain minus GM and WM), `ventricles` (the central CSF
    cavities) and `mtl` (a soft ellipsoid over each hippocampus)."""
    import nibabel as nib
    folder = template_dir()
    vol = {k: np.asarray(nib.load(folder / _TEMPLATE.format(k)).dataobj, dtype=np.float32) / 255.0
           for k in ("t1", "gm", "wm")}
    brain = ndimage.binary_fill_holes(vol["t1"] > 0.04)
    vol["brain"] = brain.astype(np.float32)
    vol["csf"] = np.clip(1.0 - vol["gm"] - vol["wm"], 0, 1) * vol["brain"]
    vol["ventricles"] = _ventricle_mask(vol).astype(np.float32)
    vol["mtl"] = _medial_temporal_weight(vol["t1"].shape)
    return vol


def _ventricle_mask(vol: dict[str, np.ndarray]) -> np.ndarray:
    """Lateral (and third) ventricles: low-T1 CSF deep inside a central brain box."""
    x, y, z = np.ogrid[:197, :233, :189]
    ox, oy, oz = _MNI_ORIGIN
    central = (abs(x - ox) < 28) & (y > oy - 48) & (y < oy + 32) & (z > oz - 20) & (z < oz + 40)
    deep = ndimage.binary_erosion(vol["brain"] > 0.5, iterations=12)
    cavities = (vol["csf"] > 0.55) & (vol["t1"] < 0.45) & central & deep
    labels, n = ndimage.label(cavities)
    if n == 0:
        return cavities
    sizes = ndimage.sum(cavities, labels, range(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= 200))


def _medial_temporal_weight(shape: tuple[int, ...]) -> np.ndarray:
    """A soft ellipsoid over each hippocampus/amygdala, on the 1 mm template grid."""
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ox, oy, oz = _MNI_ORIGIN
    return medial_temporal_weight(x - ox, y - oy, z - oz)


def medial_temporal_weight(x_mm, y_mm, z_mm) -> np.ndarray:
    """A soft ellipsoid over each hippocampus/amygdala (MNI x=+-28, y=-20, z=-14) at MNI
    coordinates in mm (arrays that broadcast): 1 at the centres, falling off over ~1 cm."""
    weight = np.zeros(np.broadcast_shapes(np.shape(x_mm), np.shape(y_mm), np.shape(z_mm)), np.float32)
    for side in (-1, 1):
        r2 = ((x_mm - side * 28) / 9.0) ** 2 + ((y_mm + 20) / 20.0) ** 2 + ((z_mm + 14) / 10.0) ** 2
        weight = np.maximum(weight, np.exp(-r2).astype(np.float32))
    return weight


# ----------------------------------------------------------------------
# The band of template slices, in display orientation (anterior or superior up).

@dataclass
class SliceAtlas:
    """Maps of one template slice at 1 mm, display-oriented, plus precomputed distances."""
    maps: dict[str, np.ndarray]  # t1, gm, wm, csf, brain, ventricles_smooth, mtl
    dist_to_csf: np.ndarray  # mm from each pixel to the nearest sulcal/outer CSF
    ventricle_pull: np.ndarray  # [2, H, W] gradient of the smoothed ventricle mask


def _display_slice(volume: np.ndarray, orientation: str, index: int) -> np.ndarray:
    if orientation == "axial":  # rows: anterior at the top; columns: x
        return volume[:, :, index].T[::-1]
    if orientation == "coronal":  # rows: superior at the top; columns: x
        return volume[:, index, :].T[::-1]
    return volume[index, :, :].T[::-1, ::-1]  # sagittal: superior up, facing left


def slice_band(orientation: str) -> list[int]:
    """Template slice indices the phantom draws from, per orientation."""
    ox, oy, oz = _MNI_ORIGIN
    if orientation == "axial":  # temporal lobes (hippocampi) up through the ventricle bodies
        return list(range(oz - 14, oz + 29))
    if orientation == "coronal":  # hippocampal bodies to the frontal horns
        return list(range(oy - 38, oy + 11))
    if orientation == "sagittal":  # through the lateral ventricles, either hemisphere
        return list(range(ox - 30, ox - 7)) + list(range(ox + 8, ox + 31))
    raise ValueError(f"orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")


@lru_cache(maxsize=3)
def atlas_band(orientation: str) -> tuple[list[SliceAtlas], tuple[float, float, float]]:
    """The band's slice atlases and the display mapping (centre row, centre col, px per mm)."""
    vol = load_templates()
    atlases, boxes = [], []
    for index in slice_band(orientation):
        maps = {k: np.ascontiguousarray(_display_slice(vol[k], orientation, index))
                for k in ("t1", "gm", "wm", "csf", "brain", "ventricles", "mtl")}
        sulcal_csf = ((maps["csf"] > 0.5) & (maps["ventricles"] < 0.5)) | (maps["brain"] < 0.5)
        dist = ndimage.distance_transform_edt(~sulcal_csf).astype(np.float32)
        smooth = ndimage.gaussian_filter(maps["ventricles"], 3.0)
        pull = np.stack(np.gradient(smooth)).astype(np.float32)
        pull /= max(float(np.abs(pull).max()), 1e-6)
        atlases.append(SliceAtlas(maps, dist, pull))
        rows, cols = np.nonzero(maps["brain"] > 0.5)
        boxes.append((rows.min(), rows.max(), cols.min(), cols.max()))
    b = np.array(boxes)
    r0, r1, c0, c1 = b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max()
    scale = min(0.96 * FRAME_HEIGHT / (r1 - r0 + 1), 0.96 * FRAME_WIDTH / (c1 - c0 + 1))
    return atlases, ((r0 + r1) / 2.0, (c0 + c1) / 2.0, float(scale))


# ----------------------------------------------------------------------
# One image.

def image_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), CLASS_INDEX[class_name], int(index)])


def draw_severity(rng: np.random.Generator, class_name: str, severity: float) -> float:
    if class_name == "AD":
        return float(severity * rng.uniform(*AD_SEVERITY_SPREAD))
    return float(rng.uniform(*NC_SEVERITY_RANGE))


def render_slice(rng: np.random.Generator, atrophy: float, orientation: str = "axial") -> np.ndarray:
    """One phantom image, uint8 [240, 256], with atrophy of the given strength (0 = none)."""
    atlases, (centre_r, centre_c, px_per_mm) = atlas_band(orientation)
    atlas = atlases[rng.integers(len(atlases))]
    image = _atrophied_intensity(atlas, atrophy, rng)
    coords = _sampling_grid(rng, centre_r, centre_c, px_per_mm)
    coords = _expand_ventricles(coords, atlas.ventricle_pull, amplitude_mm=4.0 * atrophy)
    warped = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)
    return _scanner(warped, rng)


def grey_matter_loss(gm: np.ndarray, dist_to_csf_mm: np.ndarray, mtl: np.ndarray, atrophy: float) -> np.ndarray:
    """The grey matter (a share of each pixel) that atrophy of the given strength turns into CSF:
    cortex within 2 mm x atrophy of sulcal CSF (thinner cortex, wider sulci), and medial-temporal
    tissue in proportion to `mtl` (0 to 1 over the hippocampi)."""
    thinning_mm = 2.0 * atrophy
    near_csf = np.clip(1.0 - dist_to_csf_mm / max(thinning_mm, 1e-3), 0, 1) if thinning_mm > 0 else 0.0
    return gm * np.clip(0.85 * near_csf + 0.75 * atrophy * mtl, 0, 1)


def _atrophied_intensity(atlas: SliceAtlas, atrophy: float, rng: np.random.Generator) -> np.ndarray:
    """T1-like intensity from the tissue maps, after grey matter loss next to CSF."""
    m = atlas.maps
    gm_loss = grey_matter_loss(m["gm"], atlas.dist_to_csf, m["mtl"], atrophy)
    gm, csf = m["gm"] - gm_loss, m["csf"] + gm_loss
    c_csf, c_gm, c_wm = rng.uniform(0.06, 0.14), rng.uniform(0.48, 0.6), rng.uniform(0.86, 0.96)
    tissue = c_csf * csf + c_gm * gm + c_wm * m["wm"]
    t1 = m["t1"] * (1.0 - gm_loss) + 0.1 * gm_loss  # the template's own texture, same loss
    return (0.65 * tissue + 0.35 * t1) * m["brain"]


def _smooth_noise(rng: np.random.Generator, grid: int, shape: tuple[int, int]) -> np.ndarray:
    """A smooth random field: normal values on a coarse grid, cubic-spline upsampled."""
    coarse = rng.standard_normal((grid, grid)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _sampling_grid(rng: np.random.Generator, centre_r: float, centre_c: float, px_per_mm: float,
                   template_px_per_mm: float = 1.0) -> np.ndarray:
    """Template coordinates [2, H, W] for each output pixel: a small random affine plus a
    smooth elastic displacement, so every image is a different plausible head. `px_per_mm`:
    output pixels per template pixel; `template_px_per_mm`: template pixels per mm."""
    shape = (FRAME_HEIGHT, FRAME_WIDTH)
    rows, cols = np.mgrid[:FRAME_HEIGHT, :FRAME_WIDTH].astype(np.float32)
    rows -= (FRAME_HEIGHT - 1) / 2.0 + rng.normal(0, 3.0)
    cols -= (FRAME_WIDTH - 1) / 2.0 + rng.normal(0, 3.0)
    angle = np.deg2rad(rng.normal(0, 3.0))
    scale = px_per_mm * rng.uniform(0.93, 1.04)
    aspect = rng.uniform(0.96, 1.04)  # head shape varies a little
    cos, sin = np.cos(angle), np.sin(angle)
    r = (cos * rows - sin * cols) / (scale * aspect)
    c = (sin * rows + cos * cols) / (scale / aspect)
    elastic = rng.uniform(1.0, 3.0) * template_px_per_mm  # 1 to 3 mm
    r += elastic * _smooth_noise(rng, 6, shape)
    c += elastic * _smooth_noise(rng, 6, shape)
    return np.stack([r + centre_r, c + centre_c]).astype(np.float32)


def _expand_ventricles(coords: np.ndarray, pull: np.ndarray, amplitude_mm: float,
                       template_px_per_mm: float = 1.0) -> np.ndarray:
    """Sample from deeper inside the ventricles near their walls, so they look larger: `pull` is
    the gradient of the smoothed ventricle mask, at most 1, moving walls by up to `amplitude_mm`."""
    if amplitude_mm <= 0:
        return coords
    field = np.stack([ndimage.map_coordinates(p, coords, order=1, mode="constant") for p in pull])
    return coords + amplitude_mm * template_px_per_mm * field


def _scanner(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, smooth bias field, Rician noise, then 8-bit with the brain near full scale."""
    image = np.clip(image, 0, None) ** rng.uniform(0.8, 1.25)
    image = image * np.exp(0.08 * _smooth_noise(rng, 3, image.shape))
    sigma = rng.uniform(0.006, 0.025)
    real = image + rng.normal(0, sigma, image.shape)
    imag = rng.normal(0, sigma, image.shape)
    magnitude = np.sqrt(real**2 + imag**2)
    peak = np.percentile(magnitude, 99.7)
    return np.clip(magnitude / peak * rng.uniform(225, 250), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------
# The dataset on disk.

def _split_of(index: int, n_per_class: int) -> str:
    return "train" if index < round(TRAIN_FRACTION * n_per_class) else "test"


def _write_images(job: tuple) -> np.ndarray:
    """Render and write one chunk of images; returns their 32x32 thumbnails for the check."""
    root, class_name, indices, n_per_class, severity, seed, orientation = job
    thumbs = []
    for i in indices:
        rng = image_rng(seed, class_name, i)
        img = render_slice(rng, draw_severity(rng, class_name, severity), orientation)
        path = Path(root) / _split_of(i, n_per_class) / class_name / f"{class_name}_{i:05d}.png"
        Image.fromarray(img).save(path, optimize=False)
        thumbs.append(np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BOX)))
    return np.stack(thumbs)


def linear_separability(thumbs: np.ndarray, labels: np.ndarray, is_train: np.ndarray) -> float | None:
    """Test accuracy of a logistic regression on 32x32 pixels: how visible the class difference is.
    None when a split has too few images of a class to measure it."""
    for part in (labels[is_train], labels[~is_train]):
        if min((part == 0).sum(), (part == 1).sum()) < 2:
            return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    x = thumbs.reshape(len(thumbs), -1).astype(np.float32) / 255.0
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    model.fit(x[is_train], labels[is_train])
    return float(model.score(x[~is_train], labels[~is_train]))


def build_phantom(out: str | Path | None = None, n_per_class: int = 2000, severity: float = 1.0,
                  seed: int = 0, orientation: str = "axial", *, workers: int | None = None,
                  progress: bool = True, replace: bool = True) -> Path:
    """Write `<out>/AD_NC/{train,test}/{AD,NC}/*.png` (80/20 split) and `<out>/AD_NC/phantom.json`.

    The folder is built under a temporary name and renamed when complete, so an
    interrupted build never leaves a half dataset. An existing `<out>/AD_NC` is
    replaced, unless `replace=False` (then a complete one is kept). Returns the AD_NC root."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    check_build_arguments(n_per_class, severity)
    meta = dict(
        source="MNI ICBM152 2009a symmetric templates (T1, GM, WM) shipped with nilearn",
        n_per_class=n_per_class, severity=severity, seed=seed, orientation=orientation,
        frame=[FRAME_WIDTH, FRAME_HEIGHT], train_fraction=TRAIN_FRACTION,
        nc_severity_range=list(NC_SEVERITY_RANGE),
        ad_severity_range=[severity * AD_SEVERITY_SPREAD[0], severity * AD_SEVERITY_SPREAD[1]],
        slice_band=[slice_band(orientation)[0], slice_band(orientation)[-1]],
    )
    out = Path(out) if out is not None else project_root() / "data" / "phantom"
    return write_dataset(out, n_per_class, _write_images, (severity, seed, orientation), meta, "phantom.json",
                         workers=workers, progress=progress, replace=replace, desc="building the embedded dataset")


def check_build_arguments(n_per_class: int, severity: float) -> None:
    if n_per_class < 2:
        raise ValueError(f"n_per_class={n_per_class} must be at least 2 (one train and one test image)")
    if severity < 0:
        raise ValueError(f"severity={severity} must be >= 0")


def write_dataset(out: Path, n_per_class: int, write_chunk: Callable[[tuple], np.ndarray], job_args: tuple,
                  meta: dict, marker: str, *, workers: int | None, progress: bool, replace: bool,
                  desc: str) -> Path:
    """Write `<out>/AD_NC/{train,test}/{AD,NC}/*.png` and `<out>/AD_NC/<marker>` (`meta`, the
    32x32 linear separability of the classes and the build time), building under a temporary
    name and renaming when complete. `write_chunk((root, class, indices, n_per_class, *job_args))`
    renders and writes a chunk of images (seeded per image) and returns their 32x32 thumbnails.
    An existing complete dataset is replaced, or kept with `replace=False`. Returns the AD_NC root."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / "AD_NC"
    staging = Path(tempfile.mkdtemp(prefix=".AD_NC-building-", dir=out))
    start = time.perf_counter()
    try:
        root = staging / "AD_NC"
        for split in ("train", "test"):
            for class_name in ("AD", "NC"):
                (root / split / class_name).mkdir(parents=True)
        chunk = 50
        jobs = [(str(root), c, range(s, min(s + chunk, n_per_class)), n_per_class, *job_args)
                for c in ("AD", "NC") for s in range(0, n_per_class, chunk)]
        workers = workers if workers is not None else (min(2, os.cpu_count() or 1) if n_per_class > 100 else 1)
        bar = progress_bar(total=2 * n_per_class, desc=desc, unit="img", disable=not progress)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                thumbs = []
                for t in pool.map(write_chunk, jobs):
                    thumbs.append(t)
                    bar.update(len(t))
        else:
            thumbs = []
            for job in jobs:
                thumbs.append(write_chunk(job))
                bar.update(len(thumbs[-1]))
        bar.close()
        thumbs = np.concatenate(thumbs)
        labels = np.array([CLASS_INDEX[j[1]] for j in jobs for _ in j[2]])
        is_train = np.array([_split_of(i, n_per_class) == "train" for j in jobs for i in j[2]])
        build_seconds = time.perf_counter() - start
        accuracy = linear_separability(thumbs, labels, is_train)
        meta = dict(
            **meta,
            logistic_regression_32px_test_accuracy=None if accuracy is None else round(accuracy, 4),
            logistic_regression_test_images=int((~is_train).sum()),
            build_seconds=round(build_seconds, 1), workers=workers,
        )
        atomic_write_json(root / marker, meta)
        if replace or not (final / marker).exists():
            _replace_folder(root, final, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _replace_folder(new: Path, final: Path, marker: str) -> None:
    """Move a finished folder into place; an older dataset there is moved aside first."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(new, final)
    except OSError:
        if old is not None and not final.exists():
            os.rename(old, final)
            old = None
        if not (final / marker).exists():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def built_once(out: Path, meta_name: str, build: Callable[[Path], Path]) -> Path:
    """`out/AD_NC`, made by `build(out)` unless its `meta_name` is already there; a second
    process waits for the first build."""
    root = out / "AD_NC"
    if (root / meta_name).exists():
        return root
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".build.lock"):
        if (root / meta_name).exists():
            return root
        return build(out)


def ensure_default_dataset() -> Path:
    """`project_root()/data/phantom/AD_NC`, built with the default settings on first use."""
    return built_once(project_root() / "data" / "phantom", "phantom.json",
                      lambda out: build_phantom(out=out, replace=False))


def read_metadata(root: str | Path) -> dict:
    """The phantom.json of a built dataset (its parameters and measured separability)."""
    return json.loads((Path(root) / "phantom.json").read_text())
