"""02_train_progressive runs headless with papermill on the smoke preset and leaves a full run folder."""
import json
from pathlib import Path

import pytest

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
