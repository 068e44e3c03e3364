"""02_train_progressive runs headless with papermill on the smoke preset and leaves a full run folder."""
import json
from pathlib import Path

import pytest

from brainlib.config import preset
from brainlib.networks.build import model_parameter_counts

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_train_progressive.ipynb"


def test_notebook_starts_with_parameters():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["cells"][0]["metadata"]["tags"] == ["parameters"]


def test_notebook_trains_the_smoke_preset(tiny_phantom, tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "02.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
        parameters=dict(run_name="nb-smoke", data_root=str(tiny_phantom), class_name="AD", preset="smoke",
                        overrides={"max_images": 16}, out_root=str(tmp_path / "outputs")))
    run = tmp_path / "outputs" / "nb-smoke"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "plots", "samples"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["01-8px.png", "02-16px.png"]
    assert (run / "checkpoints" / "02-16px.safetensors").is_file()
    cells = json.loads(out.read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "step 2:  16 px  batch   8  32 images  fade-in 16.0" in text
    assert "generator:" in text and "discriminator:" in text
    assert "checkpoints/latest.json" in text  # the run-folder summary at the end
    images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4  # two sample grids, two loss plots


def test_notebook_trains_the_diffusion_smoke_preset_and_shows_what_it_has(tiny_phantom, tmp_path):
    """A diffusion preset: its own settings, one-size schedule and denoiser, its checkpoint grid and
    denoising loss; none of the StyleGAN's steps, fade-in, critic or per-epoch plot."""
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "02.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
        parameters=dict(run_name="nb-dsmoke", data_root=str(tiny_phantom), class_name="both",
                        preset="diffusion-smoke", out_root=str(tmp_path / "outputs")))
    run = tmp_path / "outputs" / "nb-dsmoke"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["16px-000000032img-final.png"]
    cells = json.loads(out.read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "     unet_channels: [8, 16]\n" in text and "      sample_steps: 4\n" in text
    assert ("one size, 16 px (a diffusion model: no resolution steps, no fade-in): "
            "batch 8, 32 images = 4 batches") in text
    denoiser = model_parameter_counts(preset("diffusion-smoke", class_name="both"))["denoiser"]
    assert f"      denoiser: {denoiser:,} parameters" in text
    assert "16px-000000032img-final.png" in text  # the grid's name above it
    for stylegan_only in ("z_dim", "fade_fraction", "step 1:", "discriminator", "gp_weight"):
        assert stylegan_only not in text, stylegan_only
    images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the grid at the final checkpoint and the denoising loss
