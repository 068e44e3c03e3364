"""A synthetic dataset to take away: both classes in ADNI's folder layout, with provenance.

    export_dataset(["demo-both"], "synthetic", n=1000)            # one conditional run
    export_dataset(["demo-AD", "demo-NC"], "synthetic", n=1000)   # one run per class

writes

    <out>/train/{AD,NC}/syn_<class>_<index>.png   greyscale PNG at the trained size
    <out>/test/{AD,NC}/...                         the last `test_fraction` of each class
    <out>/manifest.csv                             file, class, split, seed, index, truncation, checkpoint, sha256
    <out>/DATASHEET.md                             models, evaluation beside its floors, training data, intended use

Image `index` of class c is image `index` of seed `2 * seed + label(c)` (NC = 0, AD = 1) in
brainlib.synthesis.sampling, so each class has its own latents and `brainlib generate --seed <manifest
seed>` makes the same pixels. Every PNG says in its tEXt chunks that it is synthetic. Nothing
carries a timestamp: the same command writes the same bytes. The folder is built under a
temporary name and renamed when complete; an existing non-empty folder is refused.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from brainlib.atomic import check_free_space, new_folder
from brainlib.config import CLASS_LABELS, RunConfig, check_psi, check_seed, project_root
from brainlib.data.discovery import DataError, discover
from brainlib.progress import progress_bar
from brainlib.rundir import CHECKPOINTS, DEFAULT_OUT_ROOT, RunDir, eval_reports
from brainlib.synthesis.sampling import load, png_bytes, png_size_bound, sample_images, to_uint8, trained_res
from brainlib.training.checkpoints import file_sha256, resolve_checkpoint, snapshot_checkpoint

SYNTHETIC_NOTE = ("SYNTHETIC image made by a generative model trained with brainlib, not a scan of a person. "
                  "For research and data augmentation only; never for diagnosis.")
MANIFEST_FIELDS = ("file", "class", "split", "seed", "index", "truncation", "checkpoint", "checkpoint_sha256")
BATCH_SIZE = 64  # fixed: the CPU's convolutions round differently at other batch sizes


@dataclass
class ExportModel:
    """One class's source: the run, its generator and checkpoint."""
    class_name: str
    run: str
    G: object
    cfg: RunConfig
    meta: dict
    checkpoint: Path
    sha256: str
    snapshot: str = "latest"  # or "best": the run's best snapshot (training/texture_probe.py)

    @property
    def conditional(self) -> bool:
        return self.cfg.conditional


def class_seed(seed: int, class_name: str) -> int:
    """The sampling seed of one class: distinct latents per class and per export seed."""
    return 2 * int(seed) + CLASS_LABELS[class_name]


def load_models(runs: list[str], out_root: str | Path = DEFAULT_OUT_ROOT,
                snapshot: str = "latest") -> dict[str, ExportModel]:
    """{class: ExportModel} from one conditional run or one run per class, at `snapshot`; each class once."""

    if not runs:
        raise ValueError("export needs one conditional run (class both) or an AD run and an NC run")
    models: dict[str, ExportModel] = {}
    for run in runs:
        source = snapshot_checkpoint(run, snapshot, out_root)
        G, cfg, meta = load(source, out_root=out_root)
        ckpt = resolve_checkpoint(source, out_root)
        for c in cfg.classes:
            if c in models:
                raise ValueError(f"class {c} comes from both {models[c].run} and {run}; "
                                 "give one conditional run or one run per class")
            models[c] = ExportModel(c, str(run), G, cfg, meta, ckpt, file_sha256(ckpt), snapshot)
    sizes = {c: trained_res(m.G) for c, m in models.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the runs were trained to different sizes ({sizes}); export needs one image size")
    return dict(sorted(models.items()))


def split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) images per class."""
    if n is None or int(n) < 1:
        raise ValueError(f"--n must be a positive number of images per class (got {n})")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be within [0, 1) (got {test_fraction})")
    n_test = int(round(n * test_fraction))
    return n - n_test, n_test


def checkpoint_label(m: ExportModel) -> str:
    """The checkpoint as `<run folder>/checkpoints/<file>`: the same wherever outputs/ lives."""
    return "/".join(m.checkpoint.parts[-3:]) if m.checkpoint.parent.name == CHECKPOINTS else m.checkpoint.name


def png_text(m: ExportModel, seed: int, index: int, psi: float) -> dict[str, str]:
    return {"Description": SYNTHETIC_NOTE, "Software": "brainlib export", "Synthetic": "true",
            "Class": m.class_name, "Source": f"{checkpoint_label(m)} sha256:{m.sha256}",
            "Seed": str(seed), "Index": str(index), "Truncation": f"{psi:g}"}


def write_class(m: ExportModel, root: Path, n_train: int, n_test: int, seed: int, psi: float,
                noise_mode: str, bar) -> list[dict]:
    """Write one class's PNGs under root/{train,test}/<class>/; return their manifest rows."""

    s = class_seed(seed, m.class_name)
    n = n_train + n_test
    rows = []
    for lo in range(0, n, BATCH_SIZE):
        b = min(BATCH_SIZE, n - lo)
        images = to_uint8(sample_images(m.G, b, seed=s, class_name=m.class_name if m.conditional else None,
                                        psi=psi, batch_size=BATCH_SIZE, noise_mode=noise_mode, start=lo))
        for i, image in enumerate(images, start=lo):
            split = "train" if i < n_train else "test"
            rel = f"{split}/{m.class_name}/syn_{m.class_name}_{i:05d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(png_bytes(image, text=png_text(m, s, i, psi)))
            rows.append({"file": rel, "class": m.class_name, "split": split, "seed": s, "index": i,
                         "truncation": f"{psi:g}", "checkpoint": checkpoint_label(m), "checkpoint_sha256": m.sha256})
        bar.update(b)
    return rows


def manifest_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def export_dataset(runs: list[str] | str, out: str | Path, n: int, *, test_fraction: float = 0.2, seed: int = 0,
                   psi: float = 1.0, noise_mode: str = "random", out_root: str | Path = DEFAULT_OUT_ROOT,
                   progress: bool = True, snapshot: str = "latest") -> Path:
    """Write the synthetic dataset described in the module docstring and return its folder, from
    each run's latest checkpoint or (`snapshot="best"`) its best snapshot. Everything is checked
    (the disk's free space too) before anything is written."""

    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    out = Path(out)
    n_train, n_test = split_sizes(n, test_fraction)
    check_psi(psi)
    check_seed(seed)
    models = load_models([str(r) for r in runs], out_root, snapshot)
    side = trained_res(next(iter(models.values())).G)  # load_models checked that every run has it
    check_free_space(out, n * len(models) + 2, png_size_bound(side, text_bytes=1024))
    with new_folder(out) as tmp, progress_bar(total=n * len(models), desc=f"export {out.name}", unit="img",
                                              disable=not progress) as bar:
        rows = []
        for m in models.values():
            rows += write_class(m, tmp, n_train, n_test, seed, psi, noise_mode, bar)
        (tmp / "manifest.csv").write_text(manifest_csv(rows), encoding="utf-8")
        sheet = datasheet(models, n_train=n_train, n_test=n_test, seed=seed, psi=psi, noise_mode=noise_mode,
                          out_root=Path(out_root))
        (tmp / "DATASHEET.md").write_text(sheet, encoding="utf-8")
    return out


# ----------------------------------------------------------------------
# The datasheet

def find_evaluation(m: ExportModel, out_root: Path) -> tuple[Path, dict] | None:
    """The eval.json that judged this run: in its run folder (eval-best.json first for a best
    snapshot), else in a batch folder under out_root whose report lists the run."""
    run_dir = RunDir.of_checkpoint(m.checkpoint)
    candidates = list(dict.fromkeys([run_dir.eval_report(snapshot=m.snapshot), run_dir.eval_report()]))
    candidates += eval_reports(out_root)
    for path in candidates:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if path.parent == run_dir.path or m.run in report.get("runs", []) or run_dir.name in report.get("runs", []):
            return path, report
    return None


def training_data(cfg: RunConfig) -> tuple[str, str]:
    """(name, size) of the data a run trained on, counted from the files on disk."""

    if cfg.data_root is None:
        root = project_root() / "data" / "phantom" / "AD_NC"
        name = ("the embedded phantom dataset: AD-like and NC-like axial slices made from the MNI ICBM152 "
                "2009a templates with simulated atrophy (brainlib/phantom.py)")
    else:
        root = Path(cfg.data_root)
        name = f"the images under {root}"
    splits = "every split" if cfg.splits is None else "split " + "+".join(cfg.splits)
    try:
        entries, _, _ = discover(root, classes=cfg.classes, class_dirs=cfg.class_dirs, splits=cfg.splits)
    except DataError as e:
        return name, f"not counted ({e})"
    counts = {c: sum(e.label == CLASS_LABELS[c] for e in entries) for c in cfg.classes}
    if cfg.max_images is not None:
        counts = {c: min(v, cfg.max_images) for c, v in counts.items()}
    return name, ", ".join(f"{c} {v} files" for c, v in counts.items()) + f" ({splits})"


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def evaluation_section(models: dict[str, ExportModel], out_root: Path) -> list[str]:
    seen: dict[str, tuple[Path, dict]] = {}
    for m in models.values():
        found = find_evaluation(m, out_root)
        if found is not None:
            seen.setdefault(str(found[0].resolve()), found)
    if not seen:
        return ["No evaluation was found (no eval.json in the run folders or batch folders). Run "
                f"`brainlib evaluate --model {' '.join(dict.fromkeys(m.run for m in models.values()))}"
                f"{snapshot_option(models)}` and export "
                "again to have the figures here. Until then nothing is known about these images' quality.", ""]
    lines = []
    for path, report in seen.values():
        lines += [f"From `{path.parent.name}/{path.name}` (runs {', '.join(report.get('runs', []))}, "
                  f"{report.get('n_per_class')} generated images per class, {report.get('res')} px). "
                  "The floor is the same metric for real held-out images against the real training images; "
                  "ratio = generated / floor.", ""]
        evaluated = [c.get("images_seen") for c in report.get("fingerprint", {}).get("checkpoints", [])]
        exported = [m.meta.get("images_seen") for m in models.values()]
        if evaluated and set(evaluated) != set(exported):
            lines += [f"**Caution**: the evaluated checkpoints had seen {evaluated} images, the exported ones "
                      f"{sorted(set(exported))}: these figures describe another checkpoint of the same run.", ""]
        floor = report.get("floor", {})
        if floor.get("optimistic"):
            lines += [f"Note: {floor.get('note')}", ""]
        lines += ["| metric | class | generated | floor | ratio | better |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['class']} | {_fmt(r['generated'])} | {_fmt(r['floor'])} | "
                  f"{_fmt(r['ratio'])} | {r['better']} |" for r in report.get("table", [])]
        lines.append("")
    return lines


def snapshot_option(models: dict[str, ExportModel]) -> str:
    """` --snapshot best` when the models are best snapshots, else nothing (the default, latest)."""
    snapshot = next(iter(models.values())).snapshot
    return "" if snapshot == "latest" else f" --snapshot {snapshot}"


def model_kinds(models: dict[str, ExportModel]) -> str:
    return " and ".join(sorted({"diffusion model" if m.cfg.diffusion else "StyleGAN" for m in models.values()}))


def diffusion_sampling(models: dict[str, ExportModel]) -> str:
    """The DDIM steps and guidance of the diffusion models among `models` (they ignore psi and noise mode)."""
    settings = sorted({(m.G.steps, m.G.guidance) for m in models.values() if m.cfg.diffusion})
    return "".join(f"; diffusion: {steps} DDIM steps, guidance {w:g}" for steps, w in settings)


def datasheet(models: dict[str, ExportModel], *, n_train: int, n_test: int, seed: int, psi: float,
              noise_mode: str, out_root: Path) -> str:
    """DATASHEET.md: what the images are, where they came from, how good they are, what not to do."""
    runs = list(dict.fromkeys(m.run for m in models.values()))
    res = next(iter(models.values())).meta.get("res")
    lines = ["# Synthetic brain MRI slices: datasheet", "",
             f"**These images are synthetic.** A generative model ({model_kinds(models)}, trained with brainlib) "
             "made every one; none is a scan of a person. Each PNG says so in its metadata (tEXt `Synthetic: true` and "
             "`Description`).", "",
             "## Intended use", "",
             "- Research on generative models and on data augmentation for AD/NC classifiers.",
             "- **Never diagnosis**, clinical decisions or any claim about a real patient. The model learned "
             "what its training set shows, including its biases and artefacts, and can make anatomy that "
             "does not occur.",
             "- Keep the synthetic images apart from real ones: `manifest.csv` lists every file.", "",
             "## Contents", "",
             f"- Classes: {', '.join(models)}; {n_train} training and {n_test} test images per class, "
             f"{res} x {res} px greyscale PNG, in ADNI's layout (`train/AD`, `train/NC`, `test/AD`, `test/NC`).",
             f"- Sampling: seed {seed} (class seed = 2 x seed + label, NC = 0, AD = 1), truncation psi = {psi:g}, "
             f"noise mode {noise_mode}{diffusion_sampling(models)}.",
             f"- Made by: `brainlib export --model {' '.join(runs)} --n {n_train + n_test} "
             f"--test-fraction {n_test / (n_train + n_test):g} --seed {seed} --truncation {psi:g}"
             f"{snapshot_option(models)}"
             f"{'' if noise_mode == 'random' else ' --noise-mode ' + noise_mode}`; the same "
             "command writes the same bytes.", "",
             "## Models", "", "| class | run | checkpoint | sha256 | resolution | images seen | finished |",
             "|---|---|---|---|---|---|---|"]
    for c, m in models.items():
        lines.append(f"| {c} | {m.run} | `{checkpoint_label(m)}` | `{m.sha256}` | {m.meta.get('res')} px | "
                     f"{m.meta.get('images_seen')} | {m.meta.get('finished')} |")
    lines += ["", "## Training data", ""]
    for run in runs:
        cfg = next(m.cfg for m in models.values() if m.run == run)
        name, size = training_data(cfg)
        lines.append(f"- {run}: {name}; {size}.")
    lines += ["", "## Evaluation", ""] + evaluation_section(models, out_root)
    return "\n".join(lines).rstrip() + "\n"
