"""An evaluation report (eval.json) read back and turned into its table: no torch, so the batch
report and the CLI can read reports cheaply."""
from __future__ import annotations

import json
from pathlib import Path

from brainlib.rundir import RunDir


def with_floor(generated: float | None, floor: float | None) -> dict:
    """A metric beside its real-vs-real floor, and their ratio."""
    # a ratio only means something against a positive floor (unbiased KID can dip below zero)
    ratio = generated / floor if generated is not None and floor is not None and floor > 0 else None
    return {"generated": generated, "floor": floor, "ratio": ratio}


def metric_rows(report: dict) -> list[dict]:
    """Rows (metric, class, generated, floor, ratio, better, ratio_se) for the printed table; ratio_se,
    the ratio's standard error over the SWD's draws, is None for the other figures."""
    rows = []

    def add(metric, c, pair, better):
        if pair is not None:
            rows.append({"metric": metric, "class": c, "generated": pair["generated"], "floor": pair["floor"],
                         "ratio": pair["ratio"], "better": better, "ratio_se": pair.get("ratio_se")})

    for c, m in report["per_class"].items():
        add("SWD x1e3 (avg)", c, m["swd_x1e3"]["mean"], "lower")
        for lvl, pair in m["swd_x1e3"]["levels"].items():
            add(f"SWD x1e3 ({lvl} px)", c, pair, "lower")
        for label, pair in texture_pairs(m):
            add(label, c, pair, "lower")
        add("MS-SSIM (pairs)", c, m["ms_ssim"], "near floor")
        add("FID (encoder)", c, m["fid_encoder"], "lower")
        add("KID (encoder)", c, m["kid_encoder"], "lower")
        add("precision (encoder, k=3)", c, m.get("precision_encoder"), "higher")
        add("recall (encoder, k=3)", c, m.get("recall_encoder"), "higher")
        add("FID (Inception)", c, m.get("inception_fid"), "lower")
        add("C2ST accuracy", c, m.get("c2st_accuracy"), "0.5")
        add("C2ST accuracy (half resolution)", c, m.get("c2st_accuracy_half_res"), "0.5")
        add("memorised share (pixels)", c, m["memorised_share_pixels"], "lower")
        add("memorised share (encoder)", c, m["memorised_share_encoder"], "lower")

    def not_applicable(metric, reason):
        rows.append({"metric": metric, "class": "both", "generated": None, "floor": None, "ratio": None,
                     "better": f"not applicable: {reason}", "ratio_se": None})

    use = report.get("usefulness")
    if use and "not_applicable" in use:
        not_applicable("AD/NC classifier (synthetic vs real)", use["not_applicable"])
    elif use:
        for source in ("synthetic", "real+synthetic"):
            for key, name in (("balanced_accuracy", "balanced acc"), ("auc", "AUC")):
                add(f"AD/NC classifier {name} ({source} vs real)", "both",
                    with_floor(use[source][key], use["real"][key]), "higher")
    emb = report.get("embedding")
    pair_evaluated = "not_applicable" not in (report.get("class_contrast") or {})
    if emb:
        add("5-NN acc real vs generated (features)", "both" if pair_evaluated else "+".join(report["classes"]),
            with_floor(emb["features"]["real_vs_generated"]["knn_accuracy"], 0.5), "0.5")
        if pair_evaluated:
            add("5-NN acc AD vs NC generated (features)", "both",
                with_floor(emb["features"]["generated_AD_vs_NC"]["knn_accuracy"],
                      emb["features"]["real_AD_vs_NC"]["knn_accuracy"]), "near floor")
        else:
            not_applicable("5-NN acc AD vs NC generated (features)", report["class_contrast"]["not_applicable"])
    if pair_evaluated:
        add("AD-NC contrast (encoder)", "both", report.get("class_contrast"), "near floor")
    else:
        not_applicable("AD-NC contrast (encoder)", report["class_contrast"]["not_applicable"])
    return rows


def texture_pairs(per_class: dict) -> list[tuple[str, dict]]:
    """(label, {generated, floor, ratio}) of the figures that see the strength of each band: the SWD
    with patches normalised by the training images' statistics, its mean and then per pyramid level,
    finest first, and the power spectrum's distance per octave band, finest first. Empty for a
    report made before they were measured."""
    pairs = []
    swd = per_class.get("swd_reference_x1e3")
    if swd:
        pairs.append(("SWD x1e3, train-normalised (avg)", swd["mean"]))
        pairs += [(f"SWD x1e3, train-normalised ({lvl} px)", pair) for lvl, pair in swd["levels"].items()]
    spectrum = per_class.get("spectrum")
    if spectrum:
        for band, pair in spectrum["bands"].items():
            lo, hi = spectrum["band_cycles"][band]
            cycles = f"{lo}" if lo == hi else f"{lo}-{hi}"
            pairs.append((f"spectrum |dlog10 P| ({band} px band, {cycles} cyc)", pair))
    return pairs


def format_table(rows: list[dict]) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.4g}"
    head = f"{'metric':<56} {'class':<5} {'generated':>10} {'floor':>10} {'ratio':>8}  better"
    lines = [head, "-" * len(head)]
    lines += [f"{r['metric']:<56} {r['class']:<5} {f(r['generated']):>10} {f(r['floor']):>10} {f(r['ratio']):>8}  "
              f"{r['better']}" + ("" if r.get("ratio_se") is None else f" (ratio ±{r['ratio_se']:.2f})") for r in rows]
    return "\n".join(lines)


def load_report(path: str | Path) -> dict:
    """eval.json as a dict (a path to eval.json or to the folder holding it)."""
    p = Path(path)
    p = RunDir(p).eval_report() if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e}); evaluate the run again") from None
