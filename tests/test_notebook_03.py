"""notebooks/03_samples.ipynb executed headless with papermill on smoke runs trained for the test."""
from pathlib import Path

import nbformat
import pytest

from brainlib.config import preset, project_root

NOTEBOOK = project_root() / "notebooks" / "03_samples.ipynb"


@pytest.fixture(scope="session")
def smoke_runs(tiny_phantom, tmp_path_factory):
    """An out_root holding two trained smoke runs: smoke-AD (one class) and smoke-both (conditional)."""
    from brainlib.training.trainer import train

    out_root = tmp_path_factory.mktemp("outputs_smoke")
    for c in ("AD", "both"):
        train(preset("smoke", class_name=c, run=f"smoke-{c}", out_root=str(out_root), data_root=str(tiny_phantom)))
    return out_root


def test_committed_notebook_is_parameterised_and_keeps_only_checked_text():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    params = {}
    exec(first.source, {}, params)
    assert params == {"runs": ["demo-AD", "demo-NC"], "out_root": "outputs", "seed": 69, "psi": 0.7}
    assert "os.chdir(brainlib.config.project_root())" in nb.cells[1].source
    for c in nb.cells:  # no images or counts; only the small printed facts nbval checks may be kept
        if c.cell_type == "code":
            assert not c.get("outputs") or c.source.startswith("# NBVAL_CHECK_OUTPUT"), c.source[:60]
            assert not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))


@pytest.mark.slow
def test_notebook_runs_headless_on_smoke_runs(smoke_runs, tmp_path):
    import papermill

    out = tmp_path / "03_executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                               parameters={"runs": ["smoke-AD", "smoke-both"], "out_root": str(smoke_runs)})
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "smoke-AD: 16 px, 6 style inputs, classes ['AD'], z_dim 16, w_dim 16, finished True" in text
    assert "smoke-both: 16 px, 6 style inputs, classes ['AD', 'NC']" in text
    assert text.count("style mixing: styles 0..2 (4..8 px) from the row, 3.. from the column") == 2

    expected = {"truncation", "style_mixing", "interpolation", "noise"}
    for run, classes in (("smoke-AD", ["AD"]), ("smoke-both", ["AD", "NC"])):
        figures = {p.stem.removeprefix("03_") for p in (smoke_runs / run / "samples").glob("03_*.png")}
        assert figures == expected | {f"grid_{c}_psi{p}" for c in classes for p in (1.0, 0.7)}
    assert len(list((smoke_runs / "smoke-AD" / "checkpoints" / "directions").glob("*.safetensors"))) == 1

    explorer_cell = nb.cells[-1]
    kinds = [set(o.get("data", {})) for o in explorer_cell.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds)  # the live widget
    assert any("image/png" in k for k in kinds)  # and its static picture for headless readers
    controls = widget_descriptions(nb)
    assert {"seed", "truncation ψ", "noise strength", "mix seed"} <= controls and "DDIM steps" not in controls
    assert sum(d.startswith("PC") for d in controls) == 6  # the directions of W
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs >= 6 + 4 * 2 + 1  # grids (2 + 4), four figures per run, the explorer
    assert not list(Path(project_root(), "outputs").glob("smoke-*"))  # nothing written to the workbook


def widget_descriptions(nb) -> set[str]:
    """The descriptions of the widgets the executed notebook's kernel held (their saved state)."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return {m["state"]["description"] for m in state.values() if m["state"].get("description")}


@pytest.mark.slow
def test_notebook_runs_headless_on_a_diffusion_run_beside_a_stylegan(smoke_runs, tiny_phantom, tmp_path):
    """A conditional diffusion-smoke run first (so the explorer is its), a StyleGAN run second:
    the diffusion run gets its grids and its explorer, the StyleGAN-only figures the StyleGAN only."""
    import papermill

    from brainlib.training.trainer import train
    train(preset("diffusion-smoke", class_name="both", run="dsmoke-both", out_root=str(smoke_runs),
                 data_root=str(tiny_phantom)))
    out = tmp_path / "03_executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                               parameters={"runs": ["dsmoke-both", "smoke-AD"], "out_root": str(smoke_runs)})
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert ("dsmoke-both: 16 px, a flow diffusion model, classes ['AD', 'NC'], 4 DDIM steps, guidance 1.0, "
            "finished True\n  no W space: the grids and its explorer (seed, class, guidance, DDIM steps), "
            "none of the StyleGAN figures\n") in text
    assert "smoke-AD: 16 px, 6 style inputs" in text and "dsmoke-both, AD, psi 1.0" in text
    assert "dsmoke-both, AD, psi 0.7" not in text
    made = {p.stem for p in (smoke_runs / "dsmoke-both" / "samples").glob("03_*.png")}
    assert made == {"03_grid_AD_psi1.0", "03_grid_NC_psi1.0"}
    assert {"03_truncation", "03_style_mixing", "03_noise"} <= {p.stem for p in (smoke_runs / "smoke-AD" / "samples")
                                                                .glob("03_*.png")}
    explorer_cell = nb.cells[-1]
    assert any("image/png" in o.get("data", {}) for o in explorer_cell.outputs)  # the static picture
    controls = widget_descriptions(nb)
    assert {"seed", "DDIM steps", "class", "guidance"} <= controls
    assert not {"truncation ψ", "noise strength", "mix seed"} & controls
    assert not any(d.startswith("PC") for d in controls)
