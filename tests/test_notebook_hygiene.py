"""The committed notebooks are small, clean and parameterised: what a reviewer sees in a
diff is source and a few checked lines of text, never images, tracebacks or noise."""
import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data", "02_train_progressive", "03_samples", "04_umap"]
MAX_BYTES = 100_000
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def load(name: str) -> nbformat.NotebookNode:
    path = ROOT / "notebooks" / f"{name}.ipynb"
    assert path.is_file(), f"{path} is missing (the batch runs {', '.join(NOTEBOOKS)})"
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_small_and_valid(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    nb = load(name)
    nbformat.validate(nb)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; strip its outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata, "executed by papermill and committed as is: use the refresh tool"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cell_holds_the_tagged_plain_parameters(name):
    first = load(name).cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), \
        f"{name}: the first cell must be the code cell tagged 'parameters'"
    tree = ast.parse(first.source)
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            f"{name}: parameters cell line {stmt.lineno} is not `name = value`"
        ast.literal_eval(stmt.value)  # plain values only: raises on calls, names, expressions
    assert tree.body, f"{name}: empty parameters cell"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outputs_are_text_from_checked_cells_only(name):
    for ordinal, (i, cell) in enumerate(code_cells(load(name)), 1):
        if not cell.outputs:
            assert cell.execution_count is None, f"{name} cell {i}: execution count without outputs"
            continue
        # nbval compares only cells that ran: the count is the cell's place in a fresh Run All
        assert cell.execution_count == ordinal, f"{name} cell {i}: execution count {cell.execution_count} != {ordinal}"
        assert all(o.get("execution_count") in (None, ordinal) for o in cell.outputs), f"{name} cell {i}"
        assert cell.source.lstrip().startswith(CHECK_MARK), f"{name} cell {i} has outputs but is not checked"
        for out in cell.outputs:
            assert out.output_type != "error", f"{name} cell {i}: committed error {out.get('ename')}"
            assert not any(k.startswith("image/") for k in out.get("data", {})), f"{name} cell {i}: image output"
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            assert "Traceback" not in text, f"{name} cell {i}: traceback in the output"
        assert set(cell.metadata) <= {"tags"}, f"{name} cell {i}: execution metadata {sorted(cell.metadata)}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_starts_in_the_workbook_folder(name):
    """Right after the parameters: os.chdir(project_root()), so relative paths mean the workbook's."""
    second = code_cells(load(name))[1][1]
    assert "os.chdir(brainlib.config.project_root())" in second.source
