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
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs >= 6 + 4 * 2 + 1  # grids (2 + 4), four figures per run, the explorer
    assert not list(Path(project_root(), "outputs").glob("smoke-*"))  # nothing written to the workbook
