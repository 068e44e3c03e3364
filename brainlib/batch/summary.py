"""The batch report's files: what a person reads instead of opening Jupyter.

`outputs/<batch>/summary.html` is one self-contained page (figures embedded); `summary.md`
holds the same content with its figures in `summary_files/`, and `eval.json` is copied
beside both (`eval-<preset>.json`, one per preset, in a batch of several), so the batch folder
alone, zipped and opened elsewhere, still shows everything.
The content comes from `report_page`, the HTML and Markdown from `render`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from brainlib.atomic import atomic_write_bytes, atomic_write_text
from brainlib.batch.render import to_html, to_markdown
from brainlib.batch.report_page import FILES_DIR, page_blocks


def write_summary(batch_dir: Path, run_dirs: list[Path], timings: list[dict[str, Any]],
                  *, total_seconds: float | None = None, batch: dict[str, Any] | None = None,
                  failure: str | None = None) -> Path:
    """Write summary.html, summary.md, summary_files/ and a copy of eval.json into batch_dir;
    return the HTML path. `batch` holds the batch's options (preset, classes, conditional,
    data_root, name, out_root; for several presets also presets, runs: {preset: run names} and
    name_given) for the grouping, the settings and the reproducing commands; `failure` is the
    message of the notebook that stopped the batch."""
    batch_dir, run_dirs = Path(batch_dir), [Path(r) for r in run_dirs]
    blocks = page_blocks(batch_dir, run_dirs, timings, total_seconds, dict(batch or {}), failure)
    files = batch_dir / FILES_DIR
    written = set()
    for b in blocks:
        for f in b.figures:
            atomic_write_bytes(files / f.name, f.png)
            written.add(f.name)
    for stale in files.glob("*.png") if files.is_dir() else []:
        if stale.name not in written:
            stale.unlink()
    atomic_write_text(batch_dir / "summary.md", to_markdown(blocks))
    html_path = batch_dir / "summary.html"
    atomic_write_text(html_path, to_html(blocks[0].text, blocks))
    return html_path
