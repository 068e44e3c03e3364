"""Re-execute the numbered notebooks on the smoke preset and commit their small outputs.

    .venv/bin/python tools/refresh_notebook_outputs.py [--commit] [NOTEBOOK ...]

The notebooks run as one smoke batch (brainlib.batch.pipeline.run_batch) on a tiny phantom
in a temporary folder. Each committed notebook then gets back its own cells, with:
outputs only in cells starting with `# NBVAL_CHECK_OUTPUT` (streams, and the
text/plain part of results; never images), execution counts only on those cells (the
code cell's position, as a fresh Run All numbers it), no papermill or
execution metadata, and its ORIGINAL parameters cell (users keep the demo defaults).
tests/test_nbval.py re-runs the notebooks with the same smoke parameters and checks
those outputs with `pytest --nbval-lax`. A marked output that shows the temporary
folder cannot be reproduced, so the refresh stops and names the cell.

The smoke parameters, the tiny dataset and the copy-with-parameters helper live here
so that the refresh and the tests use exactly the same ones.
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
SMOKE_NAME = "smoke"
SMOKE_PER_CLASS = 24  # as tests/conftest.py's tiny_phantom
SMOKE_EXTRAS: dict = {}  # extra values offered to the notebooks in the smoke batch


def build_smoke_data(folder: Path) -> Path:
    """The tiny phantom (24 images per class, seed 0); returns its AD_NC root."""
    from brainlib.data.phantom import build_phantom
    return build_phantom(out=folder, n_per_class=SMOKE_PER_CLASS, seed=0, workers=1, progress=False)


def run_smoke_batch(out_root: Path, data_root: Path, notebooks_dir: Path = NOTEBOOKS_DIR, **options) -> Path:
    """The whole workbook on the smoke preset; returns the batch folder. `options` go to
    run_batch (how it runs: parallel, progress_seconds), never to the notebooks."""
    from brainlib.batch.pipeline import run_batch
    run_batch(preset="smoke", classes=("AD", "NC"), data_root=data_root, name=SMOKE_NAME, out_root=out_root,
              notebooks_dir=notebooks_dir, parameters=SMOKE_EXTRAS, **options)
    return Path(out_root) / SMOKE_NAME


def smoke_parameters(notebook: Path, out_root: Path, data_root: Path) -> dict:
    """The parameters the smoke batch gives `notebook` (its first 02 run for 02: the
    class of the committed notebook's default, so the checked outputs match)."""
    from brainlib.batch.pipeline import batch_parameters, batch_runs, plan_steps
    classes = ["AD", "NC"]
    runs = batch_runs(["smoke"], classes, SMOKE_NAME)["smoke"]
    offered = batch_parameters("smoke", classes, runs, str(data_root), SMOKE_NAME, Path(out_root), SMOKE_EXTRAS)
    steps = plan_steps(notebook.parent, Path(out_root) / SMOKE_NAME / "notebooks", [offered], classes)
    matching = [s for s in steps if s.notebook == notebook.stem]
    default_class = _defaults(notebook).get("class_name")
    return next((s.parameters for s in matching if s.parameters.get("class_name") == default_class),
                matching[0].parameters)


def executed_copy_for(notebook: Path, batch_dir: Path) -> Path:
    """The executed notebook of the batch whose outputs belong to `notebook`."""
    executed = batch_dir / "notebooks"
    if notebook.stem == "02_train_progressive":
        return executed / f"{notebook.stem}-{_defaults(notebook).get('class_name', 'AD')}.ipynb"
    return executed / notebook.name


def parameterised_copy(source: Path, target: Path, parameters: dict) -> Path:
    """`source` with papermill's injected-parameters cell, outputs kept (prepare only)."""
    import papermill
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(target), parameters=parameters, prepare_only=True,
                               kernel_name="python3", progress_bar=False)
    return target


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def small_outputs(outputs: list) -> list:
    """Streams as they are; results and displays reduced to their text/plain part."""
    kept = []
    for out in outputs:
        if out.output_type == "stream":
            kept.append(nbformat.v4.new_output("stream", name=out.name, text=out.text))
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.get("data", {}):
            data = {"text/plain": out.data["text/plain"]}
            kept.append(nbformat.v4.new_output("display_data", data=data) if out.output_type == "display_data"
                        else nbformat.v4.new_output("execute_result", data=data, execution_count=None))
        elif out.output_type == "error":
            raise ValueError(f"a checked cell raised {out.ename}: {out.evalue}")
    return kept


def with_checked_outputs(committed, executed, *, forbidden: list[str] = ()) -> nbformat.NotebookNode:
    """The committed notebook's cells with the executed notebook's outputs in checked
    cells only; raises ValueError naming the cell if an output holds a forbidden text."""
    ran = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if [c.source for c in ran] != [c.source for c in committed.cells]:
        raise ValueError("the executed notebook's cells differ from the committed ones; re-run the refresh")
    result = copy.deepcopy(committed)
    ordinal = 0
    for i, (cell, done) in enumerate(zip(result.cells, ran, strict=False)):
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        if cell.cell_type != "code":
            continue
        ordinal += 1
        cell.outputs = small_outputs(done.outputs) if is_checked(cell) else []
        # nbval checks only cells that were run; the count a fresh Run All gives, never noise
        cell.execution_count = ordinal if cell.outputs else None
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = cell.execution_count
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)
        for bad in forbidden:
            if bad and bad in text:
                raise ValueError(f"checked cell {i} prints the temporary folder {bad}: print a relative or "
                                 f"fixed text instead (first line: {cell.source.splitlines()[1:2]})")
    result.metadata = {k: v for k, v in result.metadata.items() if k in ("kernelspec", "language_info")}
    if "language_info" in result.metadata:
        result.metadata["language_info"] = {"name": "python"}
    return result


def refresh(notebooks: list[Path], *, commit: bool = False) -> list[Path]:
    """Execute the smoke batch once and rewrite `notebooks` with their checked outputs."""
    with tempfile.TemporaryDirectory(prefix="brainlib_refresh_") as tmp:
        tmp = Path(tmp)
        data_root = build_smoke_data(tmp / "data")
        batch_dir = run_smoke_batch(tmp / "outputs", data_root)
        for nb_path in notebooks:
            committed = nbformat.read(nb_path, as_version=4)
            executed = nbformat.read(executed_copy_for(nb_path, batch_dir), as_version=4)
            try:
                fresh = with_checked_outputs(committed, executed, forbidden=[str(tmp), tmp.name])
            except ValueError as e:
                raise SystemExit(f"{nb_path.name}: {e}") from e
            nbformat.write(fresh, nb_path)
            print(f"refreshed {nb_path.relative_to(ROOT)} "
                  f"({sum(is_checked(c) for c in fresh.cells)} checked cells, {nb_path.stat().st_size // 1024} kB)")
    if commit:
        paths = [str(p.relative_to(ROOT)) for p in notebooks]
        subprocess.run(["git", "add", *paths], cwd=ROOT, check=True)
        subprocess.run(["git", "commit", "-m", "notebooks: refresh checked outputs (smoke preset)", "--", *paths],
                       cwd=ROOT, check=True)
    return notebooks


def _defaults(notebook: Path) -> dict:
    import papermill
    return {k: v["default"].strip("'\"") for k, v in papermill.inspect_notebook(str(notebook)).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    p.add_argument("--commit", action="store_true", help="git commit the refreshed notebooks")
    args = p.parse_args(argv)
    notebooks = [n.resolve() for n in args.notebooks] or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    refresh(notebooks, commit=args.commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
