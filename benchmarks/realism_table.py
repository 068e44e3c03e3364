"""The realism targets, run by run: reads each run's eval.json (`brainlib evaluate --n 1000`) and
says, per class, how far each target figure is from its real-vs-real floor and whether it meets
the target. This is the comparison table of docs/experiments.md and docs/quality.md, so its rows
can be made again from the runs themselves.

    .venv/bin/python benchmarks/realism_table.py outputs/demo-AD outputs/demo-NC
    .venv/bin/python benchmarks/realism_table.py outputs/runs/* --markdown --preset demo

The targets (each figure beside its floor, `docs/quality.md`):
- finest band: the train-normalised SWD of the finest pyramid level at most 2x its floor;
- SWD mean: the train-normalised SWD averaged over levels at most 1.5x;
- spectrum: the spectrum distance at most 2x its floor in every octave band of 16 px and finer
  (coarser bands hold one or two radii and their floors are not steady: reported, not judged);
- precision and recall: at least 0.9 of their floors;
- memorised share: within 1 point of its floor, in pixels and in encoder features;
- synthetic-only AD/NC classifier: at least 95% of the real-trained one's balanced accuracy (only
  where AD and NC were evaluated together).

Each row names the run's design by the settings in its config.json that differ from the preset
(`--preset`, default `demo`), its set by its data folder and training slices, and its seed.
Prints a table and writes outputs/bench/realism_table.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/realism_table.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, write_result
from brainlib.config import preset
from brainlib.eval.report import load_report
from brainlib.eval.verdicts import MIN_SPECTRUM_BAND, headline_pair
from brainlib.rundir import RunDir

FINEST_MAX, SWD_MEAN_MAX, SPECTRUM_MAX = 2.0, 1.5, 2.0
SCORE_MIN, CLASSIFIER_MIN, MEMORISED_POINTS = 0.9, 0.95, 0.01
# settings that say where and how a run trained, not what it trained: never part of its design's name
NOT_DESIGN = {"run", "out_root", "data_root", "class_name", "class_dirs", "seed", "max_images", "device",
              "amp", "cpu_bf16", "channels_last", "compile", "checkpoint_minutes", "sample_grid", "texture_every"}
COLUMNS = ["design", "class", "set", "seed", "finest", "swd_mean", "spectrum", "precision", "recall",
           "memorised", "classifier", "met"]


def design_name(config: dict, preset_name: str) -> str:
    """The preset's name, with each setting the run changed from it, as `--set` writes it
    (`demo + output_lowpass=true`); a setting this version does not know counts as changed."""
    base = preset(preset_name).to_dict()
    changed = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in config.items()
               if k not in NOT_DESIGN and (k not in base or base[k] != v)]
    return " + ".join([preset_name, *changed])


def set_name(config: dict, train_slices: int) -> str:
    """`phantom, 1600` for the embedded set, else the data folder's name (the one above AD_NC)."""
    root = config.get("data_root")
    if root is None:
        return f"phantom, {train_slices}"
    path = Path(root)
    return f"{(path.parent if path.name == 'AD_NC' else path).name}, {train_slices}"


def judged(value: float | None, meets: bool | None, text: str) -> dict:
    return {"value": value, "meets": meets, "text": text}


def class_targets(report: dict, c: str) -> dict[str, dict]:
    """Each target figure of class `c` in an eval.json: its value, whether it meets the target
    (None when not measured) and a short text."""
    m = report["per_class"][c]
    levels = m["swd_reference_x1e3"]["levels"]
    finest = levels[max(levels, key=int)]
    mean = m["swd_reference_x1e3"]["mean"]["ratio"]
    bands = {b: p["ratio"] for b, p in m["spectrum"]["bands"].items() if int(b) >= MIN_SPECTRUM_BAND}
    worst_band = max(bands, key=bands.get)
    scores = {k: m[f"{k}_encoder"]["ratio"] for k in ("precision", "recall")}
    over = {k: m[f"memorised_share_{k}"]["generated"] - m[f"memorised_share_{k}"]["floor"]
            for k in ("encoder", "pixels")}
    worse = max(over, key=over.get)
    use = headline_pair(report, c, "usefulness_synthetic")
    return {
        "finest": judged(finest["ratio"], finest["ratio"] <= FINEST_MAX,
                         f"{finest['ratio']:.2f}x ±{finest.get('ratio_se') or 0:.2f}"),
        "swd_mean": judged(mean, mean <= SWD_MEAN_MAX, f"{mean:.2f}x"),
        "spectrum": judged(bands[worst_band], bands[worst_band] <= SPECTRUM_MAX,
                           f"{bands[worst_band]:.1f}x ({worst_band} px)"),
        **{k: judged(v, v >= SCORE_MIN, f"{v:.3f}") for k, v in scores.items()},
        "memorised": judged(over[worse], over[worse] <= MEMORISED_POINTS,
                            f"{100 * over[worse]:+.1f} pt ({worse})"),
        "classifier": (judged(use["ratio"], use["ratio"] >= CLASSIFIER_MIN, f"{100 * use['ratio']:.0f}%")
                       if use and use.get("ratio") is not None else judged(None, None, "-")),
    }


def run_rows(run_dir: Path, preset_name: str, eval_file: str) -> list[dict]:
    """One row per class of the run's evaluation (its own class for a per-class run)."""
    config_path, report_path = RunDir(run_dir).config, run_dir / eval_file
    for path in (config_path, report_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; a row needs a trained run evaluated with "
                                    f"`brainlib evaluate --model {run_dir.name} --n 1000`")
    # config.json read as saved, not as a RunConfig: a run may name a setting since removed
    config, report = json.loads(config_path.read_text()), load_report(report_path)
    design, own = design_name(config, preset_name), config.get("class_name")
    classes = [own] if own in report["per_class"] else list(report["per_class"])
    rows = []
    for c in classes:
        if "swd_reference_x1e3" not in report["per_class"][c]:
            raise ValueError(f"{report_path}: made by a version without the train-normalised SWD and the "
                             f"spectrum; evaluate the run again")
        targets = class_targets(report, c)
        judgeable = [t["meets"] for t in targets.values() if t["meets"] is not None]
        rows.append({"run": str(run_dir), "design": design, "class": c,
                     "set": set_name(config, report["per_class"][c]["sizes"]["train"]),
                     "seed": config.get("seed"), "n_per_class": report["n_per_class"],
                     "targets": targets, "met": f"{sum(judgeable)} of {len(judgeable)}"})
    return rows


def cells(row: dict, markdown: bool) -> dict:
    """A row's printed cells: each target's text, marked as met or missed."""
    mark = {True: " ✓", False: " ✗", None: ""} if markdown else {True: "", False: " (missed)", None: ""}
    out = {k: row[k] for k in ("design", "class", "set", "seed", "met")}
    out.update({k: t["text"] + mark[t["meets"]] for k, t in row["targets"].items()})
    return out


def markdown_table(rows: list[dict]) -> str:
    headers = ["design", "class", "set, slices", "seed", f"finest (≤{FINEST_MAX:g}x)", f"SWD mean (≤{SWD_MEAN_MAX:g}x)",
               f"spectrum, worst band (≤{SPECTRUM_MAX:g}x)", f"precision / floor (≥{SCORE_MIN:g})",
               f"recall / floor (≥{SCORE_MIN:g})", "memorised - floor (≤1 pt)",
               f"synthetic-only classifier (≥{CLASSIFIER_MIN:.0%})", "met"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        c = cells(row, markdown=True)
        lines.append("| " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders, each with config.json and an evaluation")
    p.add_argument("--preset", default="demo", help="the preset a design's settings are named against")
    p.add_argument("--eval-file", default="eval.json", help="eval.json, or eval-best.json, eval-seed1.json, ...")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (marks: ✓ met, ✗ missed)")
    p.add_argument("--out", default=None, help="JSON path (default: outputs/bench/realism_table.json)")
    args = p.parse_args(argv)
    rows = [row for run in args.runs for row in run_rows(run, args.preset, args.eval_file)]
    print(markdown_table(rows) if args.markdown else
          format_table([cells(r, markdown=False) for r in rows], COLUMNS))
    result = {"preset": args.preset, "eval_file": args.eval_file, "rows": rows}
    print(f"written to {write_result('realism_table', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
