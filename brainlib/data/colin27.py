"""A second development set whose texture is a real scan's: AD-like and NC-like axial slices
resliced from the Colin27 single-subject T1.

Colin27 (Holmes et al. 1998: one healthy brain scanned 27 times and averaged, registered to
MNI space) ships as `ch2better.nii.gz` (0.5 mm, skull-stripped, cerebrospinal fluid set to 0)
in Debian's `mricron-data` package, read offline with nibabel. The embedded phantom
(brainlib.data.phantom) paints flat tissue classes over a population template; here every
image keeps one real brain's gyri, sulci and white-matter texture, and varies by what differs
between subjects and scanners:

- anatomy: an oblique axial plane (slice position in the phantom's band, MNI z -14 to +28 mm,
  small tilts), then a small affine and smooth elastic deformation in plane (phantom's);
- AD: the phantom's atrophy (`grey_matter_loss`: thinner cortex next to sulcal CSF and
  medial-temporal loss; `_expand_ventricles`), severity drawn as the phantom's;
- acquisition, per simulated scanner (`SCANNERS`): slice thickness (the plane averaged over
  the slab), in-plane resolution (a Gaussian point spread of that FWHM), T1 weighting (the
  grey and white matter and CSF levels) and gamma, a smooth multiplicative bias field, and
  Rician noise at the scanner's stated SNR (mean white-matter signal / noise sigma), then the
  brain mask applied (skull stripping) and 8 bits, 256x240 as ADNI's slices; the loader
  down-samples them to the model's size as it does any user's slices.

The written `colin27.json` records the scanners with each one's SNR as stated and as measured
on its images (the two-acquisition difference method), and the classes' linear separability.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from brainlib.atomic import file_lock
from brainlib.config import project_root
from brainlib.data.phantom import AD_SEVERITY_SPREAD as PHANTOM_AD_SPREAD
from brainlib.data.phantom import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    NC_SEVERITY_RANGE,
    TRAIN_FRACTION,
    _expand_ventricles,
    _sampling_grid,
    _smooth_noise,
    _split_of,
    built_once,
    check_build_arguments,
    draw_severity,
    grey_matter_loss,
    image_rng,
    medial_temporal_weight,
    write_dataset,
)

COLIN27 = Path("/usr/share/mricron/templates/ch2better.nii.gz")
INSTALL_HINT = "apt-get install mricron-data"
VOXEL_MM = 0.5
Z_BAND_MM = (-14.0, 28.0)  # MNI z of the slice centres: the phantom's axial band
MAX_TILT_DEG = 6.0
_MARGIN_MM = 12.0  # z beyond the band that a tilted, thick slab can reach


@dataclass(frozen=True)
class Scanner:
    """One simulated scanner's protocol. Tissue levels are the noiseless signal in [0, 1] before gamma."""
    name: str
    csf: float
    gm: float
    wm: float
    gamma: float
    snr: float           # mean white-matter signal / Gaussian noise sigma of each channel
    slice_mm: float      # slab thickness
    inplane_mm: float    # FWHM of the in-plane point spread
    bias: float          # strength of the smooth multiplicative bias field (log scale)


SCANNERS = (
    Scanner("A: thin slices, strong T1 contrast", csf=0.08, gm=0.50, wm=0.92, gamma=1.0, snr=30.0,
            slice_mm=1.0, inplane_mm=1.0, bias=0.12),
    Scanner("B: thick slices, weak contrast, noisy", csf=0.16, gm=0.56, wm=0.84, gamma=1.0, snr=16.0,
            slice_mm=2.5, inplane_mm=1.3, bias=0.08),
    Scanner("C: bright grey matter (gamma < 1)", csf=0.10, gm=0.52, wm=0.90, gamma=0.8, snr=24.0,
            slice_mm=1.5, inplane_mm=1.1, bias=0.15),
    Scanner("D: dark grey matter (gamma > 1)", csf=0.12, gm=0.48, wm=0.88, gamma=1.25, snr=20.0,
            slice_mm=2.0, inplane_mm=1.2, bias=0.10),
)


class Colin27Missing(FileNotFoundError):
    """The Colin27 scan is not installed (Debian's mricron-data)."""


def colin27_path() -> Path:
    if not COLIN27.is_file():
        raise Colin27Missing(f"the Colin27 T1 {COLIN27} is missing: run `{INSTALL_HINT}` "
                             "(Debian's package; `make devset` installs it and builds the set)")
    return COLIN27


# ----------------------------------------------------------------------
# The scan, once per process: the band of axial slices the planes can reach.

@dataclass
class Band:
    """Colin27 over z = band +- margin, [x, y, z] at 0.5 mm: intensity and masks as uint8."""
    t1: np.ndarray          # raw intensity, 0 outside tissue
    tissue: np.ndarray      # 1 where grey or white matter
    outline: np.ndarray     # 1 inside the brain's outline (tissue and the CSF it encloses), 2 in the
    #                         ventricles (12 mm or more inside it, so one map interpolates both)
    origin: np.ndarray      # voxel index of MNI (0, 0, 0) in these arrays
    gm_level: float         # median intensity of grey matter, and of white matter
    wm_level: float
    box: tuple[float, float, float, float]  # rows (y) and columns (x) of the hull, in plane pixels


@lru_cache(maxsize=1)
def load_band() -> Band:
    import nibabel as nib
    img = nib.load(colin27_path())
    if not np.allclose(np.abs(np.diag(img.affine)[:3]), VOXEL_MM) or nib.aff2axcodes(img.affine) != ("R", "A", "S"):
        raise ValueError(f"{COLIN27}: expected a 0.5 mm RAS volume, got affine {img.affine.tolist()}")
    origin = np.rint(np.linalg.solve(img.affine, [0, 0, 0, 1])[:3]).astype(int)
    z0 = max(0, int(origin[2] + (Z_BAND_MM[0] - _MARGIN_MM) / VOXEL_MM))
    z1 = int(origin[2] + (Z_BAND_MM[1] + _MARGIN_MM) / VOXEL_MM) + 1
    t1 = np.asarray(img.dataobj[:, :, z0:z1], dtype=np.uint8)
    origin[2] -= z0
    tissue = t1 > 0
    hull = _hull(tissue)
    gm_level, wm_level = _two_means(t1[tissue])
    outline = hull.astype(np.uint8) + _ventricles(hull & ~tissue, hull, origin)
    return Band(t1, tissue.astype(np.uint8), outline, origin, gm_level, wm_level, _box(hull))


def _hull(tissue: np.ndarray, close_mm: float = 4.0) -> np.ndarray:
    """The brain's outline, per axial slice: tissue closed over gaps up to 2 x close_mm (sulci),
    holes (the ventricles) filled."""
    r = close_mm / VOXEL_MM
    hull = np.empty_like(tissue)
    for k in range(tissue.shape[2]):
        grown = ndimage.distance_transform_edt(~tissue[:, :, k]) <= r
        closed = (ndimage.distance_transform_edt(grown) > r) | tissue[:, :, k]
        hull[:, :, k] = ndimage.binary_fill_holes(closed)
    return hull


def _ventricles(csf: np.ndarray, hull: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Lateral and third ventricles: CSF more than 12 mm inside the outline of its slice, within a
    central box (the phantom's rule, in mm), without thin sheets (the interhemispheric fissure),
    in large connected pieces."""
    lo = np.maximum(0, origin + np.rint(np.array([-28, -48, -20]) / VOXEL_MM).astype(int))
    hi = np.minimum(csf.shape, origin + np.rint(np.array([28, 32, 40]) / VOXEL_MM).astype(int) + 1)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    cavities = csf[box].copy()
    for k in range(cavities.shape[2]):
        if cavities[:, :, k].any():
            depth = ndimage.distance_transform_edt(hull[:, :, lo[2] + k])[box[:2]] * VOXEL_MM
            cavities[:, :, k] &= depth > 12
    cavities = ndimage.binary_opening(cavities, iterations=2)  # drops sheets under 2 mm thick
    labels, n = ndimage.label(cavities)
    out = np.zeros(csf.shape, np.uint8)
    if n:
        sizes = ndimage.sum(cavities, labels, range(1, n + 1)) * VOXEL_MM**3
        out[box] = np.isin(labels, 1 + np.flatnonzero(sizes >= 200))
    return out


def _two_means(values: np.ndarray) -> tuple[float, float]:
    """Grey and white matter levels: 1-D two-means (medians) of the tissue intensities (uint8)."""
    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(counts)

    def median(lo: int, hi: int) -> float:  # of the values in [lo, hi)
        below = cdf[lo - 1] if lo > 0 else 0.0
        return float(np.searchsorted(cdf, below + (cdf[hi - 1] - below) / 2))

    lo, hi = median(1, 256) - 10, median(1, 256) + 10
    for _ in range(20):
        cut = int(math.ceil((lo + hi) / 2))
        lo, hi = median(1, cut), median(cut, 256)
    return lo, hi


def _box(hull: np.ndarray) -> tuple[float, float, float, float]:
    """Rows and columns of the hull's extent over the band, in display-plane pixels (rows: y, anterior up)."""
    xs, ys = np.nonzero(hull.any(axis=2))
    n_y = hull.shape[1]
    return float(n_y - 1 - ys.max()), float(n_y - 1 - ys.min()), float(xs.min()), float(xs.max())


# ----------------------------------------------------------------------
# One image.

@dataclass
class Plane:
    """Maps of one resliced slab on the display plane (rows: anterior at the top; 0.5 mm pixels)."""
    t1: np.ndarray
    tissue: np.ndarray
    hull: np.ndarray
    ventricles: np.ndarray
    mni_mm: tuple[np.ndarray, np.ndarray, np.ndarray]


def reslice(band: Band, rng: np.random.Generator, slice_mm: float) -> Plane:
    """An oblique axial slab through the band: its centre at a random height, tilted a few
    degrees, averaged over `slice_mm` (a box slice profile sampled every 0.5 mm)."""
    n_x, n_y = band.t1.shape[:2]
    rows, cols = np.mgrid[:n_y, :n_x].astype(np.float32)
    x_mm = (cols - band.origin[0]) * VOXEL_MM
    y_mm = (n_y - 1 - rows - band.origin[1]) * VOXEL_MM
    pitch, roll = (math.radians(float(np.clip(rng.normal(0, s), -MAX_TILT_DEG, MAX_TILT_DEG))) for s in (3.0, 1.5))
    z_mm = rng.uniform(*Z_BAND_MM) + math.tan(pitch) * y_mm + math.tan(roll) * x_mm
    steps = max(1, int(round(slice_mm / VOXEL_MM)))
    offsets = (np.arange(steps) - (steps - 1) / 2) * (slice_mm / steps)
    maps = {k: np.zeros((n_y, n_x), np.float32) for k in ("t1", "tissue", "outline")}
    for dz in offsets:
        z_vox = (z_mm + dz) / VOXEL_MM + band.origin[2]
        coords = np.stack([cols, n_y - 1 - rows, z_vox])
        for k in maps:
            maps[k] += ndimage.map_coordinates(getattr(band, k), coords, order=1, output=np.float32, mode="nearest")
    t1, tissue, outline = (maps[k] / len(offsets) for k in ("t1", "tissue", "outline"))
    return Plane(t1, tissue, np.minimum(outline, 1), np.maximum(outline - 1, 0), mni_mm=(x_mm, y_mm, z_mm))


def render_slice(rng: np.random.Generator, atrophy: float, scanner: Scanner,
                 noise_rng: np.random.Generator | None = None) -> np.ndarray:
    """One image, uint8 [240, 256], of atrophy of the given strength (0 = none) on `scanner`.
    `noise_rng` draws the noise alone (default: `rng`), so two acquisitions can differ in it only."""
    band = load_band()
    plane = reslice(band, rng, scanner.slice_mm)
    levels = _jittered(scanner, rng)
    image, white, pull = _atrophied_intensity(plane, band, atrophy, levels)
    r0, r1, c0, c1 = band.box
    scale = min(0.96 * FRAME_HEIGHT / (r1 - r0 + 1), 0.96 * FRAME_WIDTH / (c1 - c0 + 1))
    coords = _sampling_grid(rng, (r0 + r1) / 2, (c0 + c1) / 2, scale, template_px_per_mm=1 / VOXEL_MM)
    coords = _expand_ventricles(coords, pull, amplitude_mm=4.0 * atrophy, template_px_per_mm=1 / VOXEL_MM)
    warped, white, brain = (ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0.0)
                            for m in (image, white, plane.hull))
    return _acquire(warped, white > 0.8, brain > 0.5, rng, noise_rng or rng, scanner, levels,
                    frame_px_per_mm=scale / VOXEL_MM)


def _jittered(scanner: Scanner, rng: np.random.Generator) -> dict[str, float]:
    """The scanner's tissue levels and gamma, varied a little per session."""
    return {"csf": scanner.csf + rng.normal(0, 0.01), "gm": scanner.gm + rng.normal(0, 0.015),
            "wm": scanner.wm + rng.normal(0, 0.01), "gamma": scanner.gamma * math.exp(rng.normal(0, 0.03))}


def _atrophied_intensity(plane: Plane, band: Band, atrophy: float,
                         levels: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slab's noiseless signal after atrophy in the scanner's T1 weighting, its share of white
    matter, and the ventricles' pull field (for `_expand_ventricles`). Tissue keeps Colin27's own
    texture: its intensities are mapped linearly so that grey and white matter land on the
    scanner's levels."""
    tissue = plane.tissue
    csf = np.clip(plane.hull - tissue, 0, 1)
    t1 = np.where(tissue > 0.05, plane.t1 / np.maximum(tissue, 0.05), band.gm_level)
    slope = (levels["wm"] - levels["gm"]) / (band.wm_level - band.gm_level)
    signal = np.clip(levels["gm"] + slope * (t1 - band.gm_level), levels["csf"], 1.0)
    midpoint, width = (band.gm_level + band.wm_level) / 2, 0.08 * (band.wm_level - band.gm_level)
    gm = tissue / (1.0 + np.exp(np.clip((t1 - midpoint) / width, -30, 30)))
    sulcal = ((csf > 0.5) & (plane.ventricles < 0.5)) | (plane.hull < 0.5)
    dist_mm = ndimage.distance_transform_edt(~sulcal, sampling=VOXEL_MM).astype(np.float32)
    loss = grey_matter_loss(gm, dist_mm, medial_temporal_weight(*plane.mni_mm), atrophy)
    image = (tissue - loss) * signal + (csf + loss) * levels["csf"]
    smooth = ndimage.gaussian_filter(plane.ventricles, 3.0 / VOXEL_MM)
    pull = np.stack(np.gradient(smooth)).astype(np.float32)
    pull /= max(float(np.abs(pull).max()), 1e-6)
    return image.astype(np.float32), (tissue - gm).astype(np.float32), pull


def _acquire(image: np.ndarray, white: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
             noise_rng: np.random.Generator, scanner: Scanner, levels: dict[str, float],
             frame_px_per_mm: float) -> np.ndarray:
    """In-plane blur, bias field, gamma, Rician noise at the scanner's SNR (the noiseless image's
    mean over `white` matter / sigma), the `brain` mask slightly dilated (skull stripping), 8 bits."""
    sigma_px = scanner.inplane_mm / 2.355 * frame_px_per_mm
    image = ndimage.gaussian_filter(image, sigma_px)
    image = image * np.exp(scanner.bias * _smooth_noise(rng, 3, image.shape))
    image = np.clip(image, 0, None) ** levels["gamma"]
    signal = float(image[white].mean()) if white.any() else levels["wm"] ** levels["gamma"]
    sigma = signal / scanner.snr
    real = image + noise_rng.normal(0, sigma, image.shape)
    imag = noise_rng.normal(0, sigma, image.shape)
    stripped = ndimage.binary_dilation(brain, iterations=2)
    magnitude = np.sqrt(real**2 + imag**2) * stripped
    peak = np.percentile(image[stripped], 99.7) if stripped.any() else 1.0  # a fixed gain: not the noise's
    return np.clip(magnitude / peak * rng.uniform(215, 240), 0, 255).astype(np.uint8)


def measure_snr(first: np.ndarray, second: np.ndarray) -> float:
    """SNR of two acquisitions of one slice that differ only in their noise (the NEMA difference
    method): mean signal over white matter / (std of the difference there / sqrt 2). White
    matter: the pixels whose local median lies within 6% of the brain's brightest histogram peak."""
    a, b = first.astype(np.float64), second.astype(np.float64)
    mean = (a + b) / 2
    smooth = ndimage.median_filter(mean, 5)
    brain = ndimage.binary_erosion(smooth > 0.25 * smooth.max(), iterations=6)
    bright = smooth[brain & (smooth > np.median(smooth[brain]))]
    counts, edges = np.histogram(bright, bins=64)
    peak = (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1]) / 2
    white = brain & (np.abs(smooth - peak) < 0.06 * peak)
    return float(mean[white].mean() / ((a - b)[white].std() / math.sqrt(2)))


def pick_scanner(rng: np.random.Generator) -> Scanner:
    return SCANNERS[int(rng.integers(len(SCANNERS)))]


# ----------------------------------------------------------------------
# The dataset on disk.

def _write_images(job: tuple) -> np.ndarray:
    """Render and write one chunk of images; returns their 32x32 thumbnails for the check."""
    root, class_name, indices, n_per_class, severity, seed = job
    thumbs = []
    for i in indices:
        rng = image_rng(seed, class_name, i)
        scanner = pick_scanner(rng)
        img = render_slice(rng, draw_severity(rng, class_name, severity), scanner)
        path = Path(root) / _split_of(i, n_per_class) / class_name / f"{class_name}_{i:05d}.png"
        Image.fromarray(img).save(path, optimize=False)
        thumbs.append(np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BOX)))
    return np.stack(thumbs)


def measured_snr_per_scanner(seed: int, repeats: int = 3) -> dict[str, float]:
    """Each scanner's SNR measured on NC images as built (two noise draws of each, `measure_snr`)."""
    out = {}
    for k, scanner in enumerate(SCANNERS):
        values = []
        for r in range(repeats):
            pair = [render_slice(np.random.default_rng([seed, 99, k, r]), 0.0, scanner,
                                 noise_rng=np.random.default_rng([seed, 98, k, r, draw])) for draw in (0, 1)]
            values.append(measure_snr(*pair))
        out[scanner.name] = round(float(np.mean(values)), 2)
    return out


def build_colin27(out: str | Path | None = None, n_per_class: int = 2000, severity: float = 1.0, seed: int = 0,
                  *, workers: int | None = None, progress: bool = True, replace: bool = True) -> Path:
    """Write `<out>/AD_NC/{train,test}/{AD,NC}/*.png` (80/20 split) and `<out>/AD_NC/colin27.json`,
    as brainlib.data.phantom.build_phantom does (built under a temporary name, never half-written;
    an existing set is replaced unless `replace=False`). Returns the AD_NC root."""
    check_build_arguments(n_per_class, severity)
    colin27_path()
    band = load_band()
    meta = dict(
        source=f"Colin27 single-subject T1 ({COLIN27}, Debian's mricron-data), 0.5 mm, skull-stripped",
        n_per_class=n_per_class, severity=severity, seed=seed, orientation="axial",
        frame=[FRAME_WIDTH, FRAME_HEIGHT], train_fraction=TRAIN_FRACTION,
        nc_severity_range=list(NC_SEVERITY_RANGE),
        ad_severity_range=[severity * PHANTOM_AD_SPREAD[0], severity * PHANTOM_AD_SPREAD[1]],
        slice_band_mni_z_mm=list(Z_BAND_MM), max_tilt_deg=MAX_TILT_DEG,
        tissue_levels_raw={"gm": band.gm_level, "wm": band.wm_level},
        scanners=[asdict(s) for s in SCANNERS],
        snr_definition="mean white-matter signal / noise sigma per channel (Rician magnitude)",
        snr_measured=measured_snr_per_scanner(seed),
    )
    out = Path(out) if out is not None else project_root() / "data" / "colin27"
    return write_dataset(out, n_per_class, _write_images, (severity, seed), meta, "colin27.json",
                         workers=workers, progress=progress, replace=replace, desc="building the Colin27 set")


def ensure_colin27() -> Path:
    """`project_root()/data/colin27/AD_NC`, built with the default settings on first use."""
    def build(out: Path) -> Path:
        colin27_path()  # the scan is there, or a one-line error naming the package
        return build_colin27(out=out, replace=False)

    return built_once(project_root() / "data" / "colin27", "colin27.json", build)


def read_metadata(root: str | Path) -> dict:
    """The colin27.json of a built set (its parameters, scanners and measured SNR)."""
    return json.loads((Path(root) / "colin27.json").read_text())
