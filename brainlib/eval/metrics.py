"""How real, how diverse and how useful generated images are: the numbers.

Images are float32 [N,1,S,S] in [-1,1] or uint8 [N,S,S]; features are float
arrays [N,D] (see brainlib.eval.features). Every function is seeded. Each number is
meant to be read beside its floor: the same function applied to real training
images against real held-out images at the same sample sizes (evaluate.py).

- `sliced_wasserstein`: SWD on Laplacian-pyramid patches, as in the ProGAN
  paper (Karras et al. 2018, arXiv 1710.10196, appendix D). Reported x1e3, as
  the paper's tables are. ProGAN normalises each set's patches by that set's own
  statistics (the shape of the patch distribution); `normalise="reference"` uses
  the reference (real training) set's statistics for every set, so a band with
  too much or too little energy counts too. `layout_swd`: the same distance on
  whole images pooled to 8x8, for the coarse layout.
- `brainlib.eval.spectrum`: the radially averaged power spectrum, per octave band.
- `ms_ssim_pairs`: mean MS-SSIM of random pairs within one set (diversity:
  lower is more diverse), as in the ProGAN and AC-GAN papers.
- `fid`, `kid`: Frechet and kernel inception distances in any feature space.
- `precision_recall`: Kynkaenniemi et al. 2019, k-NN manifolds (k=3).
- `class_contrast`: how far apart generated AD and NC are, as a share of how far
  apart real AD and NC are (class fidelity, in any feature space).
- `usefulness`: one fixed small AD/NC classifier trained on real, synthetic,
  and real+synthetic images, scored on real held-out images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from brainlib.data.dataset import to_model_input
from brainlib.eval.features import predict_proba, train_classifier

# ----------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian pyramids (ProGAN, appendix D)

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).view(1, 1, 5, 5).to(x)
    return F.conv2d(F.pad(x, [2] * 4, mode="reflect"), k)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[N,1,S,S] -> `levels` band-pass images of size S, S/2, ...; the last is the
    Gaussian low-pass residual (as ProGAN: 128, 64, 32, 16 px for 128 px images)."""
    pyramid, current = [], x
    for _ in range(levels - 1):
        down = _blur(current)[:, :, ::2, ::2]
        up = torch.zeros_like(current)
        up[:, :, ::2, ::2] = down
        up = 4 * _blur(up)  # zero insertion then the same binomial filter, gain 4
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def swd_levels(res: int) -> int:
    """Pyramid levels down to 16 px (3 levels at 64 px, 4 at 128 px), at least one."""
    return max(1, int(math.log2(res // 16)) + 1) if res >= 16 else 1


def pyramid_descriptors(images, *, levels: int, patches_per_image: int = 128, patch: int = 7,
                        seed: int = 0, normalise: bool = True) -> list[torch.Tensor]:
    """Random 7x7 neighbourhoods from each level: one [N*patches, 49] tensor per level,
    each normalised to zero mean and unit std (per channel, per level, per set) unless
    `normalise=False`."""
    x = to_model_input(images)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for level in laplacian_pyramid(x, levels):
        n, c, h, w = level.shape
        p = min(patch, h)
        ys = torch.randint(0, h - p + 1, (n, patches_per_image), generator=gen)
        xs = torch.randint(0, w - p + 1, (n, patches_per_image), generator=gen)
        offs = torch.arange(p)
        rows = (ys[..., None, None] + offs[:, None]).expand(n, patches_per_image, p, p)
        cols = (xs[..., None, None] + offs[None, :]).expand(n, patches_per_image, p, p)
        img = torch.arange(n)[:, None, None, None].expand_as(rows)
        desc = level[:, 0][img, rows, cols].reshape(n * patches_per_image, c * p * p)
        out.append(_scaled(desc, _statistics(desc)) if normalise else desc)
    return out


def _statistics(desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std of a set's patches (one number each)."""
    return desc.mean(), desc.std().clamp_min(1e-8)


def _scaled(desc: torch.Tensor, statistics: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`desc` shifted and scaled by a set's `_statistics`."""
    mean, std = statistics
    return (desc - mean) / std


def _sorted_projections(desc: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    return torch.sort(directions.T @ desc.T, dim=1).values  # [directions, n]: sorting rows is fastest


def sliced_wasserstein(a, b, *, patches_per_image: int = 128, directions: int = 128, repeats: int = 4,
                       seed: int = 0, normalise: str = "per_set") -> dict:
    """SWD between two image sets, per pyramid level and averaged, x1e3 (ProGAN's convention).

    ProGAN's settings: 128 random 7x7 neighbourhoods per image per level,
    4 repeats of 128 random unit directions (512 in all), mean absolute
    difference of the sorted projections, averaged over repeats.
    {"levels": {"64": x, "32": y, "16": z}, "mean": ...}: level keys are the
    level's size in pixels; "mean" averages the levels (the ProGAN "avg" column).
    Both sets should be the same size; the larger is cut to the smaller.
    `normalise`: "per_set" (ProGAN's) or "reference" (`b`'s statistics for both sets).
    """
    return swd_to_reference(b, {"a": a}, patches_per_image=patches_per_image, directions=directions,
                            repeats=repeats, seed=seed, normalise=normalise)["a"]


SWD_NORMALISATIONS = ("per_set", "reference")


def swd_to_reference(reference, candidates: dict, *, patches_per_image: int = 128, directions: int = 128,
                     repeats: int = 4, seed: int = 0, normalise: str = "per_set") -> dict[str, dict]:
    """`sliced_wasserstein(candidate, reference)` for several candidates at once,
    sorting the reference's projections once (the same directions for all).
    Every set is cut to the size of the smallest, so the numbers are comparable.

    `normalise="per_set"` (ProGAN): each set's patches, per level, to zero mean and unit
    std by its own statistics, so the distance sees the shape of the patch distribution
    but not its strength: a set whose finest band is twice as strong reads as close.
    `normalise="reference"`: every set's patches by the reference's mean and std, so the
    strength of each band counts as well."""
    ref = to_model_input(reference)
    sets = {k: to_model_input(v) for k, v in candidates.items()}
    n = min([len(ref)] + [len(x) for x in sets.values()])
    swd = SWDReference(ref[:n], patches_per_image=patches_per_image, directions=directions, repeats=repeats,
                       seed=seed, normalise=normalise)
    return {k: swd.distance(x[:n], seed=seed + 1 + i, name=k) for i, (k, x) in enumerate(sets.items())}


class SWDReference:
    """A reference set's side of the SWD, computed once: its patches' statistics per pyramid level
    and their sorted projections on the random directions, so that each candidate set pays only
    for its own (the texture probe compares a new generated set to the same real slices many
    times). Arguments as swd_to_reference's; `distance(candidate)` is what sliced_wasserstein gives."""

    def __init__(self, reference, *, patches_per_image: int = 128, directions: int = 128, repeats: int = 4,
                 seed: int = 0, normalise: str = "per_set"):
        if normalise not in SWD_NORMALISATIONS:
            raise ValueError(f"SWD normalise={normalise!r} is not one of {', '.join(SWD_NORMALISATIONS)}")
        ref = to_model_input(reference)
        if len(ref) < 2:
            raise ValueError(f"SWD needs at least 2 images per set, got {len(ref)}")
        self.n, self.size, self.normalise = len(ref), ref.shape[-1], normalise
        self.levels = swd_levels(self.size)
        self.descriptor_args = dict(levels=self.levels, patches_per_image=patches_per_image,
                                    normalise=normalise == "per_set")
        descriptors = pyramid_descriptors(ref, seed=seed, **self.descriptor_args)
        # "reference": every set's patches by the reference patches' mean and std, per level
        self.statistics = [_statistics(desc) for desc in descriptors]
        gen = torch.Generator().manual_seed(seed + 10_000)
        self.projections = []  # per level: [(directions, sorted reference projections)] per repeat
        for desc, statistics in zip(descriptors, self.statistics, strict=True):
            desc = _scaled(desc, statistics) if normalise == "reference" else desc
            level = []
            for _ in range(repeats):
                d = torch.randn(desc.shape[1], directions, generator=gen)
                d = d / d.norm(dim=0, keepdim=True)
                level.append((d, _sorted_projections(desc, d)))
            self.projections.append(level)

    def distance(self, candidate, *, seed: int = 1, name: str = "candidate") -> dict:
        """{"levels": {size: SWD x1e3}, "mean", "n_images"} of `candidate` (at least as many images
        as the reference, cut to its size) against the reference."""
        x = to_model_input(candidate)
        if x.shape[-1] != self.size:
            raise ValueError(f"SWD needs images of one size, got {x.shape[-1]} px ({name}) and {self.size} px")
        if len(x) < self.n:
            raise ValueError(f"SWD needs at least {self.n} images in {name} (the reference's size), got {len(x)}")
        desc = pyramid_descriptors(x[:self.n], seed=seed, **self.descriptor_args)
        if self.normalise == "reference":
            desc = [_scaled(d, statistics) for d, statistics in zip(desc, self.statistics, strict=True)]
        per_level = {}
        for i, (level, projections) in enumerate(zip(desc, self.projections, strict=True)):
            gaps = [(_sorted_projections(level, d) - ref_sorted).abs().mean().item() for d, ref_sorted in projections]
            per_level[str(self.size >> i)] = 1e3 * float(np.mean(gaps))
        return {"levels": per_level, "mean": float(np.mean(list(per_level.values()))), "n_images": self.n}


def layout_swd(a, b, *, size: int = 8, directions: int = 256, seed: int = 0) -> float:
    """SWD between two sets of whole images average-pooled to `size` x `size` (one vector of
    size**2 values per image), x1e3: how far apart the sets' coarse layouts are (where brain,
    ventricles and background sit, and how that varies between images), which the pyramid SWD's
    7x7 patches cannot see. It reads the same at every resolution of 8 px and up, so it can
    follow a progressive run stage by stage. The larger set is cut, at random (seeded), to the
    smaller's size."""
    sets = [to_model_input(x) for x in (a, b)]
    n = min(len(x) for x in sets)
    if n < 2:
        raise ValueError(f"layout SWD needs at least 2 images per set, got {n}")
    if min(x.shape[-1] for x in sets) < size:
        raise ValueError(f"layout SWD pools to {size} px, got images of {min(x.shape[-1] for x in sets)} px")
    gen = torch.Generator().manual_seed(seed)
    va, vb = (F.adaptive_avg_pool2d(x[torch.randperm(len(x), generator=gen)[:n]].float(), size).flatten(1)
              for x in sets)
    d = torch.randn(size * size, directions, generator=gen)
    d = d / d.norm(dim=0, keepdim=True)
    return 1e3 * (_sorted_projections(va, d) - _sorted_projections(vb, d)).abs().mean().item()


# ----------------------------------------------------------------------
# MS-SSIM (diversity)

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


def ms_ssim_scales(res: int) -> int:
    """Scales such that the coarsest is 16 px: 3 at 64 px, 4 at 128 px, 1 at 16 px."""
    return max(1, min(5, int(math.log2(max(res, 16) // 16)) + 1))


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Single-scale SSIM per pair of images -> [N]: the mean of the per-pixel SSIM map (Wang et al.
    2004; data range 1 after mapping [-1,1] to [0,1], Gaussian window 11x11 sigma 1.5, no padding)."""
    x, y = (to_model_input(x) + 1) / 2, (to_model_input(y) + 1) / 2
    size = min(11, x.shape[-1])
    win = _gaussian_window(size, 1.5 * size / 11)
    c1, c2 = 0.01**2, 0.03**2
    mx, my = F.conv2d(x, win), F.conv2d(y, win)
    vx, vy = F.conv2d(x * x, win) - mx**2, F.conv2d(y * y, win) - my**2
    cov = F.conv2d(x * y, win) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, scales: int | None = None) -> torch.Tensor:
    """MS-SSIM per pair of images (data range 1 after mapping [-1,1] to [0,1]) -> [N].

    Gaussian window 11x11, sigma 1.5 (smaller when the image is smaller), no
    padding; the standard five scale weights, the first `scales` of them
    renormalised to sum to one (images of 64 px support 3 scales down to 16 px).
    Negative contrast-structure terms are clamped to 0 so fractional powers stay real.
    """
    x, y = (to_model_input(x) + 1) / 2, (to_model_input(y) + 1) / 2
    scales = scales or ms_ssim_scales(x.shape[-1])
    w = torch.tensor(_MS_SSIM_WEIGHTS[:scales])
    w = w / w.sum()
    c1, c2 = 0.01**2, 0.03**2
    terms = []
    for s in range(scales):
        size = min(11, x.shape[-1])
        win = _gaussian_window(size, 1.5 * size / 11)
        mx, my = F.conv2d(x, win), F.conv2d(y, win)
        vx = F.conv2d(x * x, win) - mx**2
        vy = F.conv2d(y * y, win) - my**2
        cov = F.conv2d(x * y, win) - mx * my
        cs = ((2 * cov + c2) / (vx + vy + c2)).mean(dim=(1, 2, 3))
        if s == scales - 1:
            lum = ((2 * mx * my + c1) / (mx**2 + my**2 + c1)).mean(dim=(1, 2, 3))
            terms.append((lum * cs).clamp_min(0))
        else:
            terms.append(cs.clamp_min(0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.stack([t ** wi for t, wi in zip(terms, w, strict=True)]).prod(dim=0)


def ms_ssim_pairs(images, *, pairs: int = 1000, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images of one set (lower = more diverse)."""
    x = to_model_input(images)
    if len(x) < 2:
        raise ValueError(f"MS-SSIM pairs need at least 2 images, got {len(x)}")
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(x), (pairs,), generator=gen)
    j = (i + torch.randint(1, len(x), (pairs,), generator=gen)) % len(x)  # never the same image
    values = torch.cat([ms_ssim(x[i[k:k + 500]], x[j[k:k + 500]]) for k in range(0, pairs, 500)])
    return float(values.mean())


# ----------------------------------------------------------------------
# FID, KID, precision and recall in a feature space

def fid(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    a, b = np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: nudge both covariances off zero
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)  # imaginary parts are round-off for PSD inputs
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def kid(feat_a: np.ndarray, feat_b: np.ndarray, *, subsets: int = 50, subset_size: int = 200,
        seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over random subsets -> (mean, std)."""
    a, b = np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radius(feats: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(feats, feats)
    return dist.kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest neighbour


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019).

    Each set's manifold is the union of balls around its points reaching their
    k-th nearest neighbour. Precision: share of generated points inside the
    real manifold (fidelity). Recall: share of real points inside the generated
    manifold (coverage).
    """
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    g = torch.as_tensor(np.asarray(generated), dtype=torch.float64)
    if len(r) <= k or len(g) <= k:
        raise ValueError(f"precision/recall with k={k} need more than {k} points per set, got {len(r)} and {len(g)}")
    r_radius, g_radius = _kth_neighbour_radius(r, k), _kth_neighbour_radius(g, k)
    d = torch.cdist(g, r)  # [n_gen, n_real]
    precision = (d <= r_radius[None, :]).any(dim=1).double().mean().item()
    recall = (d <= g_radius[:, None]).any(dim=0).double().mean().item()
    return {"precision": precision, "recall": recall}


# ----------------------------------------------------------------------
# Class fidelity, and usefulness: train on synthetic, test on real

def class_contrast(pos: np.ndarray, neg: np.ndarray, ref_pos: np.ndarray, ref_neg: np.ndarray) -> float:
    """How distinct two classes are, against a reference pair: the distance between the class
    means of `pos` and `neg` (features [N, D]) along the axis between the reference classes'
    means, as a share of the reference's own distance. 1 = the classes differ as much as the
    reference's (and in its direction), 0 = not at all, below 0 = the wrong way round."""
    axis = ref_pos.mean(0) - ref_neg.mean(0)
    return float((pos.mean(0) - neg.mean(0)) @ axis / (axis @ axis))


def usefulness(real_train, real_train_labels, synthetic, synthetic_labels, heldout, heldout_labels, *,
               epochs: int = 4, seed: int = 0, max_per_class: int | None = 1000) -> dict[str, dict]:
    """A fixed small AD/NC classifier (features.SliceEncoder, class head only,
    `epochs` epochs, Adam one-cycle, mild augmentation, seeded) trained on real
    training images, on synthetic images only, and on both; scored on real
    held-out images.

    Each source is cut to at most `max_per_class` images per class (the same
    cut for real and synthetic, so "synthetic only" is not helped by volume).
    Returns {"real": {...}, "synthetic": {...}, "real+synthetic": {...}}, each with
    accuracy, balanced_accuracy, auc (None when the held-out set has one class) and n_train.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score


    res = to_model_input(heldout[:1]).shape[-1]
    x_real, y_real = _cap_per_class(to_model_input(real_train, res), real_train_labels, max_per_class, seed)
    x_syn, y_syn = _cap_per_class(to_model_input(synthetic, res), synthetic_labels, max_per_class, seed)
    x_test, y_test = to_model_input(heldout, res), np.asarray(heldout_labels).astype(int)
    sources = {"real": (x_real, y_real), "synthetic": (x_syn, y_syn),
               "real+synthetic": (torch.cat([x_real, x_syn]), torch.cat([y_real, y_syn]))}
    results = {}
    for name, (x, y) in sources.items():
        if len(torch.unique(y)) < 2:
            raise ValueError(f"usefulness: the {name} training set has only one class")
        model = train_classifier(x, y, res=res, epochs=epochs, seed=seed)
        p = predict_proba(model, x_test)
        pred = (p > 0.5).astype(int)
        auc = float(roc_auc_score(y_test, p)) if len(np.unique(y_test)) == 2 else None
        results[name] = {"accuracy": float(accuracy_score(y_test, pred)),
                         "balanced_accuracy": float(balanced_accuracy_score(y_test, pred)),
                         "auc": auc, "n_train": int(len(x)), "n_test": int(len(x_test))}
    return results


def _cap_per_class(x: torch.Tensor, labels, cap: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.as_tensor(np.asarray(labels)).long()
    if cap is None:
        return x, y
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).squeeze(1)
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:cap]])
    keep = torch.cat(keep).sort().values
    return x[keep], y[keep]
