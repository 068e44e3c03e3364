"""The `brainlib` command. Argument parsing only: every subcommand calls one
function in the module that owns the work, imported lazily so that `brainlib
train` never needs the notebook stack."""
from __future__ import annotations

import argparse
import errno
import json
import sys

from brainlib.atomic import Terminated, terminate_as_exception
from brainlib.batch.pipeline import PipelineError
from brainlib.config import ConfigError, check_psi, check_seed
from brainlib.rundir import DEFAULT_OUT_ROOT, SNAPSHOTS
from brainlib.runlock import FolderBusyError

# errors of an output that cannot be written, told in one line (other OSErrors keep their traceback)
OUTPUT_ERRORS = {getattr(errno, name): text for name, text in (
    ("ENOSPC", "the disk is full"), ("EDQUOT", "the disk quota is used up"), ("EACCES", "permission denied"),
    ("EPERM", "permission denied"), ("EROFS", "the file system is read-only"),
    ("ENOTDIR", "a part of the path is a file, not a folder"), ("EEXIST", "it already exists"),
    ("EISDIR", "it is a folder")) if hasattr(errno, name)}


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


def _data(args: argparse.Namespace) -> int:
    if args.data_cmd == "census":
        from brainlib.data.census import census, format_census
        report = census(args.root, class_dirs=_class_dirs(args.class_dir))
        print(json.dumps(report, indent=2) if args.json else format_census(report))
    elif args.data_cmd == "colin27":
        from brainlib.data.colin27 import build_colin27
        out = build_colin27(out=args.out, n_per_class=args.n, severity=args.severity, seed=args.seed)
        print(f"Colin27 development set written to {out}")
    else:
        from brainlib.data.phantom import build_phantom
        out = build_phantom(out=args.out, n_per_class=args.n, severity=args.severity,
                            seed=args.seed, orientation=args.orientation)
        print(f"embedded dataset written to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from brainlib.config import parse_overrides, preset, resumed_settings
    given = parse_overrides(args.set)
    if args.class_name:
        given["class_name"] = args.class_name
    if args.data:
        given["data_root"] = args.data
    if args.out_root:
        given["out_root"] = args.out_root
    class_name = args.class_name or "AD"
    run = args.run or f"{args.preset}-{class_name}"
    cfg = preset(args.preset, **{"class_name": class_name, **given, "run": run})  # validated before heavy imports
    if args.resume:  # the run's own settings, with only what this command names changed
        cfg = resumed_settings(cfg, given)
    from brainlib.training.trainer import train
    train(cfg, resume=args.resume)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from brainlib.synthesis.sampling import generate_to_folder
    out = generate_to_folder(model=args.model, output=args.output, n=args.n, seed=args.seed,
                             class_name=args.class_name, psi=args.truncation, size=args.size,
                             out_root=args.out_root, steps=args.steps, guidance=args.guidance,
                             snapshot=args.snapshot)
    print(f"wrote {args.n} images to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from brainlib.eval.evaluate import evaluate
    result_path = evaluate(runs=args.model, n=args.n, out_root=args.out_root, truncation=args.truncation,
                           snapshot=args.snapshot, steps=args.steps, seed=args.seed)
    print(f"wrote {result_path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from brainlib.synthesis.export import export_dataset
    out = export_dataset(args.model, args.out, args.n, test_fraction=args.test_fraction, seed=args.seed,
                         psi=args.truncation, noise_mode=args.noise_mode, out_root=args.out_root,
                         snapshot=args.snapshot)
    print(f"wrote a synthetic dataset to {out} (manifest.csv, DATASHEET.md)")
    return 0


def _project(args: argparse.Namespace) -> int:
    from brainlib.synthesis.projection import project_file
    folder, result = project_file(args.model, args.image, out=args.out, class_name=args.class_name,
                                  slice_index=args.slice, steps=args.steps, per_layer=args.per_layer,
                                  optimise_noise=args.noise, seed=args.seed, out_root=args.out_root)
    print(result.verdict())
    print(f"wrote {folder}")
    return 0


def _counterfactual(args: argparse.Namespace) -> int:
    from brainlib.synthesis import counterfactual
    out_root = args.out_root
    if args.agreement:
        result, path = counterfactual.run_agreement(args.model, n=args.n, seed=args.seed, steps=args.steps,
                                                    out_root=out_root)
        print(counterfactual.format_agreement(result))
        print(f"wrote {path} and {path.with_suffix('.png')}")
        return 0
    path, note = counterfactual.strip_file(args.model, image=args.image, seed=args.seed, strengths=args.strengths,
                                           out=args.out, steps=args.steps, per_layer=args.per_layer,
                                           class_name=args.class_name, out_root=out_root)
    print(note)
    print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from brainlib.batch.pipeline import run_batch
    summary = run_batch(preset=args.preset or ["demo"], classes=args.classes, conditional=args.conditional,
                        data_root=args.data, name=args.name, out_root=args.out_root,
                        retrain=args.retrain)
    print(f"summary: {summary}")
    return 0


def _class_dirs(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    dirs = {}
    for p in pairs:
        label, _, folder = p.partition("=")
        if label not in ("AD", "NC") or not folder:
            raise UserError(f"--class-dir {p!r} must look like AD=<folder> or NC=<folder>")
        dirs[label] = folder
    return {"AD": "AD", "NC": "NC", **dirs}


def _out_root_option(parser: argparse.ArgumentParser, default: str | None = DEFAULT_OUT_ROOT) -> None:
    parser.add_argument("--out-root", default=default,
                        help=f"the folder holding the runs (default: {DEFAULT_OUT_ROOT})")


def _snapshot_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--snapshot", choices=SNAPSHOTS, default="latest",
                        help="latest: the newest checkpoint; best: the texture probe's best EMA weights" + note)


def _psi(text: str) -> float:
    try:
        return check_psi(float(text), "psi")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1 (got {text!r})") from None


def _seed(text: str) -> int:
    try:
        return check_seed(int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more (got {text!r})") from None


PSI_HELP = "psi, from 0 to 1: 1 = no truncation, 0 = the average image"


def _add_data(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("data", help="inspect a dataset or build the embedded one (or the Colin27 one)")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("census", help="count images per split and class, report skipped files")
    c.add_argument("root")
    c.add_argument("--json", action="store_true")
    c.add_argument("--class-dir", action="append", metavar="AD=FOLDER", help="class folder names, e.g. NC=CN")
    ph = dsub.add_parser("phantom", help="build the embedded MNI152-based AD/NC dataset")
    ph.add_argument("--n", type=int, default=2000, help="images per class")
    ph.add_argument("--severity", type=float, default=1.0)
    ph.add_argument("--seed", type=_seed, default=0)
    ph.add_argument("--orientation", choices=("axial", "sagittal", "coronal"), default="axial")
    ph.add_argument("--out", default=None, help="default: data/phantom")
    co = dsub.add_parser("colin27", help="build the second development set: AD/NC slices of a real scan "
                         "(Colin27, from Debian's mricron-data) through simulated scanners")
    co.add_argument("--n", type=int, default=2000, help="images per class")
    co.add_argument("--severity", type=float, default=1.0)
    co.add_argument("--seed", type=_seed, default=0)
    co.add_argument("--out", default=None, help="default: data/colin27")
    d.set_defaults(func=_data)


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a progressive StyleGAN, or a diffusion model (diffusion-* presets)")
    t.add_argument("--preset", default="demo")
    t.add_argument("--class", dest="class_name", default=None,
                   help="AD, NC or both (conditional); default AD, or the resumed run's")
    t.add_argument("--run", default=None, help="run name under outputs/ (default: <preset>-<class>)")
    t.add_argument("--data", default=None, help="dataset root (default: the embedded dataset)")
    _out_root_option(t, default=None)  # None: the preset's (or --set out_root=...)
    t.add_argument("--resume", action="store_true",
                   help="continue from the run's latest checkpoint with the settings it saved; "
                        "--set and --data change only what they name")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any RunConfig field")
    t.set_defaults(func=_train)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="write generated PNGs, as the original predict script")
    g.add_argument("--model", required=True, help="run name under outputs/ or a checkpoint path")
    g.add_argument("--output", required=True, help="folder name under generated_images/")
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--seed", type=_seed, default=0)
    g.add_argument("--class", dest="class_name", default=None, choices=("AD", "NC"))
    g.add_argument("--truncation", type=_psi, default=1.0, help=PSI_HELP)
    g.add_argument("--size", type=int, default=None, help="default: the trained size")
    g.add_argument("--steps", type=int, default=None, help="diffusion runs: DDIM steps (default: the run's)")
    g.add_argument("--guidance", type=float, default=None, help="diffusion runs: guidance scale (default: the run's)")
    _snapshot_option(g)
    _out_root_option(g)
    g.set_defaults(func=_generate)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="metrics with real-vs-real floors; writes eval.json")
    runs = e.add_mutually_exclusive_group(required=True)
    runs.add_argument("--model", nargs="+", help="one conditional run, an AD and an NC run, or one run of one class")
    runs.add_argument("--run", nargs="+", dest="model", help=argparse.SUPPRESS)  # its name before --model
    e.add_argument("--n", type=int, default=1000, help="generated images per class")
    e.add_argument("--truncation", type=_psi, default=1.0,
                   help=PSI_HELP + "; below 1 writes eval-psi<psi>.json beside eval.json (precision against recall)")
    _snapshot_option(e, " (best: writes eval-best.json beside eval.json)")
    e.add_argument("--steps", type=int, default=None,
                   help="diffusion runs: DDIM steps other than the run's; writes eval-steps<k>.json beside eval.json")
    e.add_argument("--seed", type=_seed, default=0,
                   help="the evaluation's draw (images, subsets, SWD directions, classifiers); other than 0 writes "
                        "eval-seed<s>.json beside eval.json, so two seeds show the evaluation's own spread")
    _out_root_option(e)
    e.set_defaults(func=_evaluate)


def _add_export(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="a synthetic dataset in ADNI's layout, with manifest.csv and DATASHEET.md")
    x.add_argument("--model", nargs="+", required=True, help="one conditional run, or an AD run and an NC run")
    x.add_argument("--out", required=True, help="a new folder (refused if it exists with files)")
    x.add_argument("--n", type=int, required=True, help="images per class (train + test)")
    x.add_argument("--test-fraction", type=float, default=0.2, help="share of each class in test/")
    x.add_argument("--seed", type=_seed, default=0)
    x.add_argument("--truncation", type=_psi, default=1.0, help=PSI_HELP)
    x.add_argument("--noise-mode", choices=("random", "const", "none"), default="random")
    _snapshot_option(x)
    _out_root_option(x)
    x.set_defaults(func=_export)


def _add_project(sub: argparse._SubParsersAction) -> None:
    pj = sub.add_parser("project", help="find the latent that reproduces a real slice")
    pj.add_argument("--model", required=True, help="run name under outputs/ or a checkpoint path")
    pj.add_argument("--image", required=True, help="a 2D slice (PNG, JPEG, TIFF, BMP) or a NIfTI volume with --slice")
    pj.add_argument("--slice", type=int, default=None, help="slice index, for a volume")
    pj.add_argument("--class", dest="class_name", default=None, choices=("AD", "NC"),
                    help="start from this class's mean w (conditional models; default: both classes' mean)")
    pj.add_argument("--steps", type=int, default=400)
    pj.add_argument("--per-layer", action="store_true", help="one w per style input")
    pj.add_argument("--noise", action="store_true", help="optimise the noise maps too")
    pj.add_argument("--seed", type=_seed, default=0)
    pj.add_argument("--out", default=None, help="default: <run>/projections/<image name>")
    _out_root_option(pj)
    pj.set_defaults(func=_project)


def _add_counterfactual(sub: argparse._SubParsersAction) -> None:
    cf = sub.add_parser("counterfactual", help="NC-to-AD edits of a slice by a conditional model, "
                                               "or (--agreement) how they match the real AD-NC difference")
    cf.add_argument("--model", required=True,
                    help="a conditional run (trained with --class both): a StyleGAN or a diffusion model")
    cf.add_argument("--image", default=None,
                    help="a real slice to edit (a StyleGAN projects it first; default: sample --seed)")
    cf.add_argument("--seed", type=_seed, default=0, help="the NC sample to edit; with --agreement, the sampling seed")
    cf.add_argument("--class", dest="class_name", default=None, choices=("AD", "NC"),
                    help="the slice's class (default NC); with --image, where a StyleGAN's projection starts "
                         "(default: both classes' mean) and the label a diffusion model inverts under")
    cf.add_argument("--strengths", type=float, nargs="+", default=None,
                    help="StyleGAN: multiples of the NC-to-AD direction in W (default 0 0.5 1 1.5 2); diffusion: "
                         "shares of the noise path, 0 to 1 (default 0 0.25 0.5 0.75 1)")
    cf.add_argument("--steps", type=int, default=None,
                    help="StyleGAN: projection steps, with --image (default 400); diffusion: DDIM steps of the "
                         "whole path (default: the run's)")
    cf.add_argument("--per-layer", action="store_true", help="projection with one w per style input")
    cf.add_argument("--out", default=None, help="the figure (default: <run>/counterfactuals/<name>.png)")
    cf.add_argument("--agreement", action="store_true",
                    help="print the correlation of the counterfactual and real AD-NC difference maps")
    cf.add_argument("--n", type=int, default=200,
                    help="NC samples averaged, with --agreement (a diffusion-demo run: about 2 s each on one thread)")
    _out_root_option(cf)
    cf.set_defaults(func=_counterfactual)


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the numbered notebooks end to end with papermill")
    r.add_argument("--preset", action="append", metavar="PRESET",
                   help="the preset (default: demo); repeat it for a batch of several, e.g. --preset demo "
                        "--preset diffusion-demo: their trainings run in the order given, each preset's "
                        "classes in the order of --classes, two side by side, then 03 and 04 once per preset, "
                        "and one report puts the presets side by side")
    r.add_argument("--classes", nargs="+", default=["AD", "NC"])
    r.add_argument("--conditional", action="store_true")
    r.add_argument("--data", default=None)
    r.add_argument("--name", default=None,
                   help="the batch folder under --out-root (default: the preset, or the presets joined by +); "
                        "runs are <name>-<class> for one preset, <preset>-<class> for several "
                        "(<name>-<preset>-<class> when --name is given)")
    _out_root_option(r)
    r.add_argument("--retrain", action="store_true", help="retrain runs that already finished")
    r.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brainlib", description="Synthetic brain MRI slices from StyleGANs and diffusion.")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    _add_train(sub)
    _add_generate(sub)
    _add_evaluate(sub)
    _add_export(sub)
    _add_project(sub)
    _add_counterfactual(sub)
    _add_run(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_exception():  # SIGTERM cleans up as Ctrl-C does
            return args.func(args)
    except (UserError, ConfigError, FileNotFoundError, ValueError, PipelineError, FolderBusyError) as e:
        return _error(args, e)
    except OSError as e:
        if e.errno not in OUTPUT_ERRORS:
            raise
        return _error(args, f"{e.filename or 'an output file'}: {OUTPUT_ERRORS[e.errno]}")
    except KeyboardInterrupt as e:  # a batch says which notebooks it cut short
        print(f"brainlib {args.cmd}: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"brainlib {args.cmd}: stopped by SIGTERM", file=sys.stderr)
        return e.code


def _error(args: argparse.Namespace, message: object) -> int:
    print(f"brainlib {args.cmd}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
