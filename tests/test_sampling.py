"""brainlib.synthesis.sampling and brainlib.synthesis.directions on small random generators (no training needed)."""
import json

import numpy as np
import pytest
import torch

from brainlib.config import preset
from brainlib.networks.layers import NoiseInjection
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis.directions import cache_paths, compute_directions, directions_for_checkpoint
from brainlib.synthesis.sampling import (
    image_seed,
    interpolation_strip,
    latents,
    mix_styles,
    noise_variations,
    png_bytes,
    sample_images,
    slerp,
    style_mixing_matrix,
    styles,
    to_uint8,
    truncation_sweep,
)


def random_generator(class_name="AD", seed=0):
    """A smoke-sized generator with random weights, its noise switched on (it starts at zero)."""
    torch.manual_seed(seed)
    G = Generator(network_settings(preset("smoke", class_name=class_name))).eval().requires_grad_(False)
    for m in G.modules():
        if isinstance(m, NoiseInjection):
            m.weight.fill_(0.5)
    return G


@pytest.fixture(scope="module")
def G():
    return random_generator()


def test_same_seed_same_pixels_and_png_bytes(G):
    a, b = sample_images(G, 6, seed=3, batch_size=4), sample_images(G, 6, seed=3, batch_size=4)
    assert a.shape == (6, 1, 16, 16) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert -1 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert [png_bytes(x) for x in to_uint8(a)] == [png_bytes(x) for x in to_uint8(b)]
    c = sample_images(G, 6, seed=4, batch_size=4)
    assert all(not torch.equal(x, y) for x, y in zip(a, c, strict=True))  # another seed: every image differs
    assert not torch.equal(a[0], a[1])  # and images within a seed differ


def test_image_i_does_not_depend_on_batch_size_or_n(G):
    whole = sample_images(G, 5, seed=7, batch_size=5)
    split = sample_images(G, 5, seed=7, batch_size=2)
    torch.testing.assert_close(whole, split, atol=1e-4, rtol=0)
    torch.testing.assert_close(sample_images(G, 1, seed=7, start=3), whole[3:4], atol=1e-4, rtol=0)
    assert torch.equal(latents(2, 16, seed=7, start=3), latents(5, 16, seed=7)[3:5])


def test_sampling_leaves_the_callers_random_state_alone(G):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sample_images(G, 2, seed=0)
    sample_images(G, 2, seed=0, noise_strength=0.0)
    noise_variations(G, seed=0, n=2)
    assert torch.equal(torch.rand(3), expected)


def test_noise_modes(G):
    const = sample_images(G, 1, seed=1, noise_mode="const")
    off = sample_images(G, 1, seed=1, noise_mode="none")
    rand = sample_images(G, 1, seed=1, noise_mode="random")
    assert not torch.equal(const, off) and not torch.equal(rand, off) and not torch.equal(rand, const)
    assert torch.equal(sample_images(G, 1, seed=1, noise_mode="random", noise_strength=0.0), off)
    variations = noise_variations(G, seed=1, n=4)
    assert variations.shape == (4, 1, 16, 16)
    assert len({to_uint8(v).tobytes() for v in variations}) == 4
    with pytest.raises(ValueError, match="noise_mode 'fresh'"):
        sample_images(G, 1, noise_mode="fresh")


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_psi_zero_gives_the_average_image_for_every_z(G, noise_mode):
    imgs = sample_images(G, 4, seed=11, psi=0.0, noise_mode=noise_mode)
    for x in imgs[1:]:
        torch.testing.assert_close(x, imgs[0], atol=1e-4, rtol=0)
    w = styles(G, latents(3, 16, seed=11), psi=0.0)
    torch.testing.assert_close(w, G.w_avg.expand(3, -1), atol=1e-4, rtol=0)
    # the check can fail: at psi 1 the same z give different images
    spread = sample_images(G, 4, seed=11, psi=1.0, noise_mode=noise_mode)
    assert (spread[1:] - spread[0]).abs().amax() > 1e-3


def test_truncation_pulls_w_towards_the_average(G):
    z = latents(8, 16, seed=2)
    d = [(styles(G, z, psi=p) - G.w_avg).norm(dim=1) for p in (1.0, 0.5)]
    torch.testing.assert_close(d[1], 0.5 * d[0], rtol=1e-4, atol=1e-6)
    sweep = truncation_sweep(G, seeds=[0, 1], psis=[1.0, 0.5, 0.0])
    assert sweep.shape == (6, 1, 16, 16)
    torch.testing.assert_close(sweep[2], sweep[5], atol=1e-4, rtol=0)  # psi 0 column: one image


def test_mixing_takes_the_second_style_from_the_crossover_layer_on(G):
    w1, w2 = torch.zeros(2, 16), torch.ones(2, 16)
    ws = mix_styles(w1, w2, 3, G.num_ws)
    assert ws.shape == (2, G.num_ws, 16)
    assert torch.equal(ws[:, :3], torch.zeros(2, 3, 16)) and torch.equal(ws[:, 3:], torch.ones(2, G.num_ws - 3, 16))
    assert torch.equal(mix_styles(w1, w2, None, G.num_ws), torch.zeros(2, G.num_ws, 16))
    assert torch.equal(mix_styles(w1, w2, G.num_ws, G.num_ws), torch.zeros(2, G.num_ws, 16))

    a = sample_images(G, 1, seed=5, noise_mode="const")
    b = sample_images(G, 1, seed=6, noise_mode="const")
    mixed = sample_images(G, 1, seed=5, mix_seed=6, mix_layer=2, noise_mode="const")
    assert (mixed - a).abs().amax() > 1e-3 and (mixed - b).abs().amax() > 1e-3
    torch.testing.assert_close(sample_images(G, 1, seed=5, mix_seed=6, mix_layer=0, noise_mode="const"), b,
                               atol=1e-4, rtol=0)
    matrix = style_mixing_matrix(G, row_seeds=[5], col_seeds=[6, 8], mix_layer=2)
    assert matrix.shape == (6, 1, 16, 16)
    torch.testing.assert_close(matrix[4], mixed[0], atol=1e-4, rtol=0)  # row 1 (seed 5), column 1 (seed 6)
    assert torch.equal(matrix[0], -torch.ones(1, 16, 16))
    with pytest.raises(ValueError, match="mix_seed"):
        sample_images(G, 1, mix_layer=2)


@pytest.mark.parametrize("space", ["z", "w"])
def test_interpolation_endpoints_are_the_endpoint_images(G, space):
    strip = interpolation_strip(G, 2, 9, steps=5, space=space, noise_mode="const")
    assert strip.shape == (5, 1, 16, 16)
    torch.testing.assert_close(strip[0], sample_images(G, 1, seed=2, noise_mode="const")[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(strip[-1], sample_images(G, 1, seed=9, noise_mode="const")[0], atol=1e-4, rtol=0)
    assert (strip[2] - strip[0]).abs().amax() > 1e-3 and (strip[2] - strip[-1]).abs().amax() > 1e-3
    with pytest.raises(ValueError, match="at least 2 steps"):
        interpolation_strip(G, 2, 9, steps=1)


def test_slerp_keeps_the_norm_between_orthogonal_latents():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    out = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out.norm(dim=1), torch.full((3,), 3.0))
    assert torch.equal(out[0], a[0]) and torch.equal(out[2], b[0])
    torch.testing.assert_close(out[1], torch.tensor([3 / 2**0.5, 3 / 2**0.5]))


def test_to_uint8_maps_minus_one_to_black_and_one_to_white():
    x = torch.tensor([-1.0, -2.0, 0.0, 1.0, 5.0, 0.5]).reshape(1, 1, 2, 3)
    assert to_uint8(x).tolist() == [[[0, 0, 128], [255, 255, 191]]]
    assert to_uint8(x).dtype == np.uint8
    with pytest.raises(ValueError, match="greyscale"):
        to_uint8(torch.zeros(1, 3, 2, 2))


def test_seeds_are_distinct_streams():
    seeds = {image_seed(s, i) for s in range(20) for i in range(50)}
    assert len(seeds) == 1000
    with pytest.raises(ValueError, match="positive"):
        sample_images(random_generator(), 0)


def test_classes_of_single_class_and_conditional_models():
    G_ad = random_generator("AD")
    sample_images(G_ad, 1, class_name="AD")
    with pytest.raises(ValueError, match="trained on AD only and cannot make NC"):
        sample_images(G_ad, 1, class_name="NC")
    with pytest.raises(ValueError, match="'MCI' is not one of"):
        sample_images(G_ad, 1, class_name="MCI")
    G_both = random_generator("both")
    with pytest.raises(ValueError, match="conditional: choose a class"):
        sample_images(G_both, 1)
    ad = sample_images(G_both, 2, class_name="AD", noise_mode="const")
    nc = sample_images(G_both, 2, class_name="NC", noise_mode="const")
    assert (ad - nc).abs().amax() > 1e-3  # same z, the label changes the image


def test_directions_are_orthonormal_and_scaled_in_standard_deviations(G):
    d = compute_directions(G, k=4, n_samples=2000)
    assert d.components.shape == (4, 16) and d.stds.shape == (4,) and d.mean.shape == (16,)
    torch.testing.assert_close(d.components @ d.components.T, torch.eye(4), atol=1e-4, rtol=0)
    assert torch.all(d.stds[:-1] >= d.stds[1:]) and torch.all(d.stds > 0)
    assert 0 < float(d.explained.sum()) <= 1.0
    # the first component is the spread of real w samples: projections have that std
    w = styles(G, latents(3000, 16, seed=99))
    proj = (w - d.mean) @ d.components[0]
    assert abs(float(proj.std()) / float(d.stds[0]) - 1) < 0.1
    moved = d.shift(w[:2], [2.0, 0.0])
    torch.testing.assert_close((moved - w[:2]) @ d.components[0], 2 * d.stds[0].expand(2), rtol=1e-4, atol=1e-5)
    again = compute_directions(G, k=4, n_samples=2000)
    assert torch.equal(again.components, d.components)  # deterministic, signs included


def test_directions_are_cached_next_to_the_checkpoint_and_reused(G, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    ckpt = tmp_path / "run" / "checkpoints" / "02-16px.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(3)}, str(ckpt))
    d1, path = directions_for_checkpoint(G, ckpt, k=3, n_samples=500)
    assert path.parent == ckpt.parent / "directions" and path.name.startswith("02-16px-")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["k"] == 3 and sidecar["checkpoint"] == "02-16px.safetensors" and len(sidecar["stds"]) == 3

    import brainlib.synthesis.directions as directions_module
    monkeypatch.setattr(directions_module, "compute_directions", lambda *a, **k: pytest.fail("not cached"))
    d2, path2 = directions_for_checkpoint(G, ckpt, k=3, n_samples=500)
    assert path2 == path and torch.equal(d2.components, d1.components) and torch.equal(d2.stds, d1.stds)

    save_file({"x": torch.ones(3)}, str(ckpt))  # a retrained checkpoint of the same name
    assert cache_paths(ckpt, {"k": 3, "n_samples": 500, "seed": 0, "class_name": None})[0] != path
