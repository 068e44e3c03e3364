"""Evaluate trained generators: every metric beside its real-vs-real floor.

    evaluate(["demo-AD", "demo-NC"])      # a pair of per-class runs
    evaluate(["demo-both"])               # one conditional run
    evaluate(["demo-NC"])                 # one class alone

For each class: n generated images (seeded) against the real training images
of that class, and, as the floor, the real held-out (`test` split) images of
that class against the same training images, with the generated set cut to the
held-out set's size so both carry the same finite-sample bias. The ratio is
generated / floor (1 is as good as real data gets at this sample size).

Every per-class figure needs only its class. The figures about the pair (the AD-NC
class contrast, the usefulness of synthetic images for an AD/NC classifier) need both:
evaluating one class writes them as {"not_applicable": "needs both AD and NC"}. The
encoder learns from both classes wherever the dataset has both, so a class's figures
are the same whether it is evaluated alone or beside the other.

Where it writes: `<out_root>/<run>/eval.json` for every run listed (identical
copies, so each run folder says how it was judged), and the figures and the
features (`eval/`: memorisation_<class>.png, real_<class>.png and generated_<class>.png
grids, umap.png, features.npz) in the
first run's folder; eval.json lists their paths. Everything is written
atomically. `metric_rows(report)` gives the printed table's rows.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.config import CLASS_LABELS

EVAL_VERSION = 3  # 3: C2ST at half resolution, one-class reports; 2: real and generated grids in eval/
NEEDS_BOTH = {"not_applicable": "needs both AD and NC"}


@dataclass(frozen=True)
class EvalSizes:
    """How much work each metric does; `quick()` is for tests."""
    swd_patches: int = 128
    swd_directions: int = 128
    swd_repeats: int = 4
    ms_ssim_pairs: int = 1000
    kid_subsets: int = 50
    usefulness_epochs: int = 4
    usefulness_max_per_class: int = 500
    encoder_epochs: int = 4
    c2st_epochs: int = 6
    c2st_seeds: int = 3  # one classifier can fail to train and read near 0.5: average a few
    embed_max_real_per_class: int = 1000
    memorisation_pairs_shown: int = 8

    @classmethod
    def quick(cls) -> "EvalSizes":
        return cls(swd_patches=32, swd_directions=64, swd_repeats=2, ms_ssim_pairs=100, kid_subsets=10,
                   usefulness_epochs=2, encoder_epochs=2, c2st_epochs=2, c2st_seeds=1, embed_max_real_per_class=200,
                   memorisation_pairs_shown=4)


# ----------------------------------------------------------------------
# Inputs: generators, generated images, real images


def load_runs(runs: list[str], out_root: str | Path) -> list[tuple[str, object, object, dict]]:
    """[(run, G, cfg, meta)]; checks the runs make one evaluation: each class at most once."""
    from brainlib.sampling import load

    if not runs:
        raise ValueError("evaluate needs one run of one class, one conditional run, or an AD run and an NC run")
    loaded = [(run, *load(run, out_root=out_root)) for run in runs]
    classes = [c for _, _, cfg, _ in loaded for c in cfg.classes]
    if sorted(classes) not in (["AD", "NC"], ["AD"], ["NC"]):
        described = ", ".join(f"{r} ({'+'.join(cfg.classes)})" for r, _, cfg, _ in loaded)
        raise ValueError(f"evaluate needs each class at most once (one run of one class, one conditional run, "
                         f"or an AD run and an NC run); got {described}")
    first = loaded[0][2]
    for run, _, cfg, _ in loaded[1:]:
        for key in ("data_root", "class_dirs", "image_size", "pad_to_square"):
            if getattr(cfg, key) != getattr(first, key):
                raise ValueError(f"runs {loaded[0][0]} and {run} were trained on different data "
                                 f"({key}: {getattr(first, key)!r} vs {getattr(cfg, key)!r})")
    return loaded


def generate(loaded, n: int, seed: int, progress: bool) -> dict[str, torch.Tensor]:
    """n images per class, float [n,1,S,S]; seed + class label, so AD and NC use different z."""
    from brainlib.sampling import sample_images

    out = {}
    for _, G, cfg, meta in loaded:
        for c in cfg.classes:
            out[c] = sample_images(G, n, seed=seed + CLASS_LABELS[c], class_name=c if cfg.conditional else None,
                                   res=int(meta["res"]), progress=progress)
    return out


def classes_in_data(cfg, classes: list[str]) -> list[str]:
    """`classes`, with the other class added when the runs' dataset has it too (the encoder
    then learns from both, as when the pair is evaluated together)."""
    from brainlib.data import DataError, dataset_root, discover

    if len(classes) == 2:
        return list(classes)
    try:
        discover(dataset_root(cfg), classes=["AD", "NC"], class_dirs=cfg.class_dirs)
    except DataError:
        return list(classes)
    return ["AD", "NC"]


def real_images(cfg, res: int, progress: bool, seed: int,
                classes: list[str] = ("AD", "NC")) -> tuple[dict, dict, dict]:
    """(train, heldout, notes): float images at `res` of each of `classes` from the runs' dataset.

    Held-out = the `test` split. Without one, the training images are split
    80/20 (seeded) and the floor is marked optimistic."""
    from brainlib.data import DataError, dataset_for_config, to_model_input

    scope = cfg.replace(class_name="both" if len(classes) == 2 else classes[0])
    try:
        train = dataset_for_config(scope, splits=["train"], progress=progress)
    except DataError:  # no train/ folder: every image is a training image
        train = dataset_for_config(scope, splits=None, progress=progress)
    trained_on = cfg.splits
    notes = {"trained_splits": trained_on, "heldout": "the test split", "optimistic": False, "note": ""}
    try:
        test = dataset_for_config(scope, splits=["test"], progress=progress)
    except DataError:
        test = None
    if trained_on is None or "test" in trained_on:
        notes.update(optimistic=True, note="the generator also trained on the held-out (test) split: "
                                          "the floor is optimistic (held-out images were seen in training)")

    def per_class(ds):
        return {c: to_model_input(torch.from_numpy(np.asarray(ds.images[ds.labels == CLASS_LABELS[c]])), res)
                for c in classes}

    tr = per_class(train)
    if test is None or any(len(v) < 4 for v in per_class(test).values()):
        gen = torch.Generator().manual_seed(seed)
        te = {}
        for c, x in tr.items():
            perm = torch.randperm(len(x), generator=gen)
            cut = int(0.8 * len(x))
            tr[c], te[c] = x[perm[:cut]], x[perm[cut:]]
        notes.update(heldout="a seeded 20% of the training images (the dataset has no usable test split)",
                     optimistic=True, note="no test split: the held-out images are training images the "
                                          "generator saw, so the floor is optimistic")
    else:
        te = per_class(test)
    return tr, te, notes


# ----------------------------------------------------------------------
# Metrics per class


def _subset(x, m: int, seed: int):
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:m]
    return x[idx.sort().values]


def _pair(generated: float | None, floor: float | None) -> dict:
    # a ratio only means something against a positive floor (unbiased KID can dip below zero)
    ratio = generated / floor if generated is not None and floor is not None and floor > 0 else None
    return {"generated": generated, "floor": floor, "ratio": ratio}


def class_metrics(c: str, gen, train, held, enc, inception, sizes: EvalSizes, seed: int, fig_dir: Path,
                  figures: dict, *, f_held) -> dict:
    """Every per-class figure beside its floor; `f_held` are the held-out images' encoder
    features (evaluate computes them once, for the class contrast too)."""
    from brainlib import memorisation as mem
    from brainlib.c2st import c2st, half_resolution
    from brainlib.metrics import fid, kid, ms_ssim_pairs, precision_recall, swd_to_reference

    m = min(len(gen), len(held))
    gen_m, held_m = _subset(gen, m, seed), _subset(held, m, seed + 1)
    out: dict = {"sizes": {"generated": len(gen), "compared": m, "train": len(train), "heldout": len(held)}}
    seconds, tick = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        seconds[name] = round(time.perf_counter() - tick, 2)
        tick = time.perf_counter()

    swd = swd_to_reference(train, {"generated": gen_m, "floor": held_m}, patches_per_image=sizes.swd_patches,
                           directions=sizes.swd_directions, repeats=sizes.swd_repeats, seed=seed)
    out["swd_x1e3"] = {"mean": _pair(swd["generated"]["mean"], swd["floor"]["mean"]),
                       "levels": {lvl: _pair(swd["generated"]["levels"][lvl], swd["floor"]["levels"][lvl])
                                  for lvl in swd["generated"]["levels"]},
                       "n_images": swd["generated"]["n_images"]}
    lap("swd")
    out["ms_ssim"] = _pair(ms_ssim_pairs(gen_m, pairs=sizes.ms_ssim_pairs, seed=seed),
                           ms_ssim_pairs(held_m, pairs=sizes.ms_ssim_pairs, seed=seed))
    lap("ms_ssim")
    f_train, f_gen = enc.features(train), enc.features(gen)
    f_gen_m, f_held_m = enc.features(gen_m), enc.features(held_m)
    out["fid_encoder"] = _pair(fid(f_gen_m, f_train), fid(f_held_m, f_train))
    kid_g, kid_h = (kid(f, f_train, subsets=sizes.kid_subsets, subset_size=min(200, m), seed=seed)
                    for f in (f_gen_m, f_held_m))
    out["kid_encoder"] = {**_pair(kid_g[0], kid_h[0]), "generated_std": kid_g[1], "floor_std": kid_h[1]}
    if m > 3:
        pr_g, pr_h = precision_recall(f_train, f_gen_m), precision_recall(f_train, f_held_m)
        out["precision_encoder"] = _pair(pr_g["precision"], pr_h["precision"])
        out["recall_encoder"] = _pair(pr_g["recall"], pr_h["recall"])
    if inception is not None:
        i_train = inception(train)
        out["inception_fid"] = _pair(fid(inception(gen_m), i_train), fid(inception(held_m), i_train))
    else:
        out["inception_fid"] = None
    lap("features_fid_kid_pr")
    if m >= 8:
        res = c2st(gen_m, train, held_m, seeds=tuple(range(seed, seed + sizes.c2st_seeds)), epochs=sizes.c2st_epochs)
        out["c2st_accuracy"] = {**_pair(res["c2st"], res["c2st_floor"]), "std": res["c2st_std"],
                                "seeds": res["c2st_seeds"]}
        res = c2st(*map(half_resolution, (gen_m, train, held_m)), seeds=tuple(range(seed, seed + sizes.c2st_seeds)),
                   epochs=sizes.c2st_epochs)
        out["c2st_accuracy_half_res"] = {**_pair(res["c2st"], res["c2st_floor"]), "std": res["c2st_std"],
                                         "seeds": res["c2st_seeds"]}
    lap("c2st")
    memo = mem.memorisation(gen, train, held, gen_features=f_gen, train_features=f_train, heldout_features=f_held)
    out["memorisation"] = mem.public(memo)
    for space in ("pixels", "encoder"):
        out[f"memorised_share_{space}"] = _pair(memo[space]["share"], memo[space]["floor"])
    path = mem.save_closest_pairs(gen, train, memo, fig_dir / f"memorisation_{c}.png",
                                  k=min(sizes.memorisation_pairs_shown, len(gen)),
                                  title=f"{c}: closest generated | training pairs (pixel L2)")
    figures[f"memorisation_{c}"] = str(path)
    lap("memorisation")
    figures.update(save_real_and_generated(c, gen, train, fig_dir, seed))
    out["seconds"] = seconds
    return out


def save_real_and_generated(c: str, gen, train, fig_dir: Path, seed: int, n: int = 16) -> dict[str, str]:
    """4x4 grids of real training images and generated images of class c, side by side in the
    batch report: the eye's check beside the numbers (`eval/real_<c>.png`, `eval/generated_<c>.png`)."""
    from brainlib.plots import save_grid
    paths = {}
    for kind, images in (("real", train), ("generated", gen)):
        picked = _subset(images, min(n, len(images)), seed + 7)
        paths[f"{kind}_{c}"] = str(save_grid(picked, fig_dir / f"{kind}_{c}.png", nrow=4))
    return paths


# ----------------------------------------------------------------------
# The report


def metric_rows(report: dict) -> list[dict]:
    """Rows (metric, class, generated, floor, ratio, better) for the printed table."""
    rows = []

    def add(metric, c, pair, better):
        if pair is not None:
            rows.append({"metric": metric, "class": c, "generated": pair["generated"], "floor": pair["floor"],
                         "ratio": pair["ratio"], "better": better})

    for c, m in report["per_class"].items():
        add("SWD x1e3 (avg)", c, m["swd_x1e3"]["mean"], "lower")
        for lvl, pair in m["swd_x1e3"]["levels"].items():
            add(f"SWD x1e3 ({lvl} px)", c, pair, "lower")
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
                     "better": f"not applicable: {reason}"})

    use = report.get("usefulness")
    if use and "not_applicable" in use:
        not_applicable("AD/NC classifier (synthetic vs real)", use["not_applicable"])
    elif use:
        for source in ("synthetic", "real+synthetic"):
            for key, name in (("balanced_accuracy", "balanced acc"), ("auc", "AUC")):
                add(f"AD/NC classifier {name} ({source} vs real)", "both",
                    _pair(use[source][key], use["real"][key]), "higher")
    emb = report.get("embedding")
    pair_evaluated = "not_applicable" not in (report.get("class_contrast") or {})
    if emb:
        add("5-NN acc real vs generated (features)", "both" if pair_evaluated else "+".join(report["classes"]),
            _pair(emb["features"]["real_vs_generated"]["knn_accuracy"], 0.5), "0.5")
        if pair_evaluated:
            add("5-NN acc AD vs NC generated (features)", "both",
                _pair(emb["features"]["generated_AD_vs_NC"]["knn_accuracy"],
                      emb["features"]["real_AD_vs_NC"]["knn_accuracy"]), "near floor")
        else:
            not_applicable("5-NN acc AD vs NC generated (features)", report["class_contrast"]["not_applicable"])
    if pair_evaluated:
        add("AD-NC contrast (encoder)", "both", report.get("class_contrast"), "near floor")
    else:
        not_applicable("AD-NC contrast (encoder)", report["class_contrast"]["not_applicable"])
    return rows


def format_table(rows: list[dict]) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.4g}"
    head = f"{'metric':<56} {'class':<5} {'generated':>10} {'floor':>10} {'ratio':>8}  better"
    lines = [head, "-" * len(head)]
    lines += [f"{r['metric']:<56} {r['class']:<5} {f(r['generated']):>10} {f(r['floor']):>10} {f(r['ratio']):>8}  "
              f"{r['better']}" for r in rows]
    return "\n".join(lines)


def load_report(path: str | Path) -> dict:
    """eval.json as a dict (a run name under outputs/ or a path to eval.json or its folder)."""
    p = Path(path)
    p = p / "eval.json" if p.is_dir() else p
    return json.loads(p.read_text())


def load_features(report: dict) -> dict[str, np.ndarray]:
    """The arrays evaluate saved (features, labels, generated flags, embedding points)."""
    with np.load(report["figures"]["features"]) as z:
        return {k: z[k] for k in z.files}


def _fingerprint(runs, n, seed, sizes, loaded) -> dict:
    return {"version": EVAL_VERSION, "runs": list(runs), "n": n, "seed": seed, "sizes": asdict(sizes),
            "checkpoints": [{k: meta.get(k) for k in ("res", "alpha", "images_seen", "finished")}
                            for _, _, _, meta in loaded]}


def evaluate(runs: list[str], n: int = 1000, out_root: str | Path = "outputs", *, seed: int = 0,
             quick: bool = False, sizes: EvalSizes | None = None, embed_method: str = "umap",
             usefulness: bool = True, reuse: bool = False, encoder_cache: str | Path | None = None,
             progress: bool = True) -> Path:
    """Sample, measure, write `<out_root>/<run>/eval.json` for each run; return the first run's path.

    `quick` uses EvalSizes.quick() (tests); `sizes` sets each budget. With
    `reuse`, an existing eval.json made from the same checkpoints and options is
    returned without recomputing. `embed_method`: "umap", "tsne" or None.
    """
    from brainlib.embed import embedding_report, plot_embedding
    from brainlib.features import load_inception, load_or_train_encoder
    from brainlib.metrics import class_contrast
    from brainlib.metrics import usefulness as usefulness_study

    sizes = sizes or (EvalSizes.quick() if quick else EvalSizes())
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if n < 2:
        raise ValueError(f"evaluate needs at least 2 generated images per class, got n={n}")
    t0 = time.perf_counter()
    loaded = load_runs(list(runs), out_root)
    run_dirs = [Path(out_root) / run if (Path(out_root) / run).is_dir() else Path(run) for run, *_ in loaded]
    first_json = run_dirs[0] / "eval.json"
    fingerprint = _fingerprint(runs, n, seed, sizes, loaded)
    if reuse and first_json.is_file():
        try:
            old = load_report(first_json)
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") == fingerprint:
            print(format_table(metric_rows(old)))
            return first_json

    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    generated = generate(loaded, n, seed, progress)
    res = next(iter(generated.values())).shape[-1]
    seconds["sample"] = time.perf_counter() - tick
    tick = time.perf_counter()
    classes = [c for c in ("AD", "NC") if c in generated]
    encoder_classes = classes_in_data(loaded[0][2], classes)
    train, held, floor_notes = real_images(loaded[0][2], res, progress, seed, encoder_classes)
    seconds["load_real"] = time.perf_counter() - tick

    tick = time.perf_counter()
    cat = lambda d, cs: torch.cat([d[c] for c in cs])  # noqa: E731
    lab = lambda d, cs: torch.cat([torch.full((len(d[c]),), CLASS_LABELS[c]) for c in cs])  # noqa: E731
    enc = load_or_train_encoder(cat(train, encoder_classes), lab(train, encoder_classes), cat(held, encoder_classes),
                                lab(held, encoder_classes), cache_dir=encoder_cache, epochs=sizes.encoder_epochs,
                                seed=seed, progress=progress)
    encoder_info = {**enc.info, "classes": encoder_classes}
    if len(encoder_classes) == 1:  # the class head had one label to learn: its accuracy means nothing
        encoder_info.update(heldout_accuracy=None, heldout_accuracy_note="one class only: nothing to separate")
    inception, inception_note = load_inception()
    seconds["encoder"] = time.perf_counter() - tick

    fig_dir = run_dirs[0] / "eval"
    figures: dict[str, str] = {}
    per_class = {}
    labels_of = {c: CLASS_LABELS[c] for c in classes}
    held_f = {c: enc.features(held[c]) for c in labels_of}
    for c in labels_of:
        tick = time.perf_counter()
        per_class[c] = class_metrics(c, generated[c], train[c], held[c], enc, inception, sizes, seed, fig_dir, figures,
                                     f_held=held_f[c])
        seconds[f"metrics_{c}"] = time.perf_counter() - tick

    report: dict = {
        "runs": list(runs), "n_per_class": n, "seed": seed, "res": res, "quick": quick,
        "floor": {"definition": "the same metric for real held-out images of the class against its real "
                                "training images, at the same sample sizes; ratio = generated / floor",
                  **floor_notes},
        "classes": classes,
        "encoder": encoder_info,
        "inception_fid": {c: per_class[c]["inception_fid"] for c in per_class} if inception else None,
        "inception_note": inception_note,
        "swd_note": "SWD on Laplacian-pyramid 7x7 patches as in ProGAN (arXiv 1710.10196, app. D), x1e3",
        "per_class": per_class,
    }
    if usefulness and len(classes) == 1:
        report["usefulness"] = dict(NEEDS_BOTH)
    elif usefulness:
        tick = time.perf_counter()
        syn_cap = {c: min(len(generated[c]), len(train[c])) for c in labels_of}  # as many synthetic as real
        syn = {c: generated[c][:syn_cap[c]] for c in labels_of}
        report["usefulness"] = {**usefulness_study(cat(train, classes), lab(train, classes), cat(syn, classes),
                                                   lab(syn, classes), cat(held, classes), lab(held, classes),
                                                   epochs=sizes.usefulness_epochs, seed=seed,
                                                   max_per_class=sizes.usefulness_max_per_class),
                                "note": "fixed SliceEncoder classifier, class head only; trained on each source, "
                                        "scored on real held-out images; each source cut to at most "
                                        f"{sizes.usefulness_max_per_class} images per class"}
        seconds["usefulness"] = time.perf_counter() - tick

    tick = time.perf_counter()
    real_emb = {c: _subset(train[c], min(len(train[c]), sizes.embed_max_real_per_class), seed) for c in labels_of}
    feats = np.concatenate([enc.features(real_emb[c]) for c in labels_of] + [enc.features(generated[c]) for c in labels_of])
    labels = np.concatenate([np.full(len(real_emb[c]), labels_of[c]) for c in labels_of]
                            + [np.full(len(generated[c]), labels_of[c]) for c in labels_of])
    is_gen = np.concatenate([np.zeros(len(real_emb[c]), bool) for c in labels_of]
                            + [np.ones(len(generated[c]), bool) for c in labels_of])
    arrays = {"features": feats, "labels": labels, "generated": is_gen}
    real_f = {c: feats[(labels == labels_of[c]) & ~is_gen] for c in labels_of}
    gen_f = {c: feats[(labels == labels_of[c]) & is_gen] for c in labels_of}
    report["class_contrast"] = dict(NEEDS_BOTH) if len(classes) == 1 else {
        **_pair(class_contrast(gen_f["AD"], gen_f["NC"], real_f["AD"], real_f["NC"]),
                class_contrast(held_f["AD"], held_f["NC"], real_f["AD"], real_f["NC"])),
        "note": "distance between the AD and NC means in encoder features, along the real training "
                "images' AD-NC axis, as a share of the real distance (1 = as distinct as real classes)"}
    if embed_method and len(feats) > 20:
        emb = embedding_report(feats, labels, is_gen, method=embed_method, seed=seed)
        arrays[f"{embed_method}_points"] = emb["points"]
        report["embedding"] = {"method": embed_method, "embedding": emb["embedding"], "features": emb["features"]}
        if len(classes) == 1:
            for space in ("embedding", "features"):
                for key in ("generated_AD_vs_NC", "real_AD_vs_NC"):
                    report["embedding"][space][key].update(NEEDS_BOTH)
        fig_path = fig_dir / f"{embed_method}.png"
        import matplotlib.pyplot as plt
        plt.close(plot_embedding(emb, labels, is_gen, path=fig_path,
                                 title=f"{embed_method.upper()} of encoder features: {', '.join(runs)}"))
        figures[embed_method] = str(fig_path)
    features_path = fig_dir / "features.npz"

    def write_npz(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        tmp.write_bytes(buf.getvalue())

    atomic_write(features_path, write_npz)
    figures["features"] = str(features_path)
    seconds["embedding"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - t0
    report.update(figures=figures, seconds={k: round(v, 1) for k, v in seconds.items()}, fingerprint=fingerprint,
                  written_to=[str(d / "eval.json") for d in run_dirs])
    report["table"] = metric_rows(report)
    for d in run_dirs:
        atomic_write_json(d / "eval.json", _jsonable(report))
    print(format_table(report["table"]))
    print(f"encoder: {enc.info['name']} (train set {enc.info['train_set_hash']} of {'+'.join(encoder_classes)}, "
          f"held-out AD/NC accuracy {encoder_info['heldout_accuracy']}); Inception: {inception_note}")
    if len(classes) == 1:
        print(f"one class ({classes[0]}): the AD-NC contrast and the usefulness study need both AD and NC")
    if floor_notes["optimistic"]:
        print(f"note: {floor_notes['note']}")
    return first_json


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
