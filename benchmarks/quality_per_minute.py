"""Image quality per CPU minute: train one configuration for a fixed wall-clock budget,
measure it against the real-vs-real floors, append one row to the results table.

    .venv/bin/python benchmarks/quality_per_minute.py --name reference --budget 90 \\
        --set loss=wgan-gp --set lr=0.001 --set mapping_lr=1e-5
    .venv/bin/python benchmarks/quality_per_minute.py --name r1 --budget 240 \\
        --set loss=logistic-r1 --set reg_every=4
    .venv/bin/python benchmarks/quality_per_minute.py --quick --data <tiny dataset> --results <dir>

A row is one class-conditional model (`class_name=both`, AD and NC in one network) trained
on the `train` split for `--budget` seconds of training steps, split over the resolutions
by `--shares` (cfg.seconds_per_res), then `brainlib.eval.evaluate.evaluate` on `--n` generated
images per class: SWD, FID/KID, precision/recall in the project's encoder, C2ST and the
memorisation copy test, each beside its floor (the `test` split against the training
images) and their ratio. Usefulness and the embedding are skipped (they do not rank
generators per minute and cost time).

Results: `<results>/quality_per_minute.json` (a list of rows, the source of truth) and
`<results>/quality_per_minute.md` (rendered from the JSON). Both are rewritten atomically
under a file lock, so concurrent writers never lose a row. The load average is recorded
before and after training so readers can judge how noisy a row's timing was.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from brainlib.atomic import atomic_write_json, atomic_write_text, file_lock
from brainlib.config import ConfigError, RunConfig, parse_overrides, preset, project_root
from brainlib.data.devsets import DEVELOPMENT_SETS

DEFAULT_SHARES = (0.10, 0.15, 0.25, 0.50)  # of the budget per resolution step, last = full size
RESULTS_NAME = "quality_per_minute"
# (key in eval.json per class, short name, better)
FIGURES = (("swd", "lower"), ("fid", "lower"), ("kid", "lower"), ("precision", "higher"),
           ("recall", "higher"), ("c2st", "0.5"), ("memorised_px", "lower"), ("memorised_enc", "lower"))


# ----------------------------------------------------------------------
# The configuration of a row


def seconds_per_res(cfg: RunConfig, budget: float, shares: tuple[float, ...]) -> dict[int, float]:
    """The budget (seconds of training steps) over cfg.resolutions by shares (normalised)."""
    if len(shares) != len(cfg.resolutions):
        raise ConfigError(f"--shares has {len(shares)} values but the run trains {len(cfg.resolutions)} "
                          f"resolutions ({cfg.resolutions})")
    if budget <= 0 or any(s <= 0 for s in shares):
        raise ConfigError(f"budget ({budget}) and every share ({shares}) must be positive")
    total = sum(shares)
    return {res: round(budget * s / total, 3) for res, s in zip(cfg.resolutions, shares, strict=True)}


def row_config(preset_name: str, overrides: dict[str, str], *, budget: float, shares: tuple[float, ...],
               run: str, out_root: Path, data_root: str | None) -> RunConfig:
    """Preset + overrides, conditional on both classes, trained on `train` for `budget` seconds."""
    cfg = preset(preset_name, **overrides)
    cfg = cfg.replace(run=run, out_root=str(out_root), data_root=data_root, class_name="both",
                      splits=["train"], images_per_res=None, checkpoint_minutes=1e6)
    return cfg.replace(seconds_per_res=seconds_per_res(cfg, budget, shares)).validate()


# ----------------------------------------------------------------------
# Figures out of eval.json


def _pair(pair: dict | None) -> dict:
    pair = pair or {}
    return {"generated": pair.get("generated"), "floor": pair.get("floor"), "ratio": pair.get("ratio")}


def class_figures(per_class: dict) -> dict[str, dict]:
    """{figure: {generated, floor, ratio}} for one class of an eval.json."""
    return {"swd": _pair(per_class["swd_x1e3"]["mean"]), "fid": _pair(per_class["fid_encoder"]),
            "kid": _pair(per_class["kid_encoder"]), "precision": _pair(per_class.get("precision_encoder")),
            "recall": _pair(per_class.get("recall_encoder")), "c2st": _pair(per_class.get("c2st_accuracy")),
            "memorised_px": _pair(per_class["memorised_share_pixels"]),
            "memorised_enc": _pair(per_class.get("memorised_share_encoder"))}


def mean_figures(per_class: dict[str, dict]) -> dict[str, dict]:
    """The class mean of every figure, floor and ratio (None stays None)."""
    out = {}
    for name, _ in FIGURES:
        out[name] = {}
        for key in ("generated", "floor", "ratio"):
            vals = [f[name][key] for f in per_class.values() if f[name][key] is not None]
            out[name][key] = sum(vals) / len(vals) if vals and len(vals) == len(per_class) else None
    return out


# ----------------------------------------------------------------------
# The results file: JSON list (source of truth) + Markdown rendered from it


def load_rows(results: Path) -> list[dict]:
    """The rows so far; ValueError naming the file when it is not a JSON list."""
    path = results / f"{RESULTS_NAME}.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); expected a list of rows") from e
    if not isinstance(rows, list):
        raise ValueError(f"{path} should hold a JSON list of rows, found {type(rows).__name__}")
    return rows


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def common_overrides(rows: list[dict]) -> dict[str, str]:
    """Overrides every row sets to the same value (listed once above the table)."""
    if not rows:
        return {}
    first = rows[0]["overrides"]
    return {k: v for k, v in first.items() if all(r["overrides"].get(k) == v for r in rows[1:])}


def format_markdown(rows: list[dict]) -> str:
    """The table: one line per row; figures are class means, `value (ratio to floor)`."""
    head = ("| # | configuration | data | budget s | images seen | load avg, threads | SWD x1e3 (ratio) "
            "| FID enc (ratio) "
            "| KID enc (ratio) | precision (ratio) | recall (ratio) | C2ST (floor) | memorised px / enc | grid |")
    common = common_overrides(rows)
    lines = ["# Image quality per CPU minute", "",
             "Rows appended by `benchmarks/quality_per_minute.py`; figures are means over AD and NC of one "
             "class-conditional model, `value (generated / real-vs-real floor)`. C2ST shows its floor instead. "
             "Full per-class numbers and the overrides are in quality_per_minute.json.", ""]
    if common and len(rows) > 1:
        lines += ["Overrides common to every row: `" + " ".join(f"{k}={v}" for k, v in common.items()) + "`", ""]
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for i, r in enumerate(rows, 1):
        m = r["figures"]["mean"]

        def vr(name: str, digits: int = 3, m: dict = m) -> str:
            return f"{_fmt(m[name]['generated'], digits)} ({_fmt(m[name]['ratio'], 2)})"

        shown = r["overrides"] if len(rows) == 1 else {k: v for k, v in r["overrides"].items() if k not in common}
        overrides = " ".join(f"{k}={v}" for k, v in shown.items()) or "-"
        lines.append(f"| {i} | **{r['name']}** `{overrides}` | {r['data']} | {r['budget_seconds']:g} | "
                     f"{r['images_seen']} | {r['loadavg_before'][0]:.1f}/{r['loadavg_after'][0]:.1f}, "
                     f"{r['torch_threads']} thr | "
                     f"{vr('swd')} | "
                     f"{vr('fid')} | {vr('kid')} | {vr('precision')} | {vr('recall')} | "
                     f"{_fmt(m['c2st']['generated'])} ({_fmt(m['c2st']['floor'])}) | "
                     f"{_fmt(m['memorised_px']['generated'])} / {_fmt(m['memorised_enc']['generated'])} | "
                     f"{r['grid']} |")
    return "\n".join(lines) + "\n"


def append_row(row: dict, results: Path) -> tuple[Path, Path]:
    """Add the row to the JSON list and re-render the Markdown, both atomically, under a lock."""
    results.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results / f"{RESULTS_NAME}.json", results / f"{RESULTS_NAME}.md"
    with file_lock(results / f".{RESULTS_NAME}.lock"):
        try:
            rows = load_rows(results)
        except ValueError as e:  # keep the unreadable file aside, never overwrite it, never drop the new row
            aside = json_path.with_name(f"{json_path.name}.unreadable-{datetime.now():%Y%m%dT%H%M%S}")
            json_path.rename(aside)
            print(f"warning: {e}; moved it to {aside} and started a new list")
            rows = []
        rows.append(row)
        atomic_write_json(json_path, rows)
        atomic_write_text(md_path, format_markdown(rows))
    return json_path, md_path


# ----------------------------------------------------------------------
# One row


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_row(args: argparse.Namespace) -> dict:
    from brainlib.data.dataset import dataset_for_config
    from brainlib.data.devsets import development_set
    from brainlib.eval.evaluate import EvalSizes, evaluate
    from brainlib.training.metrics_log import read_metrics
    from brainlib.training.trainer import train

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run = f"{args.name}-{args.budget:g}s-{stamp}"
    data_root = args.data or str(development_set(args.dataset))
    cfg = row_config(args.preset, overrides, budget=args.budget, shares=tuple(args.shares), run=run,
                     out_root=Path(args.runs), data_root=data_root)
    dataset = dataset_for_config(cfg, splits=["train"], progress=False)

    load_before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    run_dir = train(cfg, dataset=dataset)
    train_wall = time.perf_counter() - t0
    load_after = [round(v, 2) for v in os.getloadavg()]
    batches = [r for r in read_metrics(run_dir) if r.get("kind") == "batch"]
    if not batches:
        raise RuntimeError(f"{run_dir} logged no training batch; the budget ({args.budget} s) is too small")
    images_seen = int(batches[-1]["images_seen"])

    t1 = time.perf_counter()
    sizes = EvalSizes.quick() if args.quick else EvalSizes(c2st_epochs=args.c2st_epochs)
    eval_path = evaluate([run], n=args.n, out_root=args.runs, seed=0, sizes=sizes, embed_method=None,
                         usefulness=False, encoder_cache=args.encoder_cache, progress=False)
    eval_seconds = time.perf_counter() - t1
    report = json.loads(Path(eval_path).read_text())
    per_class = {c: class_figures(m) for c, m in report["per_class"].items()}
    grids = sorted((Path(run_dir) / "samples").glob("*.png"))
    data_name = Path(args.data).name if args.data else {"phantom": "embedded"}.get(args.dataset, args.dataset)
    return {
        "name": args.name, "preset": args.preset, "overrides": overrides, "data": args.data_label or data_name,
        "data_root": data_root,
        "budget_seconds": args.budget, "seconds_per_res": {str(k): v for k, v in cfg.seconds_per_res.items()},
        "images_seen": images_seen, "batches": len(batches), "train_wall_seconds": round(train_wall, 1),
        "eval_seconds": round(eval_seconds, 1), "loadavg_before": load_before, "loadavg_after": load_after,
        "torch_threads": torch.get_num_threads(), "n_generated_per_class": args.n,
        "n_compared_per_class": {c: m["sizes"]["compared"] for c, m in report["per_class"].items()},
        "figures": {"mean": mean_figures(per_class), **per_class},
        "encoder": {k: report["encoder"].get(k) for k in ("name", "train_set_hash", "heldout_accuracy")},
        "floor_optimistic": report["floor"]["optimistic"], "grid": str(grids[-1]) if grids else None,
        "run_dir": str(run_dir), "eval_json": str(eval_path), "config": cfg.to_dict(),
        "git_commit": _git_commit(), "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default=None, help="configuration name in the table (default: the preset)")
    p.add_argument("--preset", default="demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RunConfig override (repeat)")
    p.add_argument("--budget", type=float, default=90.0, help="seconds of training steps for the whole run")
    p.add_argument("--shares", type=float, nargs="+", default=list(DEFAULT_SHARES),
                   help="the budget's share per resolution step, start_res .. image_size")
    p.add_argument("--n", type=int, default=300, help="generated images per class for the metrics")
    p.add_argument("--c2st-epochs", type=int, default=6)
    p.add_argument("--data", default=None, help="dataset root with train/ and test/ (default: the embedded one)")
    p.add_argument("--dataset", choices=DEVELOPMENT_SETS, default="phantom",
                   help="without --data: the embedded phantom or colin27 (real MRI texture, make devset)")
    p.add_argument("--data-label", default=None, help="what the table calls the dataset")
    p.add_argument("--runs", default=str(project_root() / "outputs" / "bench" / "qpm_runs"))
    p.add_argument("--results", default=str(project_root() / "outputs" / "bench"))
    p.add_argument("--encoder-cache", default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 trained 8x faster than 2 on 2 shared, loaded cores (docs/experiments.md)")
    p.add_argument("--keep-run", action="store_true", help="keep the run folder (checkpoints) after the row")
    p.add_argument("--quick", action="store_true",
                   help="test mode: smoke preset, 3 s budget, 16 images per class, quick metric sizes")
    args = p.parse_args(argv)
    if args.quick:
        if args.preset == "demo":
            args.preset = "smoke"
        if args.budget == 90.0:
            args.budget = 3.0
        if args.n == 300:
            args.n = 16
        if args.shares == list(DEFAULT_SHARES):
            args.shares = [1.0, 1.0]
    args.name = args.name or args.preset
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    row = run_row(args)
    json_path, md_path = append_row(row, Path(args.results))
    if not args.keep_run:  # the checkpoints are big; keep the samples and eval.json
        shutil.rmtree(Path(row["run_dir"]) / "checkpoints", ignore_errors=True)
    m = row["figures"]["mean"]
    print(f"{row['name']}: {row['images_seen']} images in {row['budget_seconds']:g} s; "
          + ", ".join(f"{k} {_fmt(m[k]['generated'])} ({_fmt(m[k]['ratio'], 2)})" for k, _ in FIGURES))
    print(f"row appended to {json_path} and {md_path}")
    return row


if __name__ == "__main__":
    main()
