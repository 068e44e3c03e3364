"""The batch's summary page: what a person looks at instead of opening Jupyter.

`outputs/<batch>/summary.html` is self-contained (figures embedded as base64 PNG);
`summary.md` shows the same content with figures linked relatively. Both are built
only from files the notebooks wrote: each run's `samples/` grids and `plots/` loss
curves, the embedding figures, the metrics of `eval.json`, and the batch's timings.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any

EMBEDDING_WORDS = ("umap", "tsne", "t-sne", "embedding")
RESOLUTION_GRID = re.compile(r"\d+px$")  # the trainer's grid after each step, e.g. 02-16px.png


def write_summary(batch_dir: Path, run_dirs: list[Path], timings: list[dict[str, Any]],
                  *, total_seconds: float | None = None) -> Path:
    """Write summary.html and summary.md into batch_dir; return the HTML path."""
    from brainlib.atomic import atomic_write_text
    sections = collect(Path(batch_dir), [Path(r) for r in run_dirs])
    title = f"Batch {Path(batch_dir).name}"
    atomic_write_text(Path(batch_dir) / "summary.md", to_markdown(title, sections, timings, total_seconds, Path(batch_dir)))
    html_path = Path(batch_dir) / "summary.html"
    atomic_write_text(html_path, to_html(title, sections, timings, total_seconds))
    return html_path


def collect(batch_dir: Path, run_dirs: list[Path]) -> dict[str, Any]:
    """Figures and metric tables found on disk, grouped for the page."""
    evals = sorted({p for folder in [batch_dir, *run_dirs] if folder.is_dir() for p in folder.rglob("eval.json")})
    embeddings = [p for folder in [batch_dir, *run_dirs] for p in _pngs(folder, recursive=True)
                  if any(w in p.name.lower() for w in EMBEDDING_WORDS)]
    return dict(
        data=[p for p in _pngs(batch_dir / "plots") if not any(w in p.name.lower() for w in EMBEDDING_WORDS)],
        runs=[dict(name=r.name, samples=[p for p in _pngs(r / "samples") if RESOLUTION_GRID.search(p.stem)],
                   figures=[p for p in _pngs(r / "samples") if not RESOLUTION_GRID.search(p.stem)],
                   plots=_pngs(r / "plots"), exists=r.is_dir()) for r in run_dirs],
        embeddings=sorted(set(embeddings)),
        metrics=_distinct_reports(evals),
    )


def metric_rows(report: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten eval.json into (name, value) rows; numbers get 4 significant digits."""
    if isinstance(report, dict):
        return [row for k, v in report.items() for row in metric_rows(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(report, list) and report and all(isinstance(v, (dict, list)) for v in report):
        return [row for i, v in enumerate(report) for row in metric_rows(v, f"{prefix}[{i}]")]
    if isinstance(report, float):
        return [(prefix, f"{report:.4g}")]
    if isinstance(report, list) and len(report) > 8:
        return [(prefix, f"[{len(report)} values]")]
    return [(prefix, json.dumps(report) if not isinstance(report, str) else report)]


def to_markdown(title: str, sections: dict[str, Any], timings: list[dict[str, Any]],
                total_seconds: float | None, base: Path) -> str:
    def img(p: Path) -> str:
        return f"![{p.stem}]({Path(os.path.relpath(p, base)).as_posix()})"

    out = [f"# {title}", "", "## Data", ""] + ([img(p) for p in sections["data"]] or ["(none found)"]) + [""]
    for run in sections["runs"]:
        out += [f"## Run {run['name']}", ""]
        if not run["exists"]:
            out += ["(no run folder)", ""]
        out += ["### Samples per resolution", ""] + [img(p) for p in run["samples"]] + [""]
        out += ["### Losses", ""] + [img(p) for p in run["plots"]] + [""]
        out += ["### Samples, truncation, mixing, interpolation, noise (03)", ""] + [img(p) for p in run["figures"]] + [""]
    out += ["## Embeddings", ""] + ([img(p) for p in sections["embeddings"]] or ["(none found)"]) + [""]
    out += ["## Metrics", ""]
    if not sections["metrics"]:
        out += ["(no eval.json found)", ""]
    for path, rows in sections["metrics"]:
        out += [f"From `{os.path.relpath(path, base)}`:", "", "| metric | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in rows] + [""]
    out += ["## Timings", "", "| notebook | status | time |", "|---|---|---|"]
    out += [f"| {t['label']} | {t['status']} | {_fmt(t['seconds'])} |" for t in timings]
    if total_seconds is not None:
        out += [f"| total | | {_fmt(total_seconds)} |"]
    return "\n".join(out) + "\n"


def to_html(title: str, sections: dict[str, Any], timings: list[dict[str, Any]],
            total_seconds: float | None) -> str:
    esc = html.escape

    def figures(paths: list[Path]) -> str:
        if not paths:
            return "<p class=none>(none found)</p>"
        return "".join(f"<figure><img src='{_data_uri(p)}' alt='{esc(p.stem)}'>"
                       f"<figcaption>{esc(p.name)}</figcaption></figure>" for p in paths)

    def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
        cells = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>{cells}</table>"

    body = [f"<h1>{esc(title)}</h1>", "<h2>Data</h2>", figures(sections["data"])]
    for run in sections["runs"]:
        body += [f"<h2>Run {esc(run['name'])}</h2>", "<h3>Samples per resolution</h3>", figures(run["samples"]),
                 "<h3>Losses</h3>", figures(run["plots"]),
                 "<h3>Samples, truncation, mixing, interpolation, noise (03)</h3>", figures(run["figures"])]
    body += ["<h2>Embeddings</h2>", figures(sections["embeddings"]), "<h2>Metrics</h2>"]
    if not sections["metrics"]:
        body.append("<p class=none>(no eval.json found)</p>")
    for path, rows in sections["metrics"]:
        body += [f"<p>From <code>{esc(str(path))}</code></p>", table(("metric", "value"), rows)]
    rows = [(t["label"], t["status"], _fmt(t["seconds"])) for t in timings]
    if total_seconds is not None:
        rows.append(("total", "", _fmt(total_seconds)))
    body += ["<h2>Timings</h2>", table(("notebook", "status", "time"), rows)]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:.5em}"
             "img{max-width:520px;image-rendering:pixelated}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.none{color:#888}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _distinct_reports(paths: list[Path]) -> list[tuple[Path, list[tuple[str, str]]]]:
    """(path, rows) per eval.json, once per distinct content (evaluate writes one copy per run)."""
    seen, result = set(), []
    for p in paths:
        rows = metric_rows(_read_json(p))
        key = tuple(r for r in rows if r[0] != "written_to")
        if key not in seen:
            seen.add(key)
            result.append((p, rows))
    return result


def _pngs(folder: Path, recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        return []
    found = folder.rglob("*.png") if recursive else folder.glob("*.png")
    return sorted((p for p in found if "generated_images" not in p.parts), key=_natural_key)


def _natural_key(path: Path) -> list:
    """8px before 16px: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"error": f"could not read {path}: {e}"}


def _fmt(seconds: float | None) -> str:
    from brainlib.pipeline import format_seconds
    return format_seconds(seconds)
