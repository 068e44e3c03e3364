"""The batch report's content, assembled from the files a batch wrote: a list of blocks
(headings, paragraphs, tables, figures, code, links) that `render` turns into HTML and
Markdown alike.

The first screen answers, per class, "how close to real are these images?": the headline
figures beside their real-vs-real floors with a verdict (`brainlib.eval.verdicts`), and real
and generated slices side by side. Below come the per-step grids, loss curves, embeddings,
memorisation, data, every metric, the settings each run used, timings, the commands that
reproduce the batch, and links. Whatever is missing (no evaluation, a failed notebook, one
class only) is said in words where it would have been.

A batch of several presets (a StyleGAN and a diffusion model, say) gets one headline table per
preset, each beside the same real-vs-real floors, and one figure with the real slices and each
preset's slices side by side, a row per class.
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

from PIL import Image, ImageDraw, ImageFont

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
SIDE_BY_SIDE = "real_and_generated_side_by_side.png"  # a batch of several presets: real | each preset
FLOOR_TOLERANCE = 1e-5  # relative: floors measured on the same real slices agree to the float order


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


@dataclass
class PresetRuns:
    """One preset's runs in a batch, and their evaluation (None where there is none)."""
    preset: str
    run_dirs: list[Path]
    family: str = ""               # StyleGAN, StyleGAN2 or diffusion (from config.json)
    report: dict | None = None
    eval_copy: Path | None = None  # the report's copy beside the page

    @property
    def title(self) -> str:
        return f"{self.preset} ({self.family})" if self.family else self.preset


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
    """The whole page, top to bottom; the first block is the title. Copies each preset's eval.json
    into batch_dir (or removes a stale copy) so that the page's link to it works."""
    runs = [r for r in run_dirs if r.is_dir()]
    configs = {r.name: _read_json(RunDir(r).config) for r in runs}
    groups = preset_groups(batch_dir, run_dirs, batch, configs)  # copies eval.json beside the page
    reports = [g.report for g in groups if g.report]
    classes = _classes(batch, configs, reports)
    name = batch.get("name") or batch_dir.name
    presets = " and ".join(g.preset for g in groups)
    blocks = [Block("h1", f"Batch {name}: {' and '.join(classes) or 'no classes'}, "
                          f"preset{'s' if len(groups) > 1 else ''} {presets}")]
    blocks.append(Block("p", _lede(run_dirs, configs, reports, batch, total_seconds)))
    if failure:
        blocks.append(Block("alert", f"The batch stopped: {failure}"))
    blocks += [Block("first-start"), *headline_blocks(groups, classes, failure),
               Block("column-break"), *real_vs_generated_blocks(groups, classes), Block("first-end")]
    for r in run_dirs:
        blocks += run_blocks(r)
    blocks += figure_section("Embedding of encoder features", [
        p for r in runs for p in sorted(RunDir(r).eval_figures().glob("*.png")) if p.stem in ("umap", "tsne")], "")
    blocks += figure_section("Memorisation: the closest generated and training pairs", [
        p for r in runs for p in sorted(RunDir(r).eval_figures().glob("memorisation_*.png"))], "", max_width=240)
    blocks += figure_section("The data (01_data)", sorted(BatchDir(batch_dir).plots.glob("*.png")), "batch_")
    if reports:
        blocks.append(Block("h2", "Every metric"))
        for g in groups:
            if g.report:
                blocks += all_metrics_blocks(g.report, g.preset if len(groups) > 1 else "")
    blocks += settings_blocks(groups, configs)
    blocks += timing_blocks(timings, total_seconds, groups)
    blocks += reproduce_blocks(batch, groups, configs)
    blocks += link_blocks(batch_dir, groups)
    return blocks


def preset_groups(batch_dir: Path, run_dirs: list[Path], batch: dict, configs: dict) -> list[PresetRuns]:
    """The batch's runs by preset (batch["runs"]: {preset: run names}; else all runs under
    batch["preset"]), each with its evaluation, copied beside the page."""
    listed = batch.get("runs") or {batch.get("preset", "?"): [r.name for r in run_dirs]}
    folder = BatchDir(batch_dir)
    groups = []
    for preset, names in listed.items():
        dirs = [r for r in run_dirs if r.name in names]
        copy = folder.eval_report() if len(listed) == 1 else folder.preset_eval_report(preset)
        report, path = _evaluation(dirs, copy)
        family = next((family_label(configs[r.name]) for r in dirs if configs.get(r.name)), "")
        groups.append(PresetRuns(preset, dirs, family, report, copy if path else None))
    return groups


def family_label(cfg: dict) -> str:
    """The model family of a run's config.json, as the page names it."""
    if cfg.get("family") == "diffusion":
        return "diffusion"
    return "StyleGAN2" if cfg.get("arch") == "stylegan2" else "StyleGAN"


def headline_blocks(groups: list[PresetRuns], classes: list[str], failure: str | None) -> list[Block]:
    out = [Block("h2", "How close to real are these images?")]
    for g in groups:
        if len(groups) > 1:
            out.append(Block("h3", g.title))
        out += headline_table_blocks(g.report, classes, g.run_dirs, failure)
    reports = [g.report for g in groups if g.report]
    if not reports:
        return out
    out.append(Block("note", floor_note(reports, classes)))
    out.append(Block("details-start", "What each figure means"))
    out.append(Block("table", head=("figure", "what it measures"),
                     rows=[(h.label, h.meaning)
                           for h in PER_CLASS_HEADLINE + TEXTURE_HEADLINE + BOTH_CLASSES_HEADLINE]))
    out.append(Block("details-end"))
    return out


def headline_table_blocks(report: dict | None, classes: list[str], run_dirs: list[Path],
                          failure: str | None) -> list[Block]:
    """One evaluation's headline figures beside their floors, or why there are none."""
    if report is None:
        runs = " ".join(r.name for r in run_dirs)
        why = ("the evaluation (04_umap) did not finish" if failure else "no run of this batch holds an eval.json")
        need = " It needs an AD run and an NC run, or one conditional run." if len(classes) < 2 else ""
        return [Block("note", f"Not measured: {why}.{need} Evaluate with "
                              f"`brainlib evaluate --model {runs} --n 1000`, then rebuild this page.")]
    rows = headline_rows(report, classes)
    out = [Block("table", head=("class", "figure", "generated", "real-vs-real floor", "ratio", "verdict"),
                 rows=[(r["cls"], r["label"], _num(_get(r["pair"], "generated")), _num(_get(r["pair"], "floor")),
                        _ratio(r["pair"]), _mark(r["verdict"])) for r in rows],
                 row_attrs=[(f"v-{r['verdict']}", {"metric": r["metric"], "class": r["cls"],
                                                    "title": r["meaning"]}) for r in rows])]
    unjudged = [f"{r['label']} ({r['cls']}): {r['why']}" for r in rows if r["why"]]
    if unjudged:
        out.append(Block("note", "The floor cannot judge " + "; ".join(unjudged) + "."))
    return out


def floor_note(reports: list[dict], classes: list[str]) -> str:
    """What the floor is, and with several evaluations whether their floors agree."""
    compared = {c: m.get("sizes", {}).get("compared") for c, m in reports[0].get("per_class", {}).items()}
    text = (f"Floor: the same figure for real held-out slices against the real training slices, at the same "
            f"sample size ({compared_images(compared)} compared); a generator cannot beat it. Verdict rules: {RULES}.")
    if len(reports) > 1:
        text += (" The floors are the same in every table: each preset was measured against the same real slices."
                 if same_floors(reports, classes) else
                 " The floors differ between the tables (other real slices, sample sizes or evaluation settings): "
                 "read each preset against its own.")
    optimistic = next((r["floor"] for r in reports if r.get("floor", {}).get("optimistic")), None)
    if optimistic:
        text += f" The floor is optimistic: {optimistic.get('note', '')}."
    fewest = min((n for n in compared.values() if n is not None), default=None)
    if fewest is not None and fewest < 50:
        text += f" With {fewest} images of a class, every figure of that class is very noisy."
    return text


def same_floors(reports: list[dict], classes: list[str]) -> bool:
    """Whether every evaluation's headline floors agree (to FLOOR_TOLERANCE)."""
    floors = [{(r["metric"], r["cls"]): _get(r["pair"], "floor") for r in headline_rows(report, classes)}
              for report in reports]
    return all(other.keys() == floors[0].keys() and all(
        (a is None) == (b is None) and (a is None or math.isclose(a, b, rel_tol=FLOOR_TOLERANCE, abs_tol=1e-12))
        for a, b in ((floors[0][k], other[k]) for k in other)) for other in floors[1:])


def real_vs_generated_blocks(groups: list[PresetRuns], classes: list[str]) -> list[Block]:
    out = [Block("h2", "Real and generated slices")]
    run_dirs = [r for g in groups for r in g.run_dirs]
    real = {c: _find(run_dirs, lambda run, c=c: run.eval_figure("real", c)) for c in classes}
    if len(groups) > 1:
        columns = [("real", [real[c] for c in classes])] + [
            (g.title, [_generated_grid(g.run_dirs, c) for c in classes]) for g in groups]
        if not any(p for _, paths in columns for p in paths):
            return out + [Block("note", "No real or generated grids found: the evaluation writes them.")]
        caption = f"{', '.join(classes)}: {' | '.join(title for title, _ in columns)}"
        out.append(Block("figures", figures=[side_by_side_figure(columns, classes, SIDE_BY_SIDE, caption)]))
        out += [Block("note", f"No real {c} grid: the evaluation writes it (eval/real_{c}.png).")
                for c in classes if real[c] is None]
        return out
    for c in classes:
        generated = _generated_grid(run_dirs, c)
        figures = [_figure(p, f"{c}_{kind}.png", f"{c}: {kind}", grid=True)
                   for kind, p in (("real", real[c]), ("generated", generated)) if p is not None]
        out.append(Block("h3", c))
        if real[c] is None:
            out.append(Block("note", f"No real {c} grid: the evaluation writes it (eval/real_{c}.png)."))
        out.append(Block("figures", figures=figures) if figures else Block("note", f"No {c} images found."))
    return out


def side_by_side_figure(columns: list[tuple[str, list[Path | None]]], rows: list[str], name: str,
                        caption: str) -> Figure:
    """One picture of sample grids: a row per entry of `rows`, a column per (title, grids), each
    grid enlarged by nearest neighbour to one width (MIN_GRID_SIDE px at least, a whole factor
    where the grids are one size); a missing grid leaves its cell grey."""
    grids = {}
    for j, (_, paths) in enumerate(columns):
        for i, path in enumerate(paths):
            if path is not None:
                with Image.open(path) as im:
                    grids[i, j] = im.convert("L")
    side = max((g.width * math.ceil(MIN_GRID_SIDE / g.width) for g in grids.values()), default=MIN_GRID_SIDE)
    grids = {k: g.resize((side, round(g.height * side / g.width)), Image.NEAREST) for k, g in grids.items()}
    row_height = max((g.height for g in grids.values()), default=side)
    font = ImageFont.load_default(size=18)
    gap, left, top = 8, 56, 30
    picture = Image.new("L", (left + len(columns) * (side + gap), top + len(rows) * (row_height + gap)), 255)
    draw = ImageDraw.Draw(picture)
    for j, (title, _) in enumerate(columns):
        draw.text((left + j * (side + gap) + side // 2, top // 2), title, fill=0, font=font, anchor="mm")
    for i, row in enumerate(rows):
        draw.text((left // 2, top + i * (row_height + gap) + row_height // 2), row, fill=0, font=font, anchor="mm")
    for i in range(len(rows)):
        for j in range(len(columns)):
            corner = (left + j * (side + gap), top + i * (row_height + gap))
            if (i, j) in grids:
                picture.paste(grids[i, j], corner)
            else:
                draw.rectangle((*corner, corner[0] + side - 1, corner[1] + row_height - 1), fill=230)
    buf = io.BytesIO()
    picture.save(buf, format="png")
    return Figure(name, caption, buf.getvalue(), picture.width, picture.height, grid=True)


def run_blocks(run_dir: Path) -> list[Block]:
    out = [Block("h2", f"Run {run_dir.name}: training")]
    if not run_dir.is_dir():
        return out + [Block("note", f"No run folder {run_dir.name}: its training did not start.")]
    run = RunDir(run_dir)
    steps, checkpoints = run.step_grids(), run.images_grids()
    if checkpoints and not steps:  # the diffusion family: a grid at each checkpoint
        out.append(Block("h3", "Samples at each checkpoint (fixed seeds, EMA denoiser)"))
        out.append(Block("figures", figures=[
            _figure(g.path, f"{run_dir.name}_{g.path.name}",
                    f"{g.images_seen:,} images{' (final)' if g.finished else ''}: {g.res}px", grid=True)
            for g in checkpoints]))
    else:
        out.append(Block("h3", "Samples after each resolution step (fixed latents, EMA generator)"))
        figures = [_figure(g.path, f"{run_dir.name}_{g.path.name}", f"step {g.step:02d}: {g.res}px", grid=True)
                   for g in steps]
        figures += [_figure(g.path, f"{run_dir.name}_{g.path.name}",
                            f"step {g.step:02d} trained longer: {g.res}px, {g.images_seen:,} images", grid=True)
                    for g in run.extended_grids()]
        out.append(Block("figures", figures=figures) if steps else Block("note", "No step finished yet."))
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


def all_metrics_blocks(report: dict, preset: str = "") -> list[Block]:
    """Every figure of one evaluation beside its floor, folded (the caller adds the heading)."""
    of = f"{preset}: " if preset else ""
    try:
        rows = metric_rows(report)
    except (KeyError, TypeError, AttributeError):
        return [Block("note", f"{of}eval.json has an unexpected layout; see the file.")]
    enc = report.get("encoder", {})
    return [Block("details-start", f"{of}all {len(rows)} figures beside their floors" if of else
                  f"All {len(rows)} figures beside their floors"),
            Block("table", head=("figure", "class", "generated", "floor", "ratio", "better"),
                  rows=[(r["metric"], r["class"], _num(r["generated"]), _num(r["floor"]), _num(r["ratio"]), r["better"])
                        for r in rows]),
            Block("note", f"Encoder: {enc.get('name', '?')} (held-out AD/NC accuracy "
                          f"{enc.get('heldout_accuracy', '?')}). "
                          f"Inception FID: {report.get('inception_note') or 'not computed'}."),
            Block("details-end")]


def settings_blocks(groups: list[PresetRuns], configs: dict) -> list[Block]:
    out = [Block("h2", "Settings")]
    for g in groups:
        preset = g.preset
        for r in g.run_dirs:
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


def timing_blocks(timings: list[dict], total_seconds: float | None, groups: list[PresetRuns]) -> list[Block]:
    rows = [(t["label"], t["status"], format_seconds(t.get("seconds"))) for t in timings]
    if total_seconds is not None:
        rows.append(("whole batch", "", format_seconds(total_seconds)))
    out = [Block("h2", "Timings"), Block("table", head=("notebook", "status", "time"), rows=rows)]
    for g in groups:
        if g.report and g.report.get("seconds"):
            parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in g.report["seconds"].items())
            of = f" of {g.preset}" if len(groups) > 1 else ""
            out.append(Block("note", f"Inside the evaluation{of}: {parts}."))
    return out


def reproduce_blocks(batch: dict, groups: list[PresetRuns], configs: dict) -> list[Block]:
    data = batch.get("data_root")
    out_root = batch.get("out_root")
    common = (f" --data {shlex.quote(str(data))}" if data else "")
    if out_root and Path(out_root).resolve() != (project_root() / DEFAULT_OUT_ROOT).resolve():
        common += f" --out-root {shlex.quote(str(out_root))}"
    classes = "--conditional" if batch.get("conditional") else f"--classes {' '.join(batch.get('classes') or [])}"
    presets = " ".join(f"--preset {g.preset}" for g in groups)
    several = len(groups) > 1
    # several presets: --name puts the name before each run's, so it is repeated only where it was given
    name = f" --name {batch.get('name', '?')}" if not several or batch.get("name_given", True) else ""
    lines = [f"# the whole batch: 01_data, 02 per {'preset and ' if several else ''}class, "
             f"03_samples, 04_umap{' per preset' if several else ''}, this page",
             f"brainlib run {presets} {classes}{name}{common}",
             "# or its steps, one run at a time"]
    for g in groups:
        for r in g.run_dirs:
            cfg = configs.get(r.name) or {}
            diff = settings_differing_from_preset(cfg, g.preset) or {}
            sets = "".join(f" --set {shlex.quote(f'{k}={_setting(v)}')}" for k, (_, v) in diff.items())
            lines.append(f"brainlib train --preset {g.preset} --class {cfg.get('class_name', '?')} --run {r.name}"
                         f"{common}{sets}")
    for g in groups:
        if g.report:
            n = g.report.get("n_per_class", 1000)
            lines.append(f"brainlib evaluate --model {' '.join(g.report.get('runs', [r.name for r in g.run_dirs]))} "
                         f"--n {n}" + (f" --out-root {shlex.quote(str(out_root))}" if "--out-root" in common else ""))
    return [Block("h2", "Reproduce this batch"), Block("code", "\n".join(lines)),
            Block("note", "Run from the workbook folder with its .venv activated (or prefix .venv/bin/). "
                          "The same seeds and checkpoints give the same images.")]


def link_blocks(batch_dir: Path, groups: list[PresetRuns]) -> list[Block]:
    batch = BatchDir(batch_dir)
    notebooks = sorted(batch.notebooks.glob("*.ipynb"))
    links = [(f"executed notebook {p.stem}", p.relative_to(batch_dir).as_posix()) for p in notebooks]
    for g in groups:
        if g.eval_copy is not None:
            of = f"{g.preset}: " if len(groups) > 1 else ""
            links.append((f"{of}{g.eval_copy.name} (every figure, as evaluate wrote it)", g.eval_copy.name))
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

def _evaluation(run_dirs: list[Path], copy: Path) -> tuple[dict | None, Path | None]:
    """The runs' eval.json (evaluate writes identical copies into each run), copied to `copy`
    in the batch folder so that the page's link works when the folder travels alone."""
    for r in run_dirs:
        path = RunDir(r).eval_report()
        report = _read_json(path)
        if isinstance(report, dict) and isinstance(report.get("per_class"), dict):
            atomic_write_bytes(copy, path.read_bytes())
            report["_modified"] = path.stat().st_mtime
            return report, path
    if copy.is_file():
        copy.unlink()  # from an earlier evaluation of runs this page no longer shows
    return None, None


def _classes(batch: dict, configs: dict, reports: list[dict]) -> list[str]:
    evaluated = {c for report in reports for c in report.get("per_class") or {}}
    if evaluated:
        return [c for c in ("AD", "NC") if c in evaluated]
    wanted = [c for c in ("AD", "NC") if c in (batch.get("classes") or [])]
    if wanted:
        return wanted
    if batch.get("conditional"):
        return ["AD", "NC"]
    found = {c for cfg in configs.values() if cfg for c in
             (("AD", "NC") if cfg.get("class_name") == "both" else (cfg.get("class_name"),))}
    return [c for c in ("AD", "NC") if c in found]


def _lede(run_dirs: list[Path], configs: dict, reports: list[dict], batch: dict, total_seconds: float | None) -> str:
    cfg = next((c for c in configs.values() if c), {})
    several = len(batch.get("runs") or {}) > 1
    conditional = batch.get("conditional") or cfg.get("class_name") == "both"
    if several:
        kind = f"{len(run_dirs)} " + ("conditional models, one per preset" if conditional
                                      else "models, one per preset and class")
    else:
        kind = "one conditional model" if conditional else \
            f"{len(run_dirs)} model{'s' if len(run_dirs) != 1 else ''}, one per class"
    text = (f"{kind} ({', '.join(r.name for r in run_dirs)}), {cfg.get('image_size', '?')} px, trained on "
            f"{cfg.get('data_root') or 'the embedded dataset'}")
    if total_seconds is not None:
        text += f"; the batch took {format_seconds(total_seconds)}"
    if reports:
        report = reports[0]
        sizes = next(iter(report["per_class"].values()), {}).get("sizes", {})
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["_modified"]))
        text += (f". Evaluated {when}: {report.get('n_per_class', '?')} generated images per class against "
                 f"{sizes.get('train', '?')} real training and {sizes.get('heldout', '?')} held-out slices")
    return text + "."


def _find(run_dirs: list[Path], where: Callable[[RunDir], Path]) -> Path | None:
    """The first run's file `where` names that exists."""
    return next((p for p in (where(RunDir(r)) for r in run_dirs) if p.is_file()), None)


def _generated_grid(run_dirs: list[Path], c: str) -> Path | None:
    """The evaluation's grid of generated class-c slices, else 03_samples' untruncated one."""
    return (_find(run_dirs, lambda run: run.eval_figure("generated", c))
            or _find(run_dirs, lambda run: run.notebook_sample(f"grid_{c}_psi1.0")))


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
    """The ratio to the floor, with its standard error where the figure has one (the SWD's draws)."""
    r, se = _get(pair, "ratio"), _get(pair, "ratio_se")
    return "–" if r is None else f"{r:.3g}×" + ("" if se is None else f" ±{se:.2f}")


def _mark(v: str) -> str:
    return {"near": "● ", "off": "▲ ", "far": "✖ ", "none": "· ", "unjudged": "? "}[v] + VERDICTS[v]


def _setting(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def compared_images(compared: dict[str, int | None]) -> str:
    """"45 images per class" when the classes compared as many, else "AD 45, NC 160 images"."""
    sizes = set(compared.values())
    if len(sizes) == 1:
        return f"{sizes.pop()} images per class"
    return ", ".join(f"{c} {n}" for c, n in compared.items()) + " images"
