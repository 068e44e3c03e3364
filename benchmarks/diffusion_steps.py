"""A diffusion run's quality against its number of DDIM sampling steps.

    .venv/bin/python benchmarks/diffusion_steps.py --model diff-AD [--steps 10 25 50 100] [--n 1000]

For each step count, `brainlib evaluate --model <run> --steps K` (eval-steps<K>.json beside the
run's eval.json; an evaluation already made with the same checkpoint and options is read, not
redone), then one row per class: the sampling time of the --n images, the finest band of the
train-normalised SWD and of the power spectrum, FID in the encoder, precision, recall and the
C2ST, each generated figure beside its real-vs-real floor. The sampling time is the
evaluation's own (`seconds.sample`: the whole class set, one process) on this machine.
Writes outputs/bench/diffusion_steps.json (--quick: outputs/bench/quick/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/diffusion_steps.py`: make the workbook importable
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table, set_threads, write_result
from brainlib.eval.evaluate import EvalSizes, evaluate
from brainlib.eval.report import load_report
from brainlib.rundir import DEFAULT_OUT_ROOT


def finest(section: dict | None, key: str) -> dict | None:
    """The finest band's {generated, floor, ratio} of a per-band section: bands are named by
    their pyramid level's size in px, so the largest name is the finest."""
    bands = (section or {}).get(key) or {}
    return bands[max(bands, key=int)] if bands else None


def quality_row(report: dict, c: str, steps: int) -> dict:
    m = report["per_class"][c]
    pairs = {"swd_finest": finest(m.get("swd_reference_x1e3"), "levels"),
             "spectrum_finest": finest(m.get("spectrum"), "bands"),
             **{k: m.get(k) for k in ("fid_encoder", "precision_encoder", "recall_encoder", "c2st_accuracy")}}
    return {"steps": steps, "class": c, "sample_seconds": report.get("seconds", {}).get("sample"),
            **{k: {"generated": p.get("generated"), "floor": p.get("floor"), "ratio": p.get("ratio")} if p else None
               for k, p in pairs.items()}}


def measure(models: list[str], steps: list[int], n: int, out_root: str, quick: bool) -> list[dict]:
    rows = []
    for k in steps:
        path = evaluate(models, n=n, out_root=out_root, steps=k, quick=quick, reuse=True, embed_method=None,
                        usefulness=False, sizes=EvalSizes.quick() if quick else None)
        report = load_report(path)
        rows += [quality_row(report, c, k) for c in report["classes"]]
    return rows


def _cell(pair: dict | None, key: str = "ratio") -> str:
    if not pair or pair.get(key) is None:
        return "-"
    return f"{pair[key]:.2f}x" if key == "ratio" else f"{pair[key]:.3f}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", required=True, help="a diffusion run (or an AD and an NC run)")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--n", type=int, default=1000, help="generated images per class")
    ap.add_argument("--out-root", default=DEFAULT_OUT_ROOT)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="the evaluation's quick sizes (tests)")
    ap.add_argument("--out", default=None, help="the JSON (default: outputs/bench/diffusion_steps.json)")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    rows = measure(args.model, args.steps, args.n, args.out_root, args.quick)
    table = [{"steps": r["steps"], "class": r["class"], "sample_s": f"{r['sample_seconds']:.0f}",
              "swd_finest": _cell(r["swd_finest"]), "spectrum_finest": _cell(r["spectrum_finest"]),
              "fid": _cell(r["fid_encoder"]), "precision": _cell(r["precision_encoder"], "generated"),
              "recall": _cell(r["recall_encoder"], "generated"), "c2st": _cell(r["c2st_accuracy"], "generated")}
             for r in rows]
    print(format_table(table, list(table[0]) if table else ["steps"]))
    result = {"models": args.model, "n": args.n, "threads": threads, "quick": args.quick, "rows": rows}
    print(f"wrote {write_result('diffusion_steps', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
