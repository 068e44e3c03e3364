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
grids, spectrum_<class>.png, umap.png, features.npz) in the
first run's folder; eval.json lists their paths. Everything is written
atomically. `metric_rows(report)` gives the printed table's rows.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from brainlib.atomic import atomic_write_bytes, atomic_write_json, human_bytes
from brainlib.config import CLASS_LABELS, check_psi, check_seed
from brainlib.data.dataset import dataset_for_config, dataset_root, to_model_input
from brainlib.data.discovery import DataError, discover
from brainlib.eval import memorisation as mem
from brainlib.eval.c2st import c2st, half_resolution
from brainlib.eval.embed import embedding_report, plot_embedding
from brainlib.eval.features import load_inception, load_or_train_encoder
from brainlib.eval.metrics import class_contrast, fid, kid, ms_ssim_pairs, precision_recall, swd_to_reference
from brainlib.eval.metrics import usefulness as usefulness_study
from brainlib.eval.report import format_table, load_report, metric_rows, with_floor
from brainlib.eval.spectrum import octave_bands, plot_spectra, spectra_to_reference
from brainlib.plots import pyplot, save_grid
from brainlib.rundir import DEFAULT_OUT_ROOT, RunDir, eval_figure_name, run_dir_of
from brainlib.runlock import folder_locks
from brainlib.synthesis.sampling import load, sample_images
from brainlib.training.checkpoints import snapshot_checkpoint

# 6: the SWD averaged over draws of patches and subsets, with the ratio's standard error;
# 5: SWD normalised by the training set's statistics, the power spectrum per band; 4: truncation
# (psi) in the report and its fingerprint; 3: C2ST at half resolution, one-class reports;
# 2: real and generated grids in eval/
EVAL_VERSION = 6
NEEDS_BOTH = {"not_applicable": "needs both AD and NC"}


@dataclass(frozen=True)
class EvalSizes:
    """How much work each metric does; `quick()` is for tests."""
    swd_patches: int = 128
    swd_directions: int = 128
    swd_repeats: int = 1  # sets of swd_directions directions per draw
    swd_draws: int = 4  # draws of patches and subsets averaged (swd_section): one draw's floor moves by a fifth
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
    def quick(cls) -> EvalSizes:
        return cls(swd_patches=32, swd_directions=64, swd_repeats=2, swd_draws=2, ms_ssim_pairs=100, kid_subsets=10,
                   usefulness_epochs=2, encoder_epochs=2, c2st_epochs=2, c2st_seeds=1, embed_max_real_per_class=200,
                   memorisation_pairs_shown=4)


# ----------------------------------------------------------------------
# Inputs: generators, generated images, real images


def load_runs(runs: list[str], out_root: str | Path,
              snapshot: str = "latest") -> list[tuple[str, object, object, dict]]:
    """[(run, G, cfg, meta)] at `snapshot` (latest or best); checks the runs make one evaluation:
    each class at most once."""

    if not runs:
        raise ValueError("evaluate needs one run of one class, one conditional run, or an AD run and an NC run")
    loaded = [(run, *load(snapshot_checkpoint(run, snapshot, out_root), out_root=out_root)) for run in runs]
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


def generate(loaded, n: int, seed: int, progress: bool, psi: float = 1.0) -> dict[str, torch.Tensor]:
    """n images per class, float [n,1,S,S]; seed + class label, so AD and NC use different z;
    truncated towards the average w by `psi` (1: none)."""

    out = {}
    for _, G, cfg, meta in loaded:
        for c in cfg.classes:
            out[c] = sample_images(G, n, seed=seed + CLASS_LABELS[c], class_name=c if cfg.conditional else None,
                                   psi=psi, res=int(meta["res"]), progress=progress)
    return out


def classes_in_data(cfg, classes: list[str]) -> list[str]:
    """`classes`, with the other class added when the runs' dataset has it too (the encoder
    then learns from both, as when the pair is evaluated together)."""

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


def class_metrics(c: str, gen, train, held, enc, inception, sizes: EvalSizes, seed: int, fig_dir: Path,
                  figures: dict, *, f_held) -> dict:
    """Every per-class figure beside its floor; `f_held` are the held-out images' encoder
    features (evaluate computes them once, for the class contrast too)."""
    m = min(len(gen), len(held))
    gen_m, held_m = _subset(gen, m, seed), _subset(held, m, seed + 1)
    out: dict = {"sizes": {"generated": len(gen), "compared": m, "train": len(train), "heldout": len(held)}}
    seconds: dict[str, float] = {}
    with timed(seconds, "swd"):
        out["swd_x1e3"] = swd_section(gen, train, held_m, sizes, seed)
        out["swd_reference_x1e3"] = swd_section(gen, train, held_m, sizes, seed, normalise="reference")
    with timed(seconds, "spectrum"):
        out["spectrum"] = spectrum_section(gen_m, train, held_m)
        figures[f"spectrum_{c}"] = str(plot_spectra(
            {"train": out["spectrum"]["spectra"]["train"], "held-out": out["spectrum"]["spectra"]["heldout"],
             "generated": out["spectrum"]["spectra"]["generated"]}, fig_dir / f"spectrum_{c}.png",
            title=f"{c}: power spectrum ({m} generated, {m} held-out, {len(train)} training slices)"))
    with timed(seconds, "ms_ssim"):
        out["ms_ssim"] = with_floor(ms_ssim_pairs(gen_m, pairs=sizes.ms_ssim_pairs, seed=seed),
                                    ms_ssim_pairs(held_m, pairs=sizes.ms_ssim_pairs, seed=seed))
    with timed(seconds, "features_fid_kid_pr"):
        f_train, f_gen = enc.features(train), enc.features(gen)
        out |= feature_distances(enc.features(gen_m), enc.features(held_m), f_train, m, sizes, seed)
        out["inception_fid"] = None
        if inception is not None:
            i_train = inception(train)
            out["inception_fid"] = with_floor(fid(inception(gen_m), i_train), fid(inception(held_m), i_train))
    with timed(seconds, "c2st"):
        if m >= 8:
            seeds = tuple(range(seed, seed + sizes.c2st_seeds))
            out["c2st_accuracy"] = c2st_section(gen_m, train, held_m, seeds, sizes.c2st_epochs)
            out["c2st_accuracy_half_res"] = c2st_section(*map(half_resolution, (gen_m, train, held_m)), seeds,
                                                         sizes.c2st_epochs)
    with timed(seconds, "memorisation"):
        memo = mem.memorisation(gen, train, held, gen_features=f_gen, train_features=f_train, heldout_features=f_held)
        out["memorisation"] = mem.public(memo)
        for space in ("pixels", "encoder"):
            out[f"memorised_share_{space}"] = with_floor(memo[space]["share"], memo[space]["floor"])
        path = mem.save_closest_pairs(gen, train, memo, fig_dir / eval_figure_name("memorisation", c),
                                      k=min(sizes.memorisation_pairs_shown, len(gen)),
                                      title=f"{c}: closest generated | training pairs (pixel L2)")
        figures[f"memorisation_{c}"] = str(path)
    figures.update(save_real_and_generated(c, gen, train, fig_dir, seed))
    out["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    return out


def swd_section(gen, train, held, sizes: EvalSizes, seed: int, normalise: str = "per_set") -> dict:
    """Sliced Wasserstein distance to the training images, per Laplacian level (finest first) and on
    average; patches normalised per set (ProGAN) or by the training images' statistics ("reference").

    One draw of patches compares len(held) images a side, and its floor moves by a fifth from draw
    to draw (measured: docs/experiments.md, 2026-12-06 14:40). So the figure averages
    `sizes.swd_draws` draws, each with its own patches and directions, its own subset of the
    generated images and of the training images (the reference), against all the held-out ones;
    generated and floor are averaged separately and `ratio_se` is the standard error of the ratio."""
    m = len(held)
    draws = []
    for k in range(sizes.swd_draws):
        s = seed + 7919 * k
        draws.append(swd_to_reference(_subset(train, m, s), {"generated": _subset(gen, m, s), "floor": held},
                                      patches_per_image=sizes.swd_patches, directions=sizes.swd_directions,
                                      repeats=sizes.swd_repeats, seed=s, normalise=normalise))

    def averaged(pick) -> dict:
        g, f = (np.array([pick(d[side]) for d in draws]) for side in ("generated", "floor"))
        se = float(np.std(g / f, ddof=1) / np.sqrt(len(draws))) if len(draws) > 1 else None
        return {**with_floor(float(g.mean()), float(f.mean())), "ratio_se": se}

    levels = draws[0]["generated"]["levels"]
    return {"mean": averaged(lambda r: r["mean"]),
            "levels": {lvl: averaged(lambda r, lvl=lvl: r["levels"][lvl]) for lvl in levels},
            "n_images": m, "draws": len(draws)}


def spectrum_section(gen, train, held) -> dict:
    """The power spectrum's distance to the training images' per octave band (finest first), generated
    and held-out, with the spectra themselves (power per radius 0 .. S/2 cycles per image)."""
    res = spectra_to_reference(train, {"generated": gen, "floor": held})
    g, f = res["generated"], res["floor"]
    size = to_model_input(gen[:1]).shape[-1]
    return {"bands": {b: with_floor(g["bands"][b], f["bands"][b]) for b in g["bands"]},
            "mean": with_floor(g["mean"], f["mean"]),
            "band_cycles": {b: list(r) for b, r in octave_bands(size).items()},
            "spectra": {"train": res["spectra"]["reference"], "generated": res["spectra"]["generated"],
                        "heldout": res["spectra"]["floor"]},
            "n_images": len(gen)}


def feature_distances(f_gen, f_held, f_train, m: int, sizes: EvalSizes, seed: int) -> dict:
    """FID, KID, precision and recall in encoder features, generated and held-out against training."""
    out = {"fid_encoder": with_floor(fid(f_gen, f_train), fid(f_held, f_train))}
    kid_g, kid_h = (kid(f, f_train, subsets=sizes.kid_subsets, subset_size=min(200, m), seed=seed)
                    for f in (f_gen, f_held))
    out["kid_encoder"] = {**with_floor(kid_g[0], kid_h[0]), "generated_std": kid_g[1], "floor_std": kid_h[1]}
    if m > 3:
        pr_g, pr_h = precision_recall(f_train, f_gen), precision_recall(f_train, f_held)
        out["precision_encoder"] = with_floor(pr_g["precision"], pr_h["precision"])
        out["recall_encoder"] = with_floor(pr_g["recall"], pr_h["recall"])
    return out


def c2st_section(gen, train, held, seeds: tuple[int, ...], epochs: int) -> dict:
    res = c2st(gen, train, held, seeds=seeds, epochs=epochs)
    return {**with_floor(res["c2st"], res["c2st_floor"]), "std": res["c2st_std"], "seeds": res["c2st_seeds"]}


def save_real_and_generated(c: str, gen, train, fig_dir: Path, seed: int, n: int = 16) -> dict[str, str]:
    """4x4 grids of real training images and generated images of class c, side by side in the
    batch report: the eye's check beside the numbers (`eval/real_<c>.png`, `eval/generated_<c>.png`)."""
    paths = {}
    for kind, images in (("real", train), ("generated", gen)):
        picked = _subset(images, min(n, len(images)), seed + 7)
        paths[f"{kind}_{c}"] = str(save_grid(picked, fig_dir / eval_figure_name(kind, c), nrow=4))
    return paths


# ----------------------------------------------------------------------
# The report


def load_features(report: dict) -> dict[str, np.ndarray]:
    """The arrays evaluate saved (features, labels, generated flags, embedding points)."""
    with np.load(report["figures"]["features"]) as z:
        return {k: z[k] for k in z.files}


def _fingerprint(runs, n, seed, sizes, loaded, psi: float = 1.0, steps: int | None = None) -> dict:
    return {"version": EVAL_VERSION, "runs": list(runs), "n": n, "seed": seed, "psi": psi, "steps": steps,
            "sizes": asdict(sizes),
            "checkpoints": [{k: meta.get(k) for k in ("res", "alpha", "images_seen", "finished")}
                            for _, _, _, meta in loaded]}


@contextmanager
def timed(seconds: dict[str, float], name: str):
    """Add the wall-clock seconds of the block to `seconds[name]` (the report's time per stage)."""
    tick = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - tick


def _stacked(images: dict[str, torch.Tensor], classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes' images in one tensor, with their labels."""
    labels = [torch.full((len(images[c]),), CLASS_LABELS[c]) for c in classes]
    return torch.cat([images[c] for c in classes]), torch.cat(labels)


def reusable_report(path: Path, fingerprint: dict) -> dict | None:
    """The eval.json at `path` when it was made from the same checkpoints and options."""
    try:
        old = load_report(path) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    return old if old.get("fingerprint") == fingerprint else None


def train_encoder(train, held, classes: list[str], sizes: EvalSizes, seed: int, cache: str | Path | None,
                  progress: bool):
    """The feature encoder, trained (or loaded from its cache) on the real images of `classes`."""
    x, y = _stacked(train, classes)
    x_held, y_held = _stacked(held, classes)
    enc = load_or_train_encoder(x, y, x_held, y_held, cache_dir=cache, epochs=sizes.encoder_epochs,
                                seed=seed, progress=progress)
    info = {**enc.info, "classes": classes}
    if len(classes) == 1:  # the class head had one label to learn: its accuracy means nothing
        info.update(heldout_accuracy=None, heldout_accuracy_note="one class only: nothing to separate")
    return enc, info


def usefulness_section(generated, train, held, classes: list[str], sizes: EvalSizes, seed: int) -> dict:
    """A classifier trained on real, synthetic or both, scored on real held-out images."""
    if len(classes) == 1:
        return dict(NEEDS_BOTH)
    syn = {c: generated[c][:min(len(generated[c]), len(train[c]))] for c in classes}  # as many synthetic as real
    return {**usefulness_study(*_stacked(train, classes), *_stacked(syn, classes), *_stacked(held, classes),
                               epochs=sizes.usefulness_epochs, seed=seed,
                               max_per_class=sizes.usefulness_max_per_class),
            "note": "fixed SliceEncoder classifier, class head only; trained on each source, "
                    "scored on real held-out images; each source cut to at most "
                    f"{sizes.usefulness_max_per_class} images per class"}


def feature_arrays(enc, generated, train, classes: list[str], sizes: EvalSizes, seed: int) -> dict[str, np.ndarray]:
    """Encoder features of real training images (a subset) and generated ones, with class and source."""
    real = {c: _subset(train[c], min(len(train[c]), sizes.embed_max_real_per_class), seed) for c in classes}
    sets = [(real, False), (generated, True)]
    return {"features": np.concatenate([enc.features(imgs[c]) for imgs, _ in sets for c in classes]),
            "labels": np.concatenate([np.full(len(imgs[c]), CLASS_LABELS[c]) for imgs, _ in sets for c in classes]),
            "generated": np.concatenate([np.full(len(imgs[c]), gen) for imgs, gen in sets for c in classes])}


def contrast_section(arrays: dict[str, np.ndarray], held_f: dict[str, np.ndarray], classes: list[str]) -> dict:
    """How far apart generated AD and NC are, against how far apart the real classes are."""
    if len(classes) == 1:
        return dict(NEEDS_BOTH)
    feats, labels, is_gen = arrays["features"], arrays["labels"], arrays["generated"]
    real_f = {c: feats[(labels == CLASS_LABELS[c]) & ~is_gen] for c in classes}
    gen_f = {c: feats[(labels == CLASS_LABELS[c]) & is_gen] for c in classes}
    return {**with_floor(class_contrast(gen_f["AD"], gen_f["NC"], real_f["AD"], real_f["NC"]),
                    class_contrast(held_f["AD"], held_f["NC"], real_f["AD"], real_f["NC"])),
            "note": "distance between the AD and NC means in encoder features, along the real training "
                    "images' AD-NC axis, as a share of the real distance (1 = as distinct as real classes)"}


def embedding_section(arrays: dict[str, np.ndarray], method: str, classes: list[str], seed: int, path: Path,
                      title: str) -> dict:
    """A 2-D embedding of the features, its separation scores, and its figure at `path`;
    the points are added to `arrays`."""
    plt = pyplot(headless=False)

    emb = embedding_report(arrays["features"], arrays["labels"], arrays["generated"], method=method, seed=seed)
    arrays[f"{method}_points"] = emb["points"]
    section = {"method": method, "embedding": emb["embedding"], "features": emb["features"]}
    if len(classes) == 1:
        for space in ("embedding", "features"):
            for key in ("generated_AD_vs_NC", "real_AD_vs_NC"):
                section[space][key].update(NEEDS_BOTH)
    plt.close(plot_embedding(emb, arrays["labels"], arrays["generated"], path=path, title=title))
    return section


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def evaluate(runs: list[str], n: int = 1000, out_root: str | Path = DEFAULT_OUT_ROOT, *, seed: int = 0,
             quick: bool = False, sizes: EvalSizes | None = None, embed_method: str = "umap",
             usefulness: bool = True, reuse: bool = False, encoder_cache: str | Path | None = None,
             progress: bool = True, truncation: float = 1.0, snapshot: str = "latest",
             steps: int | None = None) -> Path:
    """Sample, measure, write `<out_root>/<run>/eval.json` for each run; return the first run's path.

    `quick` uses EvalSizes.quick() (tests); `sizes` sets each budget. With
    `reuse`, an existing eval.json made from the same checkpoints and options is
    returned without recomputing. `embed_method`: "umap", "tsne" or None.
    `truncation` < 1 samples with the truncation trick (psi) and writes `eval-psi<psi>.json`
    and `eval-psi<psi>/` instead, beside the untruncated report the batch pages read. Truncation
    trades recall for precision in a model whose average is realistic; the two reports side by
    side show whether a model's low precision is such a trade or a lack of fidelity.
    `steps` samples diffusion runs with that many DDIM steps instead of their own and writes
    `eval-steps<k>.json` and `eval-steps<k>/` (quality against sampling cost).
    `snapshot="best"` evaluates each run's best snapshot (training/texture_probe.py) and writes
    `eval-best.json` and `eval-best/` (`eval-best-psi<psi>.*` with truncation) instead.
    `seed` draws the generated images, the subsets, the SWD directions and the classifiers'
    initialisations; a seed other than 0 writes `eval-seed<s>.json` and `eval-seed<s>/`, so two
    seeds side by side show how much the evaluation itself moves each figure.
    """
    check_psi(truncation, "truncation")
    check_seed(seed, "seed")
    sizes = sizes or (EvalSizes.quick() if quick else EvalSizes())
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if n < 2:
        raise ValueError(f"evaluate needs at least 2 generated images per class, got n={n}")
    t0 = time.perf_counter()
    loaded = load_runs(list(runs), out_root, snapshot)
    if steps is not None:
        set_sampling_steps(loaded, steps)
    check_memory(n, loaded)
    run_dirs = [run_dir_of(run, out_root=out_root) for run, *_ in loaded]
    with folder_locks(run_dirs):  # no training or other evaluation writes these runs meanwhile
        return _evaluate(runs, loaded, run_dirs, n, seed=seed, quick=quick, sizes=sizes, embed_method=embed_method,
                         usefulness=usefulness, reuse=reuse, encoder_cache=encoder_cache, progress=progress,
                         truncation=truncation, snapshot=snapshot, steps=steps, t0=t0)


def set_sampling_steps(loaded, steps: int) -> None:
    """Sample every run of `loaded` (all diffusion runs) with `steps` DDIM steps."""
    for run, G, cfg, _ in loaded:
        if not cfg.diffusion:
            raise ValueError(f"--steps applies to diffusion runs; {run} is a StyleGAN")
        if not 1 <= steps <= cfg.diffusion_timesteps:
            raise ValueError(f"--steps {steps}: {run} can take 1 to {cfg.diffusion_timesteps} steps")
        G.steps = steps


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(n: int, loaded) -> None:
    """Refuse an --n whose generated images alone (float32, every class) would fill half the
    available memory: the metrics need several times that."""
    res = max(int(meta["res"]) for *_, meta in loaded)
    n_classes = sum(len(cfg.classes) for _, _, cfg, _ in loaded)
    need, free = n * n_classes * res * res * 4, available_memory()
    if free is not None and need > free // 2:
        raise ValueError(f"--n {n}: {n_classes} x {n} generated images at {res} px take {human_bytes(need)} "
                         f"and {human_bytes(free)} of memory is available; ask for at most "
                         f"{max(2, free // 2 // (n_classes * res * res * 4))}")


def _evaluate(runs, loaded, run_dirs: list[RunDir], n: int, *, seed: int, quick: bool, sizes: EvalSizes,
              embed_method: str, usefulness: bool, reuse: bool, encoder_cache, progress: bool, truncation: float,
              snapshot: str, steps: int | None, t0: float) -> Path:
    variant = dict(psi=truncation, snapshot=snapshot, steps=steps, seed=seed)
    first_json, fig_dir = run_dirs[0].eval_report(**variant), run_dirs[0].eval_figures(**variant)
    fingerprint = _fingerprint(runs, n, seed, sizes, loaded, truncation, steps)
    if reuse and (old := reusable_report(first_json, fingerprint)) is not None:
        print(format_table(metric_rows(old)))
        return first_json

    seconds: dict[str, float] = {}
    with timed(seconds, "sample"):
        generated = generate(loaded, n, seed, progress, truncation)
        res = next(iter(generated.values())).shape[-1]
    classes = [c for c in ("AD", "NC") if c in generated]
    with timed(seconds, "load_real"):
        encoder_classes = classes_in_data(loaded[0][2], classes)
        train, held, floor_notes = real_images(loaded[0][2], res, progress, seed, encoder_classes)
    with timed(seconds, "encoder"):
        enc, encoder_info = train_encoder(train, held, encoder_classes, sizes, seed, encoder_cache, progress)
        inception, inception_note = load_inception()

    figures: dict[str, str] = {}
    per_class = {}
    held_f = {c: enc.features(held[c]) for c in classes}
    for c in classes:
        with timed(seconds, f"metrics_{c}"):
            per_class[c] = class_metrics(c, generated[c], train[c], held[c], enc, inception, sizes, seed, fig_dir,
                                         figures, f_held=held_f[c])
    report: dict = {
        "runs": list(runs), "snapshot": snapshot, "n_per_class": n, "seed": seed, "truncation_psi": truncation,
        "res": res, "quick": quick,
        "sample_steps": {run: G.steps for run, G, cfg, _ in loaded if cfg.diffusion} or None,
        "floor": {"definition": "the same metric for real held-out images of the class against its real "
                                "training images, at the same sample sizes; ratio = generated / floor",
                  **floor_notes},
        "classes": classes,
        "encoder": encoder_info,
        "inception_fid": {c: per_class[c]["inception_fid"] for c in per_class} if inception else None,
        "inception_note": inception_note,
        "swd_note": "SWD on Laplacian-pyramid 7x7 patches as in ProGAN (arXiv 1710.10196, app. D), x1e3; "
                    "swd_x1e3 normalises each set's patches by its own statistics (ProGAN: the shape of "
                    "the patch distribution), swd_reference_x1e3 by the real training images' (the strength "
                    "of each band counts too)",
        "spectrum_note": "radially averaged power spectrum; per octave band (named as the pyramid's levels, "
                         "band_cycles in cycles per image), the mean |log10 P - log10 P_train| over its radii "
                         "(0.3 = a factor of 2 in power)",
        "per_class": per_class,
    }
    if usefulness:
        with timed(seconds, "usefulness"):
            report["usefulness"] = usefulness_section(generated, train, held, classes, sizes, seed)
    with timed(seconds, "embedding"):
        arrays = feature_arrays(enc, generated, train, classes, sizes, seed)
        report["class_contrast"] = contrast_section(arrays, held_f, classes)
        if embed_method and len(arrays["features"]) > 20:
            figures[embed_method] = str(fig_dir / f"{embed_method}.png")
            report["embedding"] = embedding_section(
                arrays, embed_method, classes, seed, Path(figures[embed_method]),
                title=f"{embed_method.upper()} of encoder features: {', '.join(runs)}")
        write_npz(fig_dir / "features.npz", arrays)
        figures["features"] = str(fig_dir / "features.npz")
    seconds["total"] = time.perf_counter() - t0
    report.update(figures=figures, seconds={k: round(v, 1) for k, v in seconds.items()}, fingerprint=fingerprint,
                  written_to=[str(d.eval_report(**variant)) for d in run_dirs])
    report["table"] = metric_rows(report)
    for d in run_dirs:
        atomic_write_json(d.eval_report(**variant), _jsonable(report))
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
