"""Generator, mapping network and discriminator: shapes, fade-in identities, truncation,
style mixing, noise, conditioning, autocast."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from brainlib.config import preset
from brainlib.networks.build import build_discriminator, build_generator
from brainlib.networks.layers import bilinear_2x
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import (
    BLACK,
    Discriminator,
    Generator,
    MappingNetwork,
    composite_on_black,
    image_planes,
)

RESOLUTIONS = [4, 8, 16]
ALPHAS = [0.0, 0.3, 1.0]


def tiny(**overrides):
    return network_settings(preset("smoke", **overrides))  # 16 px, widths {4: 16, 8: 16, 16: 8}


@pytest.fixture(scope="module", params=[("stylegan1", "AD"), ("stylegan1", "both"),
                                        ("stylegan2", "AD"), ("stylegan2", "both")], ids=lambda p: "-".join(p))
def nets(request):
    torch.manual_seed(0)
    arch, class_name = request.param
    cfg = tiny(arch=arch, class_name=class_name)
    return cfg, build_generator(cfg).eval(), build_discriminator(cfg).eval()


def upsample_image(cfg, img):
    """How a generator of cfg's architecture enlarges the previous resolution's image."""
    return bilinear_2x(img) if cfg.arch == "stylegan2" else F.interpolate(img, scale_factor=2, mode="nearest")


def labels_for(cfg, n):
    return torch.arange(n) % 2 if cfg.conditional else None


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_shapes_at_every_resolution_and_alpha(nets, res, alpha):
    cfg, G, D = nets
    z, label = torch.randn(3, cfg.z_dim), labels_for(cfg, 3)
    img = G(z, label, res=res, alpha=alpha)
    assert img.shape == (3, 1, res, res) and torch.isfinite(img).all()
    scores = D(img, label, alpha=alpha)
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_num_ws_counts_two_styles_per_block(nets):
    cfg, G, _ = nets
    assert [G.num_ws_at(r) for r in RESOLUTIONS] == [2, 4, 6] and G.num_ws == 6
    with pytest.raises(ValueError, match="power of two from 4 to image_size=16"):
        G.num_ws_at(32)
    with pytest.raises(ValueError, match=r"ws must be \[B, 16\] or \[B, 4, 16\]"):
        G.synthesize(torch.randn(2, 3, 16), res=8)


def test_generator_fade_in_identities(nets):
    cfg, G, _ = nets
    z, label = torch.randn(4, cfg.z_dim), labels_for(cfg, 4)
    for res in (8, 16):
        kw = dict(noise_mode="const")
        new = G(z, label, res=res, alpha=1.0, **kw)
        old = upsample_image(cfg, G(z, label, res=res // 2, alpha=1.0, **kw))
        torch.testing.assert_close(G(z, label, res=res, alpha=0.0, **kw), old)
        torch.testing.assert_close(G(z, label, res=res, alpha=0.25, **kw), 0.75 * old + 0.25 * new)
        torch.testing.assert_close(G(z, label, res=res, alpha=torch.tensor(1.0), **kw), new)
        assert not torch.allclose(new, old)


def test_discriminator_fade_in_identities(nets):
    cfg, _, D = nets
    img, label = torch.randn(4, 1, 16, 16), labels_for(cfg, 4)
    torch.testing.assert_close(D(img, label, alpha=0.0), D(D.downsample_image(img), label, alpha=1.0))
    x = D.from_image["16"](img)
    new = D.epilogue(D.blocks["8"](D.blocks["16"](x)), label)
    torch.testing.assert_close(D(img, label, alpha=1.0), new)
    assert not torch.allclose(D(img, label, alpha=0.0), D(img, label, alpha=1.0))


def test_discriminator_rejects_bad_input(nets):
    cfg, _, D = nets
    with pytest.raises(ValueError, match=r"must be \[B, 1, res, res\]"):
        D(torch.randn(2, 3, 8, 8), labels_for(cfg, 2))
    with pytest.raises(ValueError, match="power of two"):
        D(torch.randn(2, 1, 12, 12), labels_for(cfg, 2))


@pytest.mark.parametrize("arch", ["stylegan1", "stylegan2"])
def test_conditional_models_need_and_use_labels(arch):
    torch.manual_seed(0)
    cfg = tiny(class_name="both", arch=arch)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    z = torch.randn(2, cfg.z_dim)
    with pytest.raises(ValueError, match="class-conditional"):
        G(z, res=8)
    with pytest.raises(ValueError, match="class-conditional"):
        D(torch.randn(2, 1, 8, 8))
    nc, ad = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    assert not torch.allclose(G.map(z, nc), G.map(z, ad))
    img = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(D(img, nc), D(img, ad))
    # Projection: the score difference between classes is <e_AD - e_NC, h>.
    h = None

    def grab(module, inputs, output):
        nonlocal h
        h = output
    handle = D.epilogue.fc.register_forward_hook(grab)
    diff = D(img, ad) - D(img, nc)
    handle.remove()
    e = D.epilogue.embed.weight * D.epilogue.embed.scale  # [channels, classes]
    torch.testing.assert_close(diff, (F.leaky_relu(h, 0.2) * (e[:, 1] - e[:, 0])).sum(1), rtol=1e-4, atol=1e-5)


def test_unconditional_models_ignore_labels():
    torch.manual_seed(0)
    cfg = tiny()
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    z, img = torch.randn(2, cfg.z_dim), torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(G.map(z), G.map(z, torch.ones(2, dtype=torch.long)))
    torch.testing.assert_close(D(img), D(img, torch.ones(2, dtype=torch.long)))


def test_mapping_network_lr_mul_is_the_settings_multiplier():
    settings = tiny(lr=1e-3, mapping_lr=1e-5)
    assert settings.mapping_lr_mul == pytest.approx(0.01)  # a run starts at mapping_lr / lr
    G = Generator(dataclasses.replace(settings, mapping_lr_mul=0.03))
    assert all(layer.lr_mul == 0.03 for layer in G.mapping.layers)
    assert len(G.mapping.layers) == 2
    w = MappingNetwork(8, 6, 3, lr_mul=1.0)(torch.randn(5, 8))
    assert w.shape == (5, 6) and (w >= 0).all() and (w > 0).any()  # each layer ends in a ReLU


def test_truncation_psi_zero_gives_w_avg_for_every_z(nets):
    cfg, G, _ = nets
    G = build_generator(cfg)
    z, label = torch.randn(64, cfg.z_dim), labels_for(cfg, 64)
    assert torch.equal(G.w_avg, torch.zeros(cfg.w_dim))
    w = G.map(z, label, update_w_avg=True)
    torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0))  # EMA with beta 0.995 from zero
    if cfg.conditional:
        torch.testing.assert_close(G.w_avg_class[1], 0.005 * w[label == 1].mean(0))
        truncated = G.map(torch.randn(6, cfg.z_dim), torch.tensor([0, 1, 0, 1, 1, 0]), psi=0.0)
        torch.testing.assert_close(truncated[1], G.w_avg_class[1])
        torch.testing.assert_close(truncated[0], G.w_avg_class[0])
    else:
        torch.testing.assert_close(G.map(torch.randn(6, cfg.z_dim), psi=0.0), G.w_avg.expand(6, -1))
        half = G.map(z[:2], psi=0.5)
        torch.testing.assert_close(half, G.w_avg + 0.5 * (G.map(z[:2]) - G.w_avg))
    # Training mode tracks w_avg in forward; eval mode leaves it alone.
    before = G.w_avg.clone()
    G.eval()(z[:4], labels_for(cfg, 4), res=4)
    assert torch.equal(G.w_avg, before)
    G.train()(z[:4], labels_for(cfg, 4), res=4)
    assert not torch.equal(G.w_avg, before)


def test_style_mixing_takes_styles_from_mix_layer_on_from_the_second_z(nets):
    cfg, G, _ = nets
    z1, z2, label = torch.randn(2, cfg.z_dim), torch.randn(2, cfg.z_dim), labels_for(cfg, 2)
    w1, w2 = G.map(z1, label), G.map(z2, label)
    ws = torch.stack([w1] * 2 + [w2] * 4, dim=1)  # mix_layer = 2 at 16 px (6 styles)
    mixed = G(z1, label, res=16, mix_z=z2, mix_layer=2, noise_mode="const")
    torch.testing.assert_close(mixed, G.synthesize(ws, res=16, noise_mode="const"))
    assert not torch.allclose(mixed, G(z1, label, res=16, noise_mode="const"))
    torch.testing.assert_close(G(z1, label, res=16, mix_z=z2, mix_layer=0, noise_mode="const"),
                               G(z2, label, res=16, noise_mode="const"))
    # A random crossover still produces an image.
    assert G(z1, label, res=16, mix_z=z2).shape == (2, 1, 16, 16)


def test_noise_modes(nets):
    cfg, G, _ = nets
    z, label = torch.randn(2, cfg.z_dim), labels_for(cfg, 2)
    # Strength is 0 at init: every mode gives the same image.
    base = G(z, label, res=16, noise_mode="none")
    torch.testing.assert_close(G(z, label, res=16, noise_mode="random"), base, rtol=0, atol=0)
    G2 = build_generator(cfg).eval()
    G2.load_state_dict(G.state_dict())
    with torch.no_grad():
        for name, p in G2.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    a, b = G2(z, label, res=16, noise_mode="random"), G2(z, label, res=16, noise_mode="random")
    assert not torch.allclose(a, b)
    torch.testing.assert_close(G2(z, label, res=16, noise_mode="const"), G2(z, label, res=16, noise_mode="const"))
    assert not torch.allclose(G2(z, label, res=16, noise_mode="const"), base)
    torch.testing.assert_close(G2(z, label, res=16, noise_mode="none"), base)
    torch.testing.assert_close(G2(z, label, res=16, noise_mode="random", noise_strength=0.0), base)
    # Const noise is part of the checkpoint and the same in every freshly built model.
    const = [k for k in G.state_dict() if k.startswith("blocks.16.conv1.") and k.endswith("noise.const_noise")]
    assert len(const) == 1
    torch.testing.assert_close(build_generator(cfg).state_dict()[const[0]], G.state_dict()[const[0]], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["stylegan1", "stylegan2"])
def test_noise_max_res_leaves_the_finer_layers_without_noise_inputs(arch):
    torch.manual_seed(0)
    G = build_generator(tiny(noise_max_res=8, arch=arch)).eval()
    noise_keys = [k for k in G.state_dict() if ".noise." in k]
    assert noise_keys and all(k.startswith(("blocks.4.", "blocks.8.")) for k in noise_keys)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    z = torch.randn(3, G.z_dim)
    # noise at 8 px reaches the image; the 16 px layers add none of their own
    assert not torch.allclose(G(z, res=16, noise_mode="random"), G(z, res=16, noise_mode="random"))
    with torch.no_grad():
        for block in ("4", "8"):
            for m in G.blocks[block].modules():
                if hasattr(m, "noise") and m.noise is not None:
                    m.noise.weight.zero_()
    torch.testing.assert_close(G(z, res=16, noise_mode="random"), G(z, res=16, noise_mode="none"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="noise_max_res"):
        tiny(noise_max_res=2)


def test_widths_follow_cfg_channels_and_presets_have_parameters():
    for name in ("smoke", "demo", "paper"):
        cfg = preset(name)
        G, D = Generator(network_settings(cfg)), Discriminator(network_settings(cfg))
        assert sum(p.numel() for p in G.parameters()) > 0 and sum(p.numel() for p in D.parameters()) > 0
        for res in [4] + cfg.resolutions:
            assert G.to_image[str(res)].conv.weight.shape == (image_planes(G.settings), cfg.channels[res], 1, 1)
            assert D.from_image[str(res)].conv.weight.shape == (cfg.channels[res], 1, 1, 1)
        for res in cfg.resolutions:
            assert G.blocks[str(res)].conv0.conv.weight.shape[:2] == (cfg.channels[res], cfg.channels[res // 2])
            assert D.blocks[str(res)].conv1.weight.shape[:2] == (cfg.channels[res // 2], cfg.channels[res])
        assert G.mapping.layers[-1].weight.shape == (cfg.w_dim, cfg.w_dim)


def test_bf16_autocast_forward_runs_and_is_finite(nets):
    cfg, G, D = nets
    z, label = torch.randn(4, cfg.z_dim), labels_for(cfg, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(z, label, res=16, alpha=0.5, mix_z=torch.randn(4, cfg.z_dim), mix_layer=3)
        scores = D(img.to(memory_format=torch.channels_last), label, alpha=0.5)
    assert img.shape == (4, 1, 16, 16) and scores.shape == (4,)
    assert torch.isfinite(img.float()).all() and torch.isfinite(scores.float()).all()
    torch.testing.assert_close(scores.float(), D(img.float(), label, alpha=0.5), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("composite", [False, True])
@pytest.mark.parametrize("arch", ["stylegan1", "stylegan2"])
def test_gradients_reach_every_active_parameter(arch, composite):
    torch.manual_seed(0)
    cfg = tiny(class_name="both", arch=arch, composite=composite)
    G, D = build_generator(cfg), build_discriminator(cfg)
    label = torch.tensor([0, 1, 1, 0])
    D(G(torch.randn(4, cfg.z_dim), label, res=16, alpha=0.5), label, alpha=0.5).sum().backward()
    missing = [n for n, p in list(G.named_parameters()) + list(D.named_parameters())
               if p.grad is None and "to_image.4" not in n and "from_image.4" not in n]
    assert not missing, missing


# ----------------------------------------------------------------------
# composing on a black background (cfg.composite)


def test_composite_on_black_draws_tissue_under_the_mask_and_black_elsewhere():
    tissue = torch.tensor([0.3, -0.2, 0.9, 1.5]).reshape(1, 1, 2, 2)
    logit = torch.tensor([-40.0, 40.0, 0.0, 1.0]).reshape(1, 1, 2, 2)
    out = composite_on_black(torch.cat([tissue, logit], 1))
    mask = 1 / (1 + torch.exp(-logit))
    torch.testing.assert_close(out, BLACK * (1 - mask) + tissue * mask)
    assert out.shape == (1, 1, 2, 2) and out[0, 0, 0, 0] == BLACK and abs(float(out[0, 0, 0, 1]) + 0.2) < 1e-6


@pytest.mark.parametrize("arch", ["stylegan1", "stylegan2"])
def test_composite_generator_is_its_planes_composed_on_black(arch):
    torch.manual_seed(0)
    cfg = tiny(arch=arch, composite=True)
    G = build_generator(cfg).eval()
    assert all(m.conv.weight.shape[0] == 2 for m in G.to_image.values())
    z = torch.randn(3, cfg.z_dim)
    for res, alpha in [(4, 1.0), (8, 0.4), (16, 1.0)]:
        img = G(z, res=res, alpha=alpha, noise_mode="const")
        G.settings = dataclasses.replace(cfg, composite=False)  # the same weights, the planes before composing
        planes = G(z, res=res, alpha=alpha, noise_mode="const")
        G.settings = cfg
        assert img.shape == (3, 1, res, res) and planes.shape == (3, 2, res, res)
        torch.testing.assert_close(img, composite_on_black(planes))
    with torch.no_grad():  # every mask off: every pixel exactly black, whatever the tissue
        for m in G.to_image.values():
            bias = m.bias if arch == "stylegan2" else m.conv.bias
            bias.view(-1)[1] = -1e4
    assert torch.equal(G(z, res=16), torch.full((3, 1, 16, 16), BLACK))
