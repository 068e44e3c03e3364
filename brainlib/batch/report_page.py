"""The batch report's content, assembled from the files a batch wrote: a list of blocks
(headings, paragraphs, tables, figures, code, links) that `render` turns into HTML and
Markdown alike.

The first screen answers, per class, "how close to real are these images?": the headline
figures beside their real-vs-real floors with a verdict (`brainlib.eval.verdicts`), and real
and generated slices side by side. Below come the per-step grids, loss curves, embeddings,
memorisation, data, every metric, the settings each run used, timings, the commands that
reproduce the batch, and links. Whatever is missing (no evaluation, a failed notebook, one
class only) is said in words where it would have been.
"""
from __future__ import annotations

import io
import json
import math
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from brainlib.atomic import atomic_write_bytes
from brainlib.config import PRESETS, RunConfig, project_root
from brainlib.eval.report import metric_rows
from brainlib.eval.verdicts import (
    BOTH_CLASSES_HEADLINE,
    PER_CLASS_HEADLINE,
    RULES,
    TEXTURE_HEADLINE,
    VERDICTS,
    headline_rows,
)
from brainlib.rundir import DEFAULT_OUT_ROOT, BatchDir, RunDir

MIN_GRID_SIDE = 256  # px: anatomy needs at least this much to be judged
FILES_DIR = "summary_files"  # the figures' folder beside summary.md
IDENTITY_SETTINGS = ("run", "out_root", "data_root", "class_name")  # what a batch sets for every run


@dataclass
class Figure:
    name: str        # file name under summary_files/
    caption: str
    png: bytes
    width: int
    height: int
    grid: bool = False  # pixel grids: shown without smoothing


@dataclass
class Block:
    kind: str  # h1 h2 h3 p note alert table figures code links details-start/-end first-start/-end column-break
    text: str = ""
    head: tuple = ()
    rows: list = field(default_factory=list)
    row_attrs: list = field(default_factory=list)   # per table row: (class, {data-...}) for the HTML
    figures: list = field(default_factory=list)
    links: list = field(default_factory=list)       # (text, relative href)


def format_seconds(seconds: float | None) -> str:
    """7m58s, 1h02m, 3.4s."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def page_blocks(batch_dir: Path, run_dirs: list[Path], timings: list[dict], total_seconds: float | None,
                batch: dict, failure: str | None) -> list[Block]:
    """The whole page, top to bottom; the first block is the title. Copies the runs' eval.json
    into batch_dir (or removes a stale copy) so that the page's link to it works."""
    runs = [r for r in run_dirs if r.is_dir()]
    configs = {r.name: _read_json(RunDir(r).config) for r in runs}
    report, eval_path = _evaluation(batch_dir, run_dirs)  # copies eval.json beside the page
    classes = _classes(batch, configs, report)
    name = batch.get("name") or batch_dir.name
    preset = batch.get("preset", "?")
    blocks = [Block("h1", f"Batch {name}: {' and '.join(classes) or 'no classes'}, preset {preset}")]
    blocks.append(Block("p", _lede(run_dirs, configs, report, batch, total_seconds)))
    if failure:
        blocks.append(Block("alert", f"The batch stopped: {failure}"))
    blocks += [Block("first-start"), *headline_blocks(report, classes, run_dirs, failure),
               Block("column-break"), *real_vs_generated_blocks(run_dirs, classes), Block("first-end")]
    for r in run_dirs:
        blocks += run_blocks(r)
    blocks += figure_section("Embedding of encoder features", [
        p for r in runs for p in sorted(RunDir(r).eval_figures().glob("*.png")) if p.stem in ("umap", "tsne")], "")
    blocks += figure_section("Memorisation: the closest generated and training pairs", [
        p for r in runs for p in sorted(RunDir(r).eval_figures().glob("memorisation_*.png"))], "", max_width=240)
    blocks += figure_section("The data (01_data)", sorted(BatchDir(batch_dir).plots.glob("*.png")), "batch_")
    if report:
        blocks += all_metrics_blocks(report)
    blocks += settings_blocks(run_dirs, configs, preset)
    blocks += timing_blocks(timings, total_seconds, report)
    blocks += reproduce_blocks(batch, run_dirs, configs, report, preset)
    blocks += link_blocks(batch_dir, eval_path)
    return blocks


def headline_blocks(report: dict | None, classes: list[str], run_dirs: list[Path], failure: str | None) -> list[Block]:
    out = [Block("h2", "How close to real are these images?")]
    if report is None:
        runs = " ".join(r.name for r in run_dirs)
        why = ("the evaluation (04_umap) did not finish" if failure else "no run of this batch holds an eval.json")
        need = " It needs an AD run and an NC run, or one conditional run." if len(classes) < 2 else ""
        out.append(Block("note", f"Not measured: {why}.{need} Evaluate with "
                                 f"`brainlib evaluate --model {runs} --n 1000`, then rebuild this page."))
        return out
    rows = headline_rows(report, classes)
    out.append(Block("table", head=("class", "figure", "generated", "real-vs-real floor", "ratio", "verdict"),
                     rows=[(r["cls"], r["label"], _num(_get(r["pair"], "generated")), _num(_get(r["pair"], "floor")),
                            _ratio(r["pair"]), _mark(r["verdict"])) for r in rows],
                     row_attrs=[(f"v-{r['verdict']}", {"metric": r["metric"], "class": r["cls"],
                                                        "title": r["meaning"]}) for r in rows]))
    sizes = next(iter(report.get("per_class", {}).values()), {}).get("sizes", {})
    compared = sizes.get("compared")
    text = (f"Floor: the same figure for real held-out slices against the real training slices, at the same "
            f"sample size ({compared} images per class compared); a generator cannot beat it. Verdict rules: {RULES}.")
    if report.get("floor", {}).get("optimistic"):
        text += f" The floor is optimistic: {report['floor'].get('note', '')}."
    if compared is not None and compared < 50:
        text += f" With {compared} images per class, every figure here is very noisy."
    out.append(Block("note", text))
    out.append(Block("details-start", "What each figure means"))
    out.append(Block("table", head=("figure", "what it measures"),
                     rows=[(h.label, h.meaning)
                           for h in PER_CLASS_HEADLINE + TEXTURE_HEADLINE + BOTH_CLASSES_HEADLINE]))
    out.append(Block("details-end"))
    return out


def real_vs_generated_blocks(run_dirs: list[Path], classes: list[str]) -> list[Block]:
    out = [Block("h2", "Real and generated slices")]
    for c in classes:
        real = _find(run_dirs, lambda run, c=c: run.eval_figure("real", c))
        generated = (_find(run_dirs, lambda run, c=c: run.eval_figure("generated", c))
                     or _find(run_dirs, lambda run, c=c: run.notebook_sample(f"grid_{c}_psi1.0")))
        figures = [_figure(p, f"{c}_{kind}.png", f"{c}: {kind}", grid=True)
                   for kind, p in (("real", real), ("generated", generated)) if p is not None]
        out.append(Block("h3", c))
        if real is None:
            out.append(Block("note", f"No real {c} grid: the evaluation writes it (eval/real_{c}.png)."))
        out.append(Block("figures", figures=figures) if figures else Block("note", f"No {c} images found."))
    return out


def run_blocks(run_dir: Path) -> list[Block]:
    out = [Block("h2", f"Run {run_dir.name}: training")]
    if not run_dir.is_dir():
        return out + [Block("note", f"No run folder {run_dir.name}: its training did not start.")]
    run = RunDir(run_dir)
    steps = run.step_grids()
    out.append(Block("h3", "Samples after each resolution step (fixed latents, EMA generator)"))
    out.append(Block("figures", figures=[_figure(g.path, f"{run_dir.name}_{g.path.name}",
                                                 f"step {g.step:02d}: {g.res}px", grid=True) for g in steps])
               if steps else Block("note", "No step finished yet."))
    out.append(Block("h3", "Losses"))
    plots = sorted(run.plots.glob("loss_*.png"))
    out.append(Block("figures", figures=[_figure(p, f"{run_dir.name}_{p.name}", p.stem.replace("_", " "))
                                         for p in plots]) if plots else Block("note", "No loss plots."))
    if run.texture_plot.is_file():
        out.append(Block("h3", "Texture during training (the texture probe; the best snapshot marked)"))
        out.append(Block("figures", figures=[_figure(run.texture_plot, f"{run_dir.name}_{run.texture_plot.name}",
                                                     "train-normalised SWD and power spectrum per band")]))
    extra = [p for p in run.notebook_samples() if not p.stem.startswith("03_grid_")]
    if extra:
        out.append(Block("h3", "Truncation, style mixing, interpolation, noise (03_samples)"))
        out.append(Block("figures", figures=[_figure(p, f"{run_dir.name}_{p.name}", p.stem[3:].replace("_", " "),
                                                     grid=True, min_side=96) for p in extra]))
    return out


def figure_section(title: str, paths: list[Path], prefix: str, max_width: int | None = None) -> list[Block]:
    if not paths:
        return [Block("h2", title), Block("note", "Not made in this batch.")]
    figures = [_figure(p, f"{prefix or p.parent.parent.name + '_'}{p.name}", p.stem.replace("_", " "),
                       max_width=max_width) for p in paths]
    return [Block("h2", title), Block("figures", figures=figures)]


def all_metrics_blocks(report: dict) -> list[Block]:
    try:
        rows = metric_rows(report)
    except (KeyError, TypeError, AttributeError):
        return [Block("h2", "Every metric"), Block("note", "eval.json has an unexpected layout; see the file.")]
    enc = report.get("encoder", {})
    return [Block("h2", "Every metric"), Block("details-start", f"All {len(rows)} figures beside their floors"),
            Block("table", head=("figure", "class", "generated", "floor", "ratio", "better"),
                  rows=[(r["metric"], r["class"], _num(r["generated"]), _num(r["floor"]), _num(r["ratio"]), r["better"])
                        for r in rows]),
            Block("note", f"Encoder: {enc.get('name', '?')} (held-out AD/NC accuracy "
                          f"{enc.get('heldout_accuracy', '?')}). "
                          f"Inception FID: {report.get('inception_note') or 'not computed'}."),
            Block("details-end")]


def settings_blocks(run_dirs: list[Path], configs: dict, preset: str) -> list[Block]:
    out = [Block("h2", "Settings")]
    for r in run_dirs:
        cfg = configs.get(r.name)
        if not cfg:
            out.append(Block("note", f"{r.name}: no config.json."))
            continue
        diff = settings_differing_from_preset(cfg, preset)
        if diff is None:
            out.append(Block("p", f"{r.name}: preset {preset!r} is unknown here; all settings below."))
        elif not diff:
            data = cfg.get("data_root") or "the embedded dataset"
            out.append(Block("p", f"{r.name}: the {preset} preset as it is, on {data}."))
        else:
            out.append(Block("p", f"{r.name}: the {preset} preset, with these settings changed:"))
            out.append(Block("table", head=("setting", f"{preset} preset", "this run"),
                             rows=[(k, _setting(a), _setting(b)) for k, (a, b) in diff.items()]))
        out.append(Block("details-start", f"Every setting of {r.name} (config.json)"))
        out.append(Block("table", head=("setting", "value"), rows=[(k, _setting(v)) for k, v in cfg.items()]))
        out.append(Block("details-end"))
    return out


def settings_differing_from_preset(cfg: dict, preset: str) -> dict[str, tuple[Any, Any]] | None:
    """{setting: (preset value, run value)} for what a run changed; None for an unknown preset."""
    if preset not in PRESETS:
        return None
    base = json.loads(json.dumps(RunConfig.from_dict({**RunConfig().to_dict(), **PRESETS[preset]}).to_dict()))
    return {k: (base.get(k), v) for k, v in cfg.items() if k not in IDENTITY_SETTINGS and base.get(k) != v}


def timing_blocks(timings: list[dict], total_seconds: float | None, report: dict | None) -> list[Block]:
    rows = [(t["label"], t["status"], format_seconds(t.get("seconds"))) for t in timings]
    if total_seconds is not None:
        rows.append(("whole batch", "", format_seconds(total_seconds)))
    out = [Block("h2", "Timings"), Block("table", head=("notebook", "status", "time"), rows=rows)]
    if report and report.get("seconds"):
        parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in report["seconds"].items())
        out.append(Block("note", f"Inside the evaluation: {parts}."))
    return out


def reproduce_blocks(batch: dict, run_dirs: list[Path], configs: dict, report: dict | None, preset: str) -> list[Block]:
    data = batch.get("data_root")
    out_root = batch.get("out_root")
    common = (f" --data {shlex.quote(str(data))}" if data else "")
    if out_root and Path(out_root).resolve() != (project_root() / DEFAULT_OUT_ROOT).resolve():
        common += f" --out-root {shlex.quote(str(out_root))}"
    classes = "--conditional" if batch.get("conditional") else f"--classes {' '.join(batch.get('classes') or [])}"
    lines = ["# the whole batch: 01_data, 02 per class, 03_samples, 04_umap, this page",
             f"brainlib run --preset {preset} {classes} --name {batch.get('name', '?')}{common}",
             "# or its steps, one run at a time"]
    for r in run_dirs:
        cfg = configs.get(r.name) or {}
        diff = settings_differing_from_preset(cfg, preset) or {}
        sets = "".join(f" --set {shlex.quote(f'{k}={_setting(v)}')}" for k, (_, v) in diff.items())
        lines.append(f"brainlib train --preset {preset} --class {cfg.get('class_name', '?')} --run {r.name}"
                     f"{common}{sets}")
    if report:
        n = report.get("n_per_class", 1000)
        lines.append(f"brainlib evaluate --model {' '.join(report.get('runs', [r.name for r in run_dirs]))} --n {n}"
                     + (f" --out-root {shlex.quote(str(out_root))}" if "--out-root" in common else ""))
    return [Block("h2", "Reproduce this batch"), Block("code", "\n".join(lines)),
            Block("note", "Run from the workbook folder with its .venv activated (or prefix .venv/bin/). "
                          "The same seeds and checkpoints give the same images.")]


def link_blocks(batch_dir: Path, eval_path: Path | None) -> list[Block]:
    batch = BatchDir(batch_dir)
    notebooks = sorted(batch.notebooks.glob("*.ipynb"))
    links = [(f"executed notebook {p.stem}", p.relative_to(batch_dir).as_posix()) for p in notebooks]
    if eval_path is not None:
        links.append(("eval.json (every figure, as evaluate wrote it)", batch.eval_report().name))
    links.append(("summary.md (this page as Markdown)", "summary.md"))
    if batch.timings.is_file():
        links.append(("timings.json (each notebook's status and time)", batch.timings.name))
    return [Block("h2", "Files"), Block("links", links=links)]


def _figure(path: Path, name: str, caption: str, *, grid: bool = False, min_side: int = MIN_GRID_SIDE,
            max_width: int | None = None) -> Figure:
    """A PNG for the page; sample grids are enlarged by a whole factor, nearest neighbour, to
    `min_side` px at least, so an 8 px step shows as pixels, not as a blur or a dot.
    `max_width` shrinks the displayed size only (the file keeps every pixel)."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        factor = max(1, math.ceil(min_side / max(1, min(width, height)))) if grid else 1
        if factor > 1:
            buf = io.BytesIO()
            im.resize((width * factor, height * factor), Image.NEAREST).save(buf, format="png")
            data, width, height = buf.getvalue(), width * factor, height * factor
    if max_width and width > max_width:
        width, height = max_width, round(height * max_width / width)
    return Figure(re.sub(r"[^A-Za-z0-9_.+-]", "_", name), caption, data, width, height, grid)


# ----------------------------------------------------------------------
# Reading what the batch wrote

def _evaluation(batch_dir: Path, run_dirs: list[Path]) -> tuple[dict | None, Path | None]:
    """The batch's eval.json (evaluate writes identical copies into each run), copied into
    the batch folder so that the page's link works when the folder travels alone."""
    for r in run_dirs:
        path = RunDir(r).eval_report()
        report = _read_json(path)
        if isinstance(report, dict) and isinstance(report.get("per_class"), dict):
            atomic_write_bytes(BatchDir(batch_dir).eval_report(), path.read_bytes())
            report["_modified"] = path.stat().st_mtime
            return report, path
    stale = BatchDir(batch_dir).eval_report()
    if stale.is_file():
        stale.unlink()  # from an earlier evaluation of runs this page no longer shows
    return None, None


def _classes(batch: dict, configs: dict, report: dict | None) -> list[str]:
    if report and report.get("per_class"):
        return [c for c in ("AD", "NC") if c in report["per_class"]]
    wanted = [c for c in ("AD", "NC") if c in (batch.get("classes") or [])]
    if wanted:
        return wanted
    if batch.get("conditional"):
        return ["AD", "NC"]
    found = {c for cfg in configs.values() if cfg for c in
             (("AD", "NC") if cfg.get("class_name") == "both" else (cfg.get("class_name"),))}
    return [c for c in ("AD", "NC") if c in found]


def _lede(run_dirs: list[Path], configs: dict, report: dict | None, batch: dict, total_seconds: float | None) -> str:
    cfg = next((c for c in configs.values() if c), {})
    kind = "one conditional model" if batch.get("conditional") or cfg.get("class_name") == "both" else \
        f"{len(run_dirs)} model{'s' if len(run_dirs) != 1 else ''}, one per class"
    text = (f"{kind} ({', '.join(r.name for r in run_dirs)}), {cfg.get('image_size', '?')} px, trained on "
            f"{cfg.get('data_root') or 'the embedded dataset'}")
    if total_seconds is not None:
        text += f"; the batch took {format_seconds(total_seconds)}"
    if report:
        sizes = next(iter(report["per_class"].values()), {}).get("sizes", {})
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["_modified"]))
        text += (f". Evaluated {when}: {report.get('n_per_class', '?')} generated images per class against "
                 f"{sizes.get('train', '?')} real training and {sizes.get('heldout', '?')} held-out slices")
    return text + "."


def _find(run_dirs: list[Path], where: Callable[[RunDir], Path]) -> Path | None:
    """The first run's file `where` names that exists."""
    return next((p for p in (where(RunDir(r)) for r in run_dirs) if p.is_file()), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _get(pair: dict | None, key: str):
    return None if not pair else pair.get(key)


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _ratio(pair: dict | None) -> str:
    r = _get(pair, "ratio")
    return "–" if r is None else f"{r:.3g}×"


def _mark(v: str) -> str:
    return {"near": "● ", "off": "▲ ", "far": "✖ ", "none": "· "}[v] + VERDICTS[v]


def _setting(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)

