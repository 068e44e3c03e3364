"""Counterfactual strips (a StyleGAN's NC-to-AD direction, a diffusion model's DDIM inversion), their
agreement with real data, the explorer slider."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from smoke_conditional import train_smoke
from torch import nn

from brainlib.cli import main
from brainlib.config import preset
from brainlib.networks.diffusion import NoisePath
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis import counterfactual as cf
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.synthesis.projection import load_slice
from brainlib.synthesis.sampling import latents, load, sample_images, to_uint8


@pytest.fixture(scope="module")
def out_root(tmp_path_factory, tiny_phantom, tiny_dataset_cache) -> Path:
    root = tmp_path_factory.mktemp("counterfactual_runs")
    train_smoke(root, tiny_phantom, tiny_dataset_cache)
    return root


@pytest.fixture(scope="module")
def G(out_root):
    return load("smoke-both", out_root=out_root)[0]


@pytest.fixture(scope="module")
def run_cfg(out_root):
    return load("smoke-both", out_root=out_root)[1]


def test_direction_is_the_difference_of_the_class_means(G):
    d = cf.class_direction(G, n_samples=500)
    assert d.shape == (G.w_dim,) and d.norm() > 0
    z = latents(500, G.z_dim, seed=0)
    means = [G.map(z, torch.full((500,), label)).mean(0) for label in (1, 0)]  # AD = 1, NC = 0
    assert torch.allclose(d, means[0] - means[1], atol=1e-5)
    assert not torch.equal(d, cf.class_direction(G, n_samples=500, seed=1))


def test_strip_shapes_and_zero_effect_at_strength_zero(G):
    d = cf.class_direction(G, n_samples=500)
    ws = cf.sampled_styles(G, seed=3)
    images, diffs = cf.strip(cf.StyleEdit(G, d), ws, [0.0, 0.5, 1.0, 2.0])
    assert images.shape == diffs.shape == (4, 1, 16, 16)
    assert torch.equal(diffs[0], torch.zeros(1, 16, 16)) and torch.equal(images[0], cf.render(G, ws)[0])
    assert all(diffs[i].abs().max() > 0 for i in (1, 2, 3))
    assert torch.equal(cf.strip(cf.StyleEdit(G, torch.zeros_like(d)), ws, [1.0, 2.0])[1], torch.zeros(2, 1, 16, 16))
    per_layer = ws[:, None].repeat(1, G.num_ws_at(16), 1)  # a projected slice's styles: the same strip
    assert torch.allclose(cf.strip(cf.StyleEdit(G, d), per_layer, [0.0, 1.0])[0], images[[0, 2]], atol=1e-6)


def test_image_at_strength_zero_is_the_generated_nc_sample(G):
    ws = cf.sampled_styles(G, seed=5)
    sample = sample_images(G, 1, seed=5, class_name="NC", noise_mode="const")
    assert torch.allclose(cf.render(G, ws), sample, atol=1e-6)


def test_agreement_figures_are_correlations_in_range(G, run_cfg, tiny_phantom):
    real_ad, real_nc = cf.real_class_images(run_cfg, 16)
    assert len(real_ad) == len(real_nc) == 24
    result = cf.agreement(G, real_ad, real_nc, n=16)
    assert result["real_same_size_n"] == 12  # at most half of each class, so the rest is not empty
    assert result["null_name"] == "random direction of the same length" and result["edit"] == "NC→AD ×1"
    for key in ("counterfactual", "real_half_vs_half", "real_same_size", "null"):
        assert math.isfinite(result[key]) and -1 <= result[key] <= 1
    mask = result["maps"]["mask"]
    assert 0 < result["brain_pixels"] == int(mask.sum()) < 256
    assert torch.allclose(result["maps"]["real"], real_ad.mean(0)[0] - real_nc.mean(0)[0])
    assert "counterfactual agreement" in cf.format_agreement(result)


def test_map_correlation_is_pearson_over_the_mask():
    a = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 2:6] = True
    assert cf.map_correlation(a, 3 * a + 1, mask) == pytest.approx(1.0)
    assert cf.map_correlation(a, -a, mask) == pytest.approx(-1.0)
    b = a.clone()
    b[~mask] = 100.0  # outside the mask: ignored
    assert cf.map_correlation(a, b, mask) == pytest.approx(1.0)
    expected = np.corrcoef(a[mask].numpy(), (a[mask] ** 2).numpy())[0, 1]
    assert cf.map_correlation(a, a**2, mask) == pytest.approx(expected, abs=1e-6)


def test_single_class_models_are_refused_plainly():
    cfg = preset("smoke", class_name="AD")
    with pytest.raises(ValueError, match="need a conditional model .* trained on AD only"):
        cf.class_direction(Generator(network_settings(cfg)))


def test_counterfactual_command_writes_the_strip_and_prints_the_agreement(out_root, tmp_path, capsys):
    out = tmp_path / "strip.png"
    args = ["counterfactual", "--model", "smoke-both", "--seed", "2", "--strengths", "0", "1", "2",
            "--out", str(out), "--out-root", str(out_root)]
    assert main(args) == 0
    assert "sample 2 of class NC" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["counterfactual", "--model", "smoke-both", "--agreement", "--n", "8",
                 "--out-root", str(out_root)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out_root / "smoke-both" / "counterfactuals" / "agreement.json").read_text())
    assert f"{saved['counterfactual']:.3f}" in printed and f"{saved['real_half_vs_half']:.3f}" in printed
    assert (out_root / "smoke-both" / "counterfactuals" / "agreement.png").is_file()


def test_explorer_slider_moves_along_nc_to_ad(G, run_cfg, tmp_path):
    from brainlib.synthesis.directions import compute_directions
    from brainlib.synthesis.explorer import LatentExplorer

    ex = LatentExplorer(G, run_cfg, directions=compute_directions(G, k=2, n_samples=300), k=2, seed=4, psi=1.0,
                        save_dir=tmp_path)
    assert ex.settings["nc_to_ad"] == 0.0 and ex.ad_direction is not None
    w = cf.sampled_styles(G, seed=4, class_name="AD") + 1.5 * ex.ad_direction
    from brainlib.synthesis.sampling import image_seed, synthesize
    expected = to_uint8(synthesize(G, w, noise_mode="random", noise_seeds=[image_seed(4, 0)]).clamp(-1, 1))[0]
    assert np.array_equal(ex.render(class_name="AD", nc_to_ad=1.5), expected)
    assert not np.array_equal(ex.render(nc_to_ad=1.5), ex.render())
    nc = preset("smoke", class_name="NC")
    single = LatentExplorer(Generator(network_settings(nc)), nc,
                            directions=compute_directions(G, k=2, n_samples=300), k=2, save_dir=tmp_path)
    with pytest.raises(ValueError, match="conditional"):
        single.render(nc_to_ad=1.0)


# ----------------------------------------------------------------------
# A conditional diffusion model: DDIM inversion under NC, denoising as AD


@pytest.fixture(scope="module")
def diffusion_root(tmp_path_factory, tiny_phantom, tiny_dataset_cache) -> Path:
    """diffusion-smoke-both and diffusion-smoke-AD (4 batches each)."""
    root = tmp_path_factory.mktemp("diffusion_counterfactual_runs")
    for class_name in ("both", "AD"):
        train_smoke(root, tiny_phantom, tiny_dataset_cache, preset_name="diffusion-smoke", class_name=class_name)
    return root


@pytest.fixture(scope="module")
def D(diffusion_root):
    return load("diffusion-smoke-both", out_root=diffusion_root)[0]


class ConstantNoise(nn.Module):
    """A denoiser that predicts the same noise everywhere: DDIM's path is then a straight line."""

    def __init__(self, eps: torch.Tensor):
        super().__init__()
        self.eps = nn.Parameter(eps, requires_grad=False)

    def forward(self, x, t, labels):
        return self.eps.expand_as(x)


def test_ddim_inversion_lands_on_the_forward_path_and_comes_back():
    cfg = preset("diffusion-smoke", class_name="both", objective="epsilon", cpu_bf16=False)
    gen = torch.Generator().manual_seed(0)
    eps, x0 = torch.randn(1, 1, 16, 16, generator=gen), torch.rand(2, 1, 16, 16, generator=gen) * 1.6 - 0.8
    sampler = DiffusionSampler(ConstantNoise(eps), cfg)
    edit = cf.DiffusionEdit(sampler)
    assert [edit.path_steps(s) for s in (0, 0.1, 0.25, 0.5, 1)] == [0, 1, 1, 2, 4]
    up = edit.timesteps[-3:][::-1]  # 24, 49, 74 of T = 100
    noised = sampler.invert(x0, torch.tensor([0, 0]), up)
    expected = NoisePath("epsilon", cfg.diffusion_timesteps).noised(x0, eps.expand_as(x0), torch.tensor([up[-1]] * 2))
    assert torch.allclose(noised, expected, atol=1e-5)
    assert torch.allclose(edit.apply(x0, 0.75), x0, atol=1e-5)


def test_diffusion_strip_is_the_slice_at_zero_and_an_edit_above(D):
    edit = cf.edit_for(D)
    assert isinstance(edit, cf.DiffusionEdit) and edit.default_strengths == cf.DIFFUSION_STRENGTHS
    source = edit.sources(1, seed=3)
    assert torch.equal(source, sample_images(D, 1, seed=3, class_name="NC"))  # as `brainlib generate` makes it
    images, diffs = cf.strip(edit, source, [0.0, 0.5, 1.0])
    assert images.shape == diffs.shape == (3, 1, 16, 16)
    assert torch.equal(images[0], source[0]) and torch.equal(diffs[0], torch.zeros(1, 16, 16))
    assert all(diffs[i].abs().max() > 1e-4 for i in (1, 2))  # 4 batches of training: a small class signal
    again = cf.strip(cf.edit_for(D), edit.sources(1, seed=3), [0.0, 0.5, 1.0])
    assert torch.equal(again[0], images) and torch.equal(again[1], diffs)
    round_trip = cf.DiffusionEdit(D, target="NC").apply(source, 1.0)
    assert not torch.equal(round_trip, images[2:])  # the label decides the way down
    with pytest.raises(ValueError, match=r"shares of the noise path, within \[0, 1\] \(got 1.5, -0.1\)"):
        cf.strip(edit, source, [0.5, 1.5, -0.1])
    with pytest.raises(ValueError, match="no direction in W"):
        cf.edit_for(D, direction=torch.zeros(4))


def test_a_real_slice_is_edited_as_it_is(D, tiny_phantom):
    png = sorted((Path(tiny_phantom) / "train" / "NC").iterdir())[0]
    real = load_slice(png, D.cfg, res=16)
    images, diffs = cf.strip(cf.edit_for(D), real, [0.0, 0.25])
    assert torch.equal(images[0], real[0]) and diffs[1].abs().max() > 1e-4


def test_diffusion_counterfactual_command_and_agreement(diffusion_root, tmp_path, capsys):
    base = ["counterfactual", "--model", "diffusion-smoke-both", "--out-root", str(diffusion_root)]
    for name in ("a.png", "b.png"):
        assert main([*base, "--seed", "2", "--out", str(tmp_path / name)]) == 0
    assert "sample 2 of class NC" in capsys.readouterr().out
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert main([*base, "--strengths", "0", "2", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "within [0, 1] (got 2)" in err and not (tmp_path / "c.png").exists()
    assert main([*base, "--agreement", "--n", "4", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((diffusion_root / "diffusion-smoke-both" / "counterfactuals" / "agreement.json").read_text())
    assert saved["edit"] == "NC→AD 100%" and saved["null_name"] == "NC→NC round trip" and saved["n_generated"] == 4
    for key in ("counterfactual", "null", "real_half_vs_half"):
        assert math.isfinite(saved[key]) and -1 <= saved[key] <= 1 and f"{saved[key]:.3f}" in printed
    assert (diffusion_root / "diffusion-smoke-both" / "counterfactuals" / "agreement.png").is_file()


def test_a_one_class_diffusion_run_is_refused_in_one_line(diffusion_root, capsys):
    for extra in ([], ["--agreement"]):
        assert main(["counterfactual", "--model", "diffusion-smoke-AD", *extra,
                     "--out-root", str(diffusion_root)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "need a conditional model (trained with --class both)" in err
        assert "trained on AD only" in err
    assert not (diffusion_root / "diffusion-smoke-AD" / "counterfactuals").exists()
