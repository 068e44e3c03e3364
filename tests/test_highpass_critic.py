"""The critic's high-pass head (`critic_highpass`, stylegan1.HighpassHead), whole or reading 2x2
pixel blocks (`highpass_unshuffle`): shapes, the fade-in, what it sees, that critics without it are
unchanged, and a smoke run that resumes."""
import json

import numpy as np
import pytest
import torch

from brainlib.config import RunConfig, preset
from brainlib.networks.build import build_discriminator
from brainlib.networks.losses import r1_penalty
from brainlib.networks.settings import NetworkSettings, network_settings
from brainlib.networks.stylegan1 import BLACK

ARCHS = ["stylegan1", "stylegan2"]
HEADS = [{"critic_highpass": True}, {"critic_highpass": True, "highpass_unshuffle": True}]


def tiny(**overrides) -> NetworkSettings:
    return network_settings(preset("smoke", **overrides))  # 16 px, widths {4: 16, 8: 16, 16: 8}


def critic(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_discriminator(tiny(**overrides)).eval()


def labels_for(class_name, n):
    return torch.arange(n) % 2 if class_name == "both" else None


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("class_name", ["AD", "both"])
@pytest.mark.parametrize("arch", ARCHS)
def test_scores_have_one_value_per_image_at_every_resolution_and_alpha(arch, class_name, kind):
    D = critic(arch=arch, class_name=class_name, **kind)
    label = labels_for(class_name, 3)
    for res in (4, 8, 16):
        for alpha in (0.0, 0.4, 1.0):
            scores = D(torch.randn(3, 1, res, res), label, alpha=alpha)
            assert scores.shape == (3,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_the_head_adds_its_score_and_fades_in_as_the_input_side_does(arch):
    D = critic(arch=arch, class_name="both", critic_highpass=True)
    img, label = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 1, 0])
    main = D.epilogue(D.blocks["8"](D.blocks["16"](D.from_image["16"](img))), label)
    torch.testing.assert_close(D(img, label, alpha=1.0), main + D.highpass_heads["16"](img))
    # alpha = 0 is the previous step's critic, its head included
    torch.testing.assert_close(D(img, label, alpha=0.0), D(D.downsample_image(img), label, alpha=1.0))
    assert not torch.allclose(D.highpass_heads["16"](img), torch.zeros(4))


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_the_head_sees_nothing_of_flat_images_or_of_their_borders(arch, kind):
    D = critic(arch=arch, **kind)
    head = D.highpass_heads["16"]
    black, grey = torch.full((2, 1, 16, 16), BLACK), torch.full((2, 1, 16, 16), 0.3)
    assert torch.equal(head.highpass(black), torch.zeros_like(black))
    assert torch.equal(head(black), head(grey))  # the score of an all-zero high-pass
    ramp = torch.linspace(-1, 1, 16).expand(2, 1, 16, 16)  # linear: the binomial blur keeps it inside
    assert head.highpass(ramp)[..., 1:-1].abs().max() < 1e-6
    stripes = torch.tensor([-1.0, 1.0]).repeat(8).expand(2, 1, 16, 16)  # the finest band
    assert not torch.equal(head(stripes), head(grey))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_unshuffled_head_runs_at_half_size_and_tells_apart_the_pixels_of_a_block(arch):
    D = critic(arch=arch, critic_highpass=True, highpass_unshuffle=True)
    head = D.highpass_heads["16"]
    assert head.from_image.conv.weight.shape[1] == 4  # one input channel per pixel of a 2x2 block
    sizes = []
    head.block.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[-1]))
    dots = torch.full((4, 1, 16, 16), BLACK)
    for i, (y, x) in enumerate([(6, 6), (6, 7), (7, 6), (7, 7)]):  # one bright pixel in each corner of a block
        dots[i, 0, y, x] = 1.0
    scores = head(dots)
    assert sizes == [8] and len(set(scores.tolist())) == 4
    whole = critic(arch=arch, critic_highpass=True).highpass_heads["16"]
    assert whole.from_image.conv.weight.shape[1] == 1


def test_unshuffle_is_a_setting_of_the_head_and_old_runs_load_without_it():
    settings = tiny(critic_highpass=True)
    legacy = {k: v for k, v in settings.to_dict().items() if k != "highpass_unshuffle"}
    assert NetworkSettings.from_dict(legacy) == settings and not settings.highpass_unshuffle
    d = RunConfig().to_dict()
    del d["highpass_unshuffle"]
    assert RunConfig.from_dict(d).highpass_unshuffle is False
    assert tiny(critic_highpass=True, highpass_unshuffle="true").highpass_unshuffle is True
    with pytest.raises(ValueError, match="set critic_highpass=true with it"):
        preset("smoke", highpass_unshuffle="true")


@pytest.mark.parametrize("class_name", ["AD", "both"])
@pytest.mark.parametrize("arch", ARCHS)
def test_without_the_flag_the_critic_is_the_one_built_before_it_existed(arch, class_name):
    settings = tiny(arch=arch, class_name=class_name)
    legacy = {k: v for k, v in settings.to_dict().items() if k != "critic_highpass"}  # as old checkpoints hold
    assert NetworkSettings.from_dict(legacy) == settings and not settings.critic_highpass
    torch.manual_seed(0)
    old = build_discriminator(NetworkSettings.from_dict(legacy))
    after_old = torch.randn(3)
    off, on = critic(arch=arch, class_name=class_name), critic(arch=arch, class_name=class_name, critic_highpass=True)
    torch.manual_seed(0)
    build_discriminator(settings)
    assert torch.equal(torch.randn(3), after_old)  # the same RNG consumption
    a, b, c = old.state_dict(), off.state_dict(), on.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # with the flag the heads come last, and everything before them is unchanged
    assert list(c)[:len(a)] == list(a) and all(torch.equal(a[k], c[k]) for k in a)
    assert all(k.startswith("highpass_heads.") for k in list(c)[len(a):])
    img, label = torch.randn(4, 1, 16, 16), labels_for(class_name, 4)
    for alpha in (0.3, 1.0):
        assert torch.equal(old(img, label, alpha=alpha), off(img, label, alpha=alpha))


def test_a_saved_config_without_the_setting_loads_without_the_head():
    d = RunConfig().to_dict()
    del d["critic_highpass"]
    assert RunConfig.from_dict(d).critic_highpass is False
    assert preset("smoke", critic_highpass="true").critic_highpass is True  # --set critic_highpass=true
    with pytest.raises(ValueError, match="may name critic_highpass"):
        NetworkSettings.from_dict({**tiny().to_dict(), "unknown": 1})


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_r1_reaches_the_head_through_the_input_gradient(arch, kind):
    D = critic(arch=arch, **kind).train()
    r1_penalty(D, torch.randn(4, 1, 16, 16), None, alpha=1.0).backward()
    weights = [p for n, p in D.highpass_heads["16"].named_parameters() if n.endswith("weight")]
    assert weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)  # biases: no slope


def test_bf16_autocast_takes_the_high_pass_in_float32():
    D = critic(critic_highpass=True)
    img = torch.rand(4, 1, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hp = D.highpass_heads["16"].highpass(img)
        scores = D(img, None, alpha=0.5)
    assert hp.dtype == torch.float32 and torch.isfinite(scores.float()).all()
    torch.testing.assert_close(hp, D.highpass_heads["16"].highpass(img))


@pytest.mark.parametrize("unshuffle", [False, True])
def test_a_smoke_run_with_the_head_trains_and_resumes(tmp_path, unshuffle):
    from brainlib.data.dataset import SliceDataset
    from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint
    from brainlib.training.trainer import train

    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16), dtype=np.uint8)
    data = SliceDataset(images=images, labels=np.ones(16, np.int64), splits=np.array(["train"] * 16),
                        sources=[f"img{i}" for i in range(16)], skipped=[], root=tmp_path)
    cfg = preset("smoke", run="hp", out_root=str(tmp_path), critic_highpass="true", images_per_res=16,
                 highpass_unshuffle=unshuffle)
    train(cfg, dataset=data, max_steps=3)  # into step 2, mid fade-in
    assert not json.loads(latest_checkpoint(cfg.run_dir).with_suffix(".json").read_text())["finished"]
    train(cfg, dataset=data, resume=True)
    tensors, meta = load_checkpoint(latest_checkpoint(cfg.run_dir))
    assert meta["finished"] and meta["networks"]["critic_highpass"] is True
    assert meta["networks"]["highpass_unshuffle"] is unshuffle
    heads = {k: v for k, v in tensors.items() if k.startswith("D/highpass_heads.16.")}
    assert heads and all(torch.isfinite(v).all() for v in heads.values())
    torch.manual_seed(0)
    untrained = build_discriminator(network_settings(cfg)).state_dict()
    assert not torch.equal(heads["D/highpass_heads.16.out.weight"], untrained["highpass_heads.16.out.weight"])
