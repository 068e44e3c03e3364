"""SWD, MS-SSIM, FID/KID, precision/recall, memorisation and usefulness on image sets with known answers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainlib.eval import memorisation as mem
from brainlib.eval.metrics import (
    class_contrast,
    fid,
    kid,
    laplacian_pyramid,
    layout_swd,
    ms_ssim,
    ms_ssim_pairs,
    ms_ssim_scales,
    precision_recall,
    sliced_wasserstein,
    swd_levels,
    swd_to_reference,
    usefulness,
)


def blobs(n, res=32, seed=0, radius_shift=0.0):
    """Bright discs of random centre and size on a dark background, float [-1,1] [n,1,res,res]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(res).float(), torch.arange(res).float(), indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * 0.5 + 0.25) * res
    r = (torch.rand(n, 1, 1, generator=g) * 0.15 + 0.15 + radius_shift) * res
    img = torch.sigmoid((r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) * 1.5)
    return (img * 1.6 - 0.8).unsqueeze(1)


def blur(x, sigma):
    k = torch.arange(-4, 5).float()
    k = torch.exp(-k**2 / (2 * sigma**2))
    k = (k / k.sum())
    k2 = (k[:, None] * k[None, :]).view(1, 1, 9, 9)
    return F.conv2d(F.pad(x, [4] * 4, mode="reflect"), k2)


def test_laplacian_pyramid_sums_back_and_has_levels():
    x = blobs(4, 64)
    pyr = laplacian_pyramid(x, swd_levels(64))
    assert [p.shape[-1] for p in pyr] == [64, 32, 16]
    assert swd_levels(128) == 4 and swd_levels(16) == 1


def test_swd_is_near_zero_for_same_set_and_grows_with_blur_and_noise():
    x = blobs(200, 32, seed=1)
    g = torch.Generator().manual_seed(3)
    candidates = {"same": x, **{f"blur{s}": blur(x, s) for s in (0.6, 1.2, 2.4)},
                  **{f"noise{a}": x + a * torch.randn(x.shape, generator=g) for a in (0.05, 0.15, 0.45)}}
    swd = {k: v["mean"] for k, v in swd_to_reference(x, candidates, patches_per_image=64).items()}
    blurred, noisy = [swd[f"blur{s}"] for s in (0.6, 1.2, 2.4)], [swd[f"noise{a}"] for a in (0.05, 0.15, 0.45)]
    assert blurred == sorted(blurred) and noisy == sorted(noisy)
    # the same images with other random patches: sampling noise only
    assert swd["same"] < blurred[0] and swd["same"] < 0.3 * blurred[1] and swd["same"] < 0.2 * noisy[0]


def fields(n, res=32, seed=0):
    """Stationary smooth random textures (sums of blurred white noise), float [n,1,res,res]."""
    g = torch.Generator().manual_seed(seed)
    return sum(a * blur(torch.randn(n, 1, res, res, generator=g), s) for a, s in ((0.5, 2.0), (0.3, 1.0), (0.15, 0.6)))


def test_reference_normalised_swd_sees_a_too_strong_fine_band_that_per_set_swd_misses():
    train, held, other = fields(200, seed=1), fields(200, seed=2), fields(200, seed=3)
    strong = held + 0.5 * laplacian_pyramid(held, 2)[0]  # the finest band 1.5x as strong, its shape kept
    ratios = {}
    for norm in ("per_set", "reference"):
        swd = swd_to_reference(train, {"strong": strong, "other": other, "floor": held}, patches_per_image=32,
                               directions=64, repeats=2, normalise=norm)
        ratios[norm] = {k: swd[k]["levels"]["32"] / swd["floor"]["levels"]["32"] for k in ("strong", "other")}
    assert 0.5 < ratios["reference"]["other"] < 2 and 0.5 < ratios["per_set"]["other"] < 2  # real vs real: ~1x
    assert ratios["reference"]["strong"] > 5  # the finest band's excess counts
    assert ratios["per_set"]["strong"] < 1.5  # ProGAN's per-set normalisation reads it as near the floor


def test_swd_section_averages_draws_and_gives_the_ratios_standard_error():
    from brainlib.eval.evaluate import EvalSizes, swd_section
    train, held, gen = fields(120, seed=1), fields(40, seed=2), fields(120, seed=3)
    strong = gen + 0.5 * laplacian_pyramid(gen, 2)[0]
    sizes = EvalSizes(swd_patches=32, swd_directions=64, swd_draws=3)
    same, stronger = (swd_section(x, train, held, sizes, 0, normalise="reference") for x in (gen, strong))
    assert same["draws"] == 3 and same["n_images"] == 40  # each draw: 40 a side, from all 120 generated
    finest = same["levels"]["32"]
    assert 0.5 < finest["ratio"] < 2 and 0 < finest["ratio_se"] < 0.5 * finest["ratio"]
    assert finest["ratio"] == pytest.approx(finest["generated"] / finest["floor"])
    assert stronger["levels"]["32"]["ratio"] > 3 * finest["ratio"]
    one = swd_section(gen, train, held, EvalSizes(swd_patches=32, swd_directions=64, swd_draws=1), 0)
    assert one["levels"]["32"]["ratio_se"] is None  # one draw has no spread to show


def test_reference_normalised_swd_sees_a_contrast_change_that_per_set_swd_ignores():
    x, y = fields(100, seed=1), fields(100, seed=2)
    kw = dict(patches_per_image=16, directions=64, repeats=2)
    per_set = sliced_wasserstein(2 * y, x, **kw)["mean"]
    assert per_set == pytest.approx(sliced_wasserstein(y, x, **kw)["mean"], rel=1e-4)  # the same after rescaling
    reference = sliced_wasserstein(2 * y, x, normalise="reference", **kw)["mean"]
    assert reference > 10 * sliced_wasserstein(y, x, normalise="reference", **kw)["mean"]
    with pytest.raises(ValueError, match="normalise"):
        sliced_wasserstein(x, y, normalise="global")


def test_swd_levels_and_seeding():
    x, y = blobs(40, 32, seed=1), blobs(40, 32, seed=2)
    r = sliced_wasserstein(x, y, patches_per_image=16)
    assert set(r["levels"]) == {"32", "16"} and r["n_images"] == 40
    assert r["mean"] == pytest.approx(np.mean(list(r["levels"].values())))
    assert sliced_wasserstein(x, y, patches_per_image=16)["mean"] == r["mean"]  # seeded
    assert sliced_wasserstein(x, y, patches_per_image=16, seed=5)["mean"] != r["mean"]
    with pytest.raises(ValueError, match="one size"):
        sliced_wasserstein(x, blobs(40, 16))


def test_layout_swd_sees_layout_and_diversity_not_texture():
    x, other = blobs(200, 32, seed=1), blobs(200, 32, seed=2)  # two samples of one distribution
    g = torch.Generator().manual_seed(3)
    same_dist = layout_swd(other, x)
    textured = layout_swd(x + 0.15 * torch.randn(x.shape, generator=g), x)
    shifted = layout_swd(torch.roll(other, shifts=8, dims=-1), x)  # the blobs sit elsewhere
    collapsed = layout_swd(other[:1].expand(200, -1, -1, -1), x)  # one image, 200 times
    assert layout_swd(x, x) == pytest.approx(0.0, abs=1e-6)
    assert 0 < same_dist < 0.5 * shifted and same_dist < 0.5 * collapsed
    assert textured < 0.5 * shifted  # pixel noise averages out in 4x4-pixel cells
    # pooled to 8x8, sets of two resolutions compare: the same images at 64 px read as at 32 px
    assert layout_swd(F.interpolate(other, scale_factor=2, mode="bilinear"), x) == pytest.approx(same_dist, rel=0.1)
    assert layout_swd(other[:50], x) != layout_swd(other[:50], x, seed=1)  # the larger set is cut at random
    with pytest.raises(ValueError, match="at least 2"):
        layout_swd(x[:1], x)
    with pytest.raises(ValueError, match="8 px"):
        layout_swd(blobs(10, 4), x)


def test_ms_ssim_identical_is_one_and_noise_is_low():
    x = blobs(6, 64, seed=4)
    assert torch.allclose(ms_ssim(x, x), torch.ones(6), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, 1, 64, 64, generator=g) * 2 - 1, torch.rand(6, 1, 64, 64, generator=g) * 2 - 1
    assert (ms_ssim(a, b) < 0.1).all()
    assert ms_ssim_scales(64) == 3 and ms_ssim_scales(128) == 4 and ms_ssim_scales(16) == 1
    # a collapsed set (one image repeated with faint noise) is far less diverse than varied blobs
    collapsed = x[:1].repeat(40, 1, 1, 1) + 0.01 * torch.randn(40, 1, 64, 64, generator=g)
    assert ms_ssim_pairs(collapsed, pairs=100) > 0.9 > ms_ssim_pairs(blobs(40, 64, seed=5), pairs=100)


def test_ms_ssim_accepts_uint8():
    u8 = ((blobs(4, 32) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0]
    assert torch.allclose(ms_ssim(u8, u8), torch.ones(4), atol=1e-5)


def test_fid_and_kid_near_zero_for_one_set_split_in_two_and_higher_when_shifted():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 16))
    a, b = f[:1000], f[1000:]
    shifted = rng.normal(size=(1000, 16)) + 0.5
    assert fid(a, b) < 0.3 and fid(a, shifted) > 3.0  # finite-sample bias ~0.14; shift 16 x 0.5^2 = 4
    k_same, k_std = kid(a, b)
    k_shift, _ = kid(a, shifted)
    assert abs(k_same) < 3 * k_std + 1e-3 and k_shift > 20 * max(abs(k_same), k_std)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_handles_rank_deficient_covariance():
    rng = np.random.default_rng(1)
    a = np.zeros((50, 8))
    a[:, :2] = rng.normal(size=(50, 2))
    b = np.zeros((50, 8))
    b[:, :2] = rng.normal(size=(50, 2))
    value = fid(a, b)
    assert np.isfinite(value) and value >= 0


def test_precision_recall_known_answers():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8))
    same = precision_recall(real, rng.normal(size=(500, 8)))
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    collapsed = precision_recall(real, 0.1 * rng.normal(size=(500, 8)))  # all mass at the mode
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2
    disjoint = precision_recall(real, rng.normal(size=(500, 8)) + 20)
    assert disjoint["precision"] == 0 and disjoint["recall"] == 0
    with pytest.raises(ValueError, match="k=3"):
        precision_recall(real[:3], real)


def test_planted_copies_are_flagged_and_fresh_samples_are_not(tmp_path):
    train, heldout = blobs(300, 32, seed=10), blobs(200, 32, seed=11)
    fresh = blobs(100, 32, seed=12)
    g = torch.Generator().manual_seed(0)
    copies = train[:20] + 0.002 * torch.randn(20, 1, 32, 32, generator=g)
    generated = torch.cat([copies, fresh])
    result = mem.memorisation(generated, train, heldout)
    flags = mem.flagged(result["pixels"])
    assert flags[:20].all() and flags[20:].mean() < 0.1
    _, idx = result["pixels"]["_gen_nearest"]
    assert (idx[:20] == np.arange(20)).all()
    pub = mem.public(result)
    assert pub["pixels"]["share"] == pytest.approx(flags.mean()) and 0 < pub["pixels"]["floor"] <= 0.02
    png = mem.save_closest_pairs(generated, train, result, tmp_path / "pairs.png", k=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_contrast_known_answers():
    g = np.random.default_rng(0)
    base = g.normal(size=(500, 16))
    axis = np.zeros(16)
    axis[3] = 2.0
    real_ad, real_nc = base[:250] + axis, base[250:]
    assert class_contrast(real_ad, real_nc, real_ad, real_nc) == pytest.approx(1.0)
    assert class_contrast(real_nc, real_ad, real_ad, real_nc) == pytest.approx(-1.0)  # the wrong way round
    half_ad, half_nc = g.normal(size=(4000, 16)) + axis / 2, g.normal(size=(4000, 16))
    assert class_contrast(half_ad, half_nc, real_ad, real_nc) == pytest.approx(0.5, abs=0.1)
    # a difference off the real axis does not count as class contrast
    off = np.zeros(16)
    off[7] = 2.0
    assert abs(class_contrast(half_nc + off, half_nc, real_ad, real_nc)) < 0.1


def test_usefulness_runs_on_tiny_data_and_returns_scores_in_range():
    def two_class(n, seed):
        small, large = blobs(n, 16, seed), blobs(n, 16, seed + 100, radius_shift=0.12)
        return torch.cat([small, large]), np.array([0] * n + [1] * n)
    xr, yr = two_class(40, 0)
    xs, ys = two_class(40, 1)
    xt, yt = two_class(30, 2)
    res = usefulness(xr, yr, xs, ys, xt, yt, epochs=3, max_per_class=30)
    assert set(res) == {"real", "synthetic", "real+synthetic"}
    for r in res.values():
        for key in ("accuracy", "balanced_accuracy", "auc"):
            assert 0.0 <= r[key] <= 1.0
    assert res["real"]["n_train"] == 60 and res["real+synthetic"]["n_train"] == 120
    assert res["real"]["auc"] > 0.8  # disc size separates the classes easily
    with pytest.raises(ValueError, match="synthetic training set has only one class"):
        usefulness(xr, yr, xs[:40], ys[:40], xt, yt, epochs=1)
