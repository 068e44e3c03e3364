"""The latent explorer: rendering, slider callbacks, saving, headless display."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from brainlib.config import preset
from brainlib.networks.layers import NoiseInjection
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.synthesis.directions import compute_directions
from brainlib.synthesis.explorer import LatentExplorer
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
