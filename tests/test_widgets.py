"""The explorers of 03_samples (a StyleGAN's and a diffusion run's): rendering, slider callbacks,
saving, headless display."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from brainlib.config import preset
from brainlib.networks.diffusion import build_denoiser
from brainlib.networks.layers import NoiseInjection
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.synthesis.directions import compute_directions
from brainlib.synthesis.explorer import DiffusionExplorer, LatentExplorer, explorer_for
from brainlib.synthesis.sampling import sample_images, to_uint8


def make_explorer(tmp_path, class_name="AD", **kw):
    cfg = preset("smoke", class_name=class_name, run=f"x-{class_name}", out_root=str(tmp_path))
    torch.manual_seed(0)
    G = Generator(network_settings(cfg)).eval().requires_grad_(False)
    for m in G.modules():
        if isinstance(m, NoiseInjection):
            m.weight.fill_(0.5)
    return LatentExplorer(G, cfg, directions=compute_directions(G, k=3, n_samples=500), k=3, **kw)


@pytest.fixture
def explorer(tmp_path):
    return make_explorer(tmp_path, seed=4, psi=0.7)


def test_default_view_is_image_0_of_generate_with_that_seed(explorer):
    expected = to_uint8(sample_images(explorer.G, 1, seed=4, psi=0.7))[0]
    assert explorer.image.shape == (16, 16) and explorer.image.dtype == np.uint8
    assert np.array_equal(explorer.render(), expected)


def test_render_applies_changes_without_keeping_them(explorer):
    base = explorer.render()
    for changes in ({"seed": 5}, {"psi": 0.0}, {"directions": [2.0, 0.0, 0.0]}, {"directions": [0.0, 0.0, -3.0]},
                    {"noise_strength": 0.0}, {"mix_layer": 2}):
        assert not np.array_equal(explorer.render(**changes), base), changes
    assert np.array_equal(explorer.render(), base) and explorer.settings["seed"] == 4
    assert np.array_equal(explorer.render(mix_layer=explorer.num_ws), base)  # num_ws: mixing off
    with pytest.raises(ValueError, match="unknown explorer settings"):
        explorer.render(temperature=2)
    with pytest.raises(ValueError, match="directions needs 3 values"):
        explorer.render(directions=[1.0])
    with pytest.raises(ValueError, match="mix_layer must be between 0"):
        explorer.render(mix_layer=99)


def test_mixing_from_layer_0_takes_every_style_from_the_mix_seed(explorer):
    mixed = explorer.render(mix_layer=0, mix_seed=8, noise_strength=0.0)
    assert np.array_equal(mixed, explorer.render(seed=8, noise_strength=0.0))


def test_setting_a_slider_in_code_changes_the_displayed_png(explorer):
    view = explorer.widget
    shown = explorer._image_widget
    assert shown in view.children[0].children
    with Image.open(__import__("io").BytesIO(shown.value)) as im:
        assert im.size == (explorer.display_size, explorer.display_size)
    for control, value in [(explorer.controls["seed"], 11), (explorer.controls["psi"], 0.3),
                           (explorer.direction_sliders[0], 2.5), (explorer.controls["noise_strength"], 0.0),
                           (explorer.controls["mix_layer"], 1), (explorer.controls["mix_seed"], 40)]:
        before = shown.value
        control.value = value
        assert shown.value != before, control.description
    s = explorer.settings
    assert (s["seed"], s["psi"], s["directions"][0], s["noise_strength"], s["mix_layer"], s["mix_seed"]) == \
        (11, 0.3, 2.5, 0.0, 1, 40)
    assert np.array_equal(explorer.image, explorer.render())


def test_save_button_writes_the_image_and_its_settings(explorer, tmp_path):
    assert explorer.widget is not None
    explorer.controls["seed"].value = 21
    explorer.save_button.click()
    pngs = list((tmp_path / "x-AD" / "explorer").glob("*.png"))
    assert len(pngs) == 1 and str(pngs[0]) in explorer.status.value
    with Image.open(pngs[0]) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), explorer.image)
    meta = json.loads(pngs[0].with_suffix(".json").read_text())
    assert meta["seed"] == 21 and meta["psi"] == 0.7 and meta["run"] == "x-AD" and meta["res"] == 16
    assert explorer.save() == pngs[0]  # the same view saves to the same file
    explorer.update(psi=0.5)
    assert explorer.save() != pngs[0] and len(list(pngs[0].parent.glob("*.png"))) == 2


def test_conditional_model_has_a_class_toggle(tmp_path):
    ex = make_explorer(tmp_path, class_name="both")
    assert ex.settings["class_name"] == "AD"
    assert ex.widget is not None
    before = ex._image_widget.value
    ex.controls["class_name"].value = "NC"
    assert ex._image_widget.value != before and ex.settings["class_name"] == "NC"
    single = make_explorer(tmp_path, class_name="NC")
    assert single.widget is not None
    assert "class_name" not in single.controls and single.settings["class_name"] is None


def test_show_displays_the_widget_and_a_static_png(explorer, monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    explorer.show()
    assert shown[0] is explorer.widget
    assert isinstance(shown[1], IPython.display.Image) and shown[1].data == explorer.display_png()


# ----------------------------------------------------------------------
# A diffusion run's explorer: seed, DDIM steps, and class and guidance when conditional


def make_diffusion_explorer(tmp_path, class_name="both", **kw) -> DiffusionExplorer:
    """Over an untrained diffusion-smoke denoiser whose weights are shaken, so that its class
    and the guidance matter (a fresh U-Net's last layer is zero)."""
    cfg = preset("diffusion-smoke", class_name=class_name, run=f"d-{class_name}", out_root=str(tmp_path))
    torch.manual_seed(0)
    denoiser = build_denoiser(cfg).eval().requires_grad_(False)
    for p in denoiser.parameters():
        p.add_(torch.randn_like(p) * 0.2)
    return DiffusionExplorer(DiffusionSampler(denoiser, cfg), cfg, **kw)


@pytest.fixture
def diffusion_explorer(tmp_path):
    return make_diffusion_explorer(tmp_path, seed=4)


def test_diffusion_explorer_offers_what_a_diffusion_model_has(diffusion_explorer, tmp_path):
    assert diffusion_explorer.widget is not None
    assert list(diffusion_explorer.controls) == ["seed", "steps", "class_name", "guidance"]
    assert not hasattr(diffusion_explorer, "direction_sliders")
    labels = [c.description for c in diffusion_explorer.controls.values()]
    assert labels == ["seed", "DDIM steps", "class", "guidance"]
    s = diffusion_explorer.settings
    assert (s["seed"], s["steps"], s["class_name"], s["guidance"]) == (4, 4, "AD", 1.0)  # the preset's sampling
    single = make_diffusion_explorer(tmp_path, class_name="NC")
    assert single.widget is not None
    assert list(single.controls) == ["seed", "steps"]  # no class to pick, nothing to guide towards
    assert single.settings["class_name"] is None


def test_diffusion_explorer_shows_image_0_of_generate_and_each_seed_its_own(diffusion_explorer):
    G = diffusion_explorer.sampler
    expected = to_uint8(sample_images(G, 1, seed=4, class_name="AD"))[0]
    assert diffusion_explorer.image.shape == (16, 16) and diffusion_explorer.image.dtype == np.uint8
    assert np.array_equal(diffusion_explorer.render(), expected)
    assert np.array_equal(diffusion_explorer.render(), diffusion_explorer.render())  # same seed, same image
    other = diffusion_explorer.render(seed=5)
    assert not np.array_equal(other, expected)
    assert np.array_equal(other, to_uint8(sample_images(G, 1, seed=5, class_name="AD"))[0])
    for changes in ({"steps": 9}, {"guidance": 3.0}, {"class_name": "NC"}):
        assert not np.array_equal(diffusion_explorer.render(**changes), expected), changes
    assert diffusion_explorer.settings["seed"] == 4 and np.array_equal(diffusion_explorer.render(), expected)


def test_diffusion_explorer_refuses_settings_it_cannot_use(diffusion_explorer):
    for changes, message in (({"psi": 0.5}, "unknown explorer settings"),
                             ({"steps": 0}, r"steps must be within \[1, 100\]"),
                             ({"steps": 101}, "steps must be within"), ({"guidance": -1.0}, "guidance must be 0"),
                             ({"guidance": float("nan")}, "guidance must be 0"), ({"class_name": "MCI"}, "not one of"),
                             ({"seed": -1}, "seed must be a whole number")):
        with pytest.raises(ValueError, match=message):
            diffusion_explorer.render(**changes)


def test_diffusion_explorer_widgets_change_the_displayed_png_and_save_their_settings(diffusion_explorer, tmp_path):
    shown = diffusion_explorer.widget.children[0].children[0]
    assert shown is diffusion_explorer._image_widget
    for name, value in (("seed", 11), ("steps", 7), ("guidance", 2.5), ("class_name", "NC")):
        before = shown.value
        diffusion_explorer.controls[name].value = value
        assert shown.value != before, name
    s = diffusion_explorer.settings
    assert (s["seed"], s["steps"], s["guidance"], s["class_name"]) == (11, 7, 2.5, "NC")
    assert diffusion_explorer._render_time.value.endswith("s (7 steps)")
    path = diffusion_explorer.save()
    assert path.parent == tmp_path / "d-both" / "explorer"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == {"run": "d-both", "res": 16, "seed": 11, "class_name": "NC", "guidance": 2.5, "steps": 7}


def test_explorer_for_picks_the_runs_family(tmp_path):
    d = make_diffusion_explorer(tmp_path)
    (tmp_path / "d-both").mkdir()  # as a trained run's folder
    picked = explorer_for("d-both", d.sampler, d.cfg, out_root=tmp_path, seed=3)
    assert isinstance(picked, DiffusionExplorer) and picked.settings["seed"] == 3
    assert picked.save_dir == tmp_path / "d-both" / "explorer"
