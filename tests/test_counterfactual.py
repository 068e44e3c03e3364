"""Counterfactual strips along the NC-to-AD direction, their agreement with real data, the explorer slider."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from smoke_conditional import train_smoke_both

from brainlib.cli import main
from brainlib.config import preset
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis import counterfactual as cf
from brainlib.synthesis.sampling import latents, load, sample_images, to_uint8


@pytest.fixture(scope="module")
def out_root(tmp_path_factory, tiny_phantom, tiny_dataset_cache) -> Path:
    root = tmp_path_factory.mktemp("counterfactual_runs")
    train_smoke_both(root, tiny_phantom, tiny_dataset_cache)
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
    images, diffs = cf.strip(G, ws, [0.0, 0.5, 1.0, 2.0], d)
    assert images.shape == diffs.shape == (4, 1, 16, 16)
    assert torch.equal(diffs[0], torch.zeros(1, 16, 16)) and torch.equal(images[0], cf.render(G, ws)[0])
    assert all(diffs[i].abs().max() > 0 for i in (1, 2, 3))
    assert torch.equal(cf.strip(G, ws, [1.0, 2.0], torch.zeros_like(d))[1], torch.zeros(2, 1, 16, 16))
    per_layer = ws[:, None].repeat(1, G.num_ws_at(16), 1)  # a projected slice's styles: the same strip
    assert torch.allclose(cf.strip(G, per_layer, [0.0, 1.0], d)[0], images[[0, 2]], atol=1e-6)


def test_image_at_strength_zero_is_the_generated_nc_sample(G):
    ws = cf.sampled_styles(G, seed=5)
    sample = sample_images(G, 1, seed=5, class_name="NC", noise_mode="const")
    assert torch.allclose(cf.render(G, ws), sample, atol=1e-6)


def test_agreement_figures_are_correlations_in_range(G, run_cfg, tiny_phantom):
    real_ad, real_nc = cf.real_class_images(run_cfg, 16)
    assert len(real_ad) == len(real_nc) == 24
    result = cf.agreement(G, real_ad, real_nc, n=16)
    assert result["real_same_size_n"] == 12  # at most half of each class, so the rest is not empty
    for key in ("counterfactual", "real_half_vs_half", "real_same_size", "random_direction"):
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
