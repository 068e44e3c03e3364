"""nbval regression tests: the committed notebooks, given the smoke parameters, print
exactly the checked outputs they were committed with (`pytest --nbval-lax`: only cells
starting with `# NBVAL_CHECK_OUTPUT` are compared).

The committed outputs are recorded by tools/refresh_notebook_outputs.py on the same
tiny phantom and smoke batch this test uses. The first two tests show the machinery on
a notebook without torch: papermill's prepare-only keeps the committed outputs, and an
edited expected output makes nbval fail.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from smoke_batch import ROOT, refresh, smoke_batch

NOTEBOOKS = ["01_data", "02_train_progressive", "03_samples", "04_umap"]


def nbval(*notebooks: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`pytest --nbval-lax` on the given notebooks, in a child process; rootdir is `cwd`
    so the workbook's pytest settings and conftest stay out of it."""
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p",
                           "no:cacheprovider",
                           "-q", "--rootdir", str(cwd), "-c", "/dev/null", *map(str, notebooks)],
                          cwd=cwd, capture_output=True, text=True, timeout=1800)


def committed_style_notebook(path: Path, expected: str) -> Path:
    """A parameters cell, a checked cell whose committed output is `expected`, and an
    unchecked cell with a changing output."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("rows = 4")
    params.metadata["tags"] = ["parameters"]
    checked = nbformat.v4.new_code_cell(f"{refresh.CHECK_MARK}\nprint('shape', (rows, 3))")
    checked.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expected)]
    free = nbformat.v4.new_code_cell("import time\nprint(time.time())")
    free.outputs = [nbformat.v4.new_output("stream", name="stdout", text="0.0\n")]
    checked.execution_count, free.execution_count = 2, 3  # nbval compares only cells that ran
    nb.cells = [params, checked, free]
    nbformat.write(nb, path)
    return path


def test_prepare_only_injects_parameters_and_keeps_committed_outputs(tmp_path):
    source = committed_style_notebook(tmp_path / "nb.ipynb", "shape (2, 3)\n")
    copy = refresh.parameterised_copy(source, tmp_path / "copy" / "nb.ipynb", {"rows": 2})
    nb = nbformat.read(copy, as_version=4)
    assert nb.cells[0].source == "rows = 4"  # the original parameters stay first
    assert "injected-parameters" in nb.cells[1].metadata["tags"] and "rows = 2" in nb.cells[1].source
    assert nb.cells[2].outputs[0]["text"] == "shape (2, 3)\n"


def test_nbval_passes_on_the_committed_output_and_fails_when_it_changes(tmp_path):
    source = committed_style_notebook(tmp_path / "nb.ipynb", "shape (2, 3)\n")
    good = refresh.parameterised_copy(source, tmp_path / "good" / "nb.ipynb", {"rows": 2})
    result = nbval(good, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout  # params, injected, checked, unchecked (time differs: not compared)

    changed = committed_style_notebook(tmp_path / "nb.ipynb", "shape (2, 4)\n")
    bad = refresh.parameterised_copy(changed, tmp_path / "bad" / "nb.ipynb", {"rows": 2})
    result = nbval(bad, cwd=tmp_path)
    assert result.returncode == 1
    assert "1 failed, 3 passed" in result.stdout and "shape (2, 4)" in result.stdout


def test_refresh_keeps_text_of_checked_cells_only_and_the_original_parameters(tmp_path):
    committed = nbformat.read(committed_style_notebook(tmp_path / "nb.ipynb", ""), as_version=4)
    for cell in committed.cells:
        cell.outputs = []
    executed = nbformat.read(refresh.parameterised_copy(tmp_path / "nb.ipynb", tmp_path / "ex.ipynb",
                                                        {"rows": 2}), as_version=4)
    executed.cells[2].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="shape (2, 3)\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
    ]
    executed.cells[2].execution_count = 3
    executed.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1700000000.0\n")]
    fresh = refresh.with_checked_outputs(committed, executed)
    assert [c.source for c in fresh.cells] == [c.source for c in committed.cells]  # no injected cell
    assert fresh.cells[1].outputs == [nbformat.v4.new_output("stream", name="stdout", text="shape (2, 3)\n"),
                                      nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})]
    assert fresh.cells[1].execution_count == 2 and fresh.cells[2].outputs == []
    assert fresh.cells[2].execution_count is None and fresh.cells[0].execution_count is None
    executed.cells[2].outputs[0]["text"] = f"saved to {tmp_path}/x.png\n"
    with pytest.raises(ValueError, match="checked cell 1 prints the temporary folder"):
        refresh.with_checked_outputs(committed, executed, forbidden=[str(tmp_path)])


@pytest.fixture(scope="module")
def nbval_out_root(tmp_path_factory) -> Path:
    """A fresh out_root holding the smoke batch's NC run only: nbval's own 02 trains
    smoke-AD from scratch, as the refresh did, and 03/04 then find both runs."""
    out_root = tmp_path_factory.mktemp("nbval_outputs")
    batch = smoke_batch()
    shutil.copytree(batch / f"{refresh.SMOKE_NAME}-NC", out_root / f"{refresh.SMOKE_NAME}-NC")
    return out_root


def test_committed_notebooks_reproduce_their_checked_outputs(nbval_out_root, tmp_path):
    copies = []
    for name in NOTEBOOKS:
        source = ROOT / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(source, as_version=4)
        checked = [c for c in nb.cells if refresh.is_checked(c)]
        assert checked and all(c.outputs for c in checked), \
            f"{name}: no committed outputs to check; run tools/refresh_notebook_outputs.py"
        params = refresh.smoke_parameters(source, nbval_out_root, smoke_batch_data())
        copies.append(refresh.parameterised_copy(source, tmp_path / f"{name}.ipynb", params))
    result = nbval(*copies, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " failed" not in result.stdout


def smoke_batch_data() -> Path:
    from smoke_batch import tiny_data
    return tiny_data()
