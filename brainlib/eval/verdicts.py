"""The headline of an evaluation: which figures a reader is shown first, and how each is
judged against its real-vs-real floor (near the floor, off or far off). Read from eval.json
as `report.py` reads it, no torch."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Headline:
    key: str        # where it sits in eval.json's per_class (or a report-level name)
    label: str
    judge: str      # distance | score | excess | share | contrast
    meaning: str


PER_CLASS_HEADLINE = (
    Headline("swd", "SWD ×1e3", "distance", "sliced Wasserstein distance of Laplacian-pyramid patches "
             "(ProGAN): texture and structure at every scale"),
    Headline("fid_encoder", "FID (encoder)", "distance", "Fréchet distance between feature statistics "
             "of the project's slice encoder"),
    Headline("kid_encoder", "KID (encoder)", "distance", "kernel distance of the same features; unbiased, "
             "so it can read below 0"),
    Headline("precision_encoder", "precision", "score", "share of generated images inside the real "
             "images' feature manifold (realism)"),
    Headline("recall_encoder", "recall", "score", "share of real images inside the generated images' "
             "manifold (diversity)"),
    Headline("c2st_accuracy", "C2ST accuracy", "excess", "a classifier telling generated from real: "
             "0.5 cannot tell them apart, 1.0 always can"),
    Headline("c2st_accuracy_half_res", "C2ST, half resolution", "excess", "the same on 2x2-averaged "
             "images: high at full size but low here means the texture is wrong, not the anatomy"),
    Headline("memorised_share_pixels", "memorised (pixels)", "share", "generated images closer to a "
             "training image than 99% of held-out real ones are"),
    Headline("memorised_share_encoder", "memorised (encoder)", "share", "the same in encoder features"),
)
# after SWD, one row per band of each (finest first): figures that see each band's strength
TEXTURE_HEADLINE = (
    Headline("swd_reference", "SWD ×1e3 per band (train-normalised)", "distance", "SWD of one pyramid band "
             "with every set's patches scaled by the real training slices' statistics: too much or too "
             "little texture energy counts"),
    Headline("spectrum", "spectrum per band", "distance", "mean |log10 power ratio| to the training "
             "slices' radially averaged power spectrum in one octave (0.3 = 2x the power); bands of 16 px "
             "and finer, where the floor is steady"),
)
MIN_SPECTRUM_BAND = 16  # px: coarser octaves hold one or two radial bins, too few for a steady floor
BOTH_CLASSES_HEADLINE = (
    Headline("usefulness_synthetic", "AD/NC classifier, synthetic only", "score", "balanced accuracy on "
             "real held-out slices of a classifier trained on generated slices; floor: trained on real"),
    Headline("usefulness_real+synthetic", "AD/NC classifier, real + synthetic", "score", "the same, trained "
             "on real and generated slices together"),
    Headline("class_contrast", "AD–NC contrast", "contrast", "how far apart generated AD and NC are, as "
             "a share of the real classes' distance (1 = as distinct)"),
)
VERDICTS = {"near": "near floor", "off": "off", "far": "far off", "none": "not measured",
            "unjudged": "floor cannot judge"}
CHANCE_FLOOR = 0.6  # a real-trained AD/NC classifier below this is near chance: nothing to measure against
SATURATED_C2ST_FLOOR = 0.75  # real held-out slices told from training ones this often: the test cannot judge
RULES = ("distances: near ≤ 1.5× the floor, off ≤ 3×; accuracies and shares (0-1): near within 0.05 "
         "of the floor on the worse side (memorised: 0.01), off within 0.25 (0.05); AD–NC contrast: "
         "near within 0.1, off within 0.4")


def headline_pair(report: dict, c: str, key: str) -> dict | None:
    """The {generated, floor, ratio} pair of a headline figure, or None when not measured."""
    m = report.get("per_class", {}).get(c, {})
    if key == "swd":
        return (m.get("swd_x1e3") or {}).get("mean")
    if key.startswith("usefulness_"):
        use = report.get("usefulness") or {}
        source = key.removeprefix("usefulness_")
        if source not in use or "real" not in use:
            return None
        gen, floor = use[source]["balanced_accuracy"], use["real"]["balanced_accuracy"]
        return {"generated": gen, "floor": floor, "ratio": gen / floor if floor else None}
    if key == "class_contrast":
        return report.get("class_contrast")
    return m.get(key)


def verdict(judge: str, pair: dict | None) -> str:
    """near | off | far | none: how far the generated figure sits from its real-vs-real floor."""
    if not pair or pair.get("generated") is None or pair.get("floor") is None:
        return "none"
    gen, floor = float(pair["generated"]), float(pair["floor"])
    if not (math.isfinite(gen) and math.isfinite(floor)):
        return "none"
    if judge == "distance":
        noise = 2 * float(pair.get("floor_std") or 0.0)  # a floor at the estimator's noise level (KID)
        times = gen / max(floor, noise, 1e-12)
        return "near" if times <= 1.5 else "off" if times <= 3 else "far"
    if judge == "contrast":
        gap = abs(gen - floor)
        return "near" if gap <= 0.1 else "off" if gap <= 0.4 else "far"
    worse = floor - gen if judge == "score" else gen - floor  # score: higher is better
    near, off = (0.01, 0.05) if judge == "share" else (0.05, 0.25)
    return "near" if worse <= near else "off" if worse <= off else "far"


def why_floor_cannot_judge(metric: str, pair: dict | None) -> str | None:
    """Why a figure's floor cannot judge the generated one, or None when it can: a real-trained
    classifier at chance leaves the synthetic-trained ones nothing to be measured against, and a
    C2ST that already tells real held-out slices from training slices (few held-out slices, or
    held-out subjects unlike the training ones) would call real data fake as well."""
    floor = (pair or {}).get("floor")
    if floor is None or not math.isfinite(float(floor)):
        return None
    if metric.startswith("usefulness_") and floor < CHANCE_FLOOR:
        return (f"the classifier trained on real slices scores {floor:.2f} on held-out ones, near chance (0.5): "
                f"no figure trained on synthetic slices can be judged against it")
    if metric.startswith("c2st_") and floor >= SATURATED_C2ST_FLOOR:
        return (f"the classifier tells real held-out slices from training ones {floor:.2f} of the time: "
                f"it would call real data fake too")
    return None


def texture_pairs(report: dict, c: str) -> list[tuple[str, str, dict, Headline]]:
    """(key, label, pair, headline) per band of the train-normalised SWD and of the spectrum,
    finest first; none for a report made before they were measured."""
    m = report.get("per_class", {}).get(c, {})
    swd_h, spectrum_h = TEXTURE_HEADLINE
    found = [(f"swd_reference_{lvl}", f"SWD ×1e3, {lvl} px (train-normalised)", pair, swd_h)
             for lvl, pair in ((m.get("swd_reference_x1e3") or {}).get("levels") or {}).items()]
    spectrum = m.get("spectrum") or {}
    for band, pair in (spectrum.get("bands") or {}).items():
        if int(band) >= MIN_SPECTRUM_BAND:
            lo, hi = spectrum["band_cycles"][band]
            found.append((f"spectrum_{band}", f"spectrum, {band} px band ({lo}–{hi} cycles)", pair, spectrum_h))
    return found


def headline_row(metric: str, label: str, cls: str, pair: dict | None, h: Headline) -> dict:
    """One row of the headline: the figure, its floor and its verdict; `why` says why the floor
    cannot judge it, when it cannot."""
    why = why_floor_cannot_judge(metric, pair)
    return dict(metric=metric, label=label, cls=cls, pair=pair, meaning=h.meaning, why=why,
                verdict="unjudged" if why else verdict(h.judge, pair))


def headline_rows(report: dict, classes: list[str]) -> list[dict]:
    """One row per headline figure and class (the texture bands after SWD), then the rows about
    both classes together."""
    rows = []
    for c in classes:
        for h in PER_CLASS_HEADLINE:
            rows.append(headline_row(h.key, h.label, c, headline_pair(report, c, h.key), h))
            if h.key == "swd":
                rows += [headline_row(key, label, c, pair, t) for key, label, pair, t in texture_pairs(report, c)]
    if len(classes) == 2:
        rows += [headline_row(h.key, h.label, "AD+NC", headline_pair(report, "", h.key), h)
                 for h in BOTH_CLASSES_HEADLINE]
    return rows
