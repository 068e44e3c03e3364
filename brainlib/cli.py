"""The `brainlib` command. Argument parsing only: every subcommand calls one
function in the module that owns the work, imported lazily so that `brainlib
train` never needs the notebook stack."""
from __future__ import annotations

import argparse
import json
import sys

from brainlib.config import ConfigError
from brainlib.batch.pipeline import PipelineError


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


def _data(args: argparse.Namespace) -> int:
    if args.data_cmd == "census":
        from brainlib.data import census, format_census
        report = census(args.root, class_dirs=_class_dirs(args.class_dir))
        print(json.dumps(report, indent=2) if args.json else format_census(report))
    else:
        from brainlib.phantom import build_phantom
        out = build_phantom(out=args.out, n_per_class=args.n, severity=args.severity,
                            seed=args.seed, orientation=args.orientation)
        print(f"embedded dataset written to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from brainlib.config import parse_overrides, preset
    overrides = parse_overrides(args.set)
    overrides.update(class_name=args.class_name, run=args.run or f"{args.preset}-{args.class_name}")
    if args.data:
        overrides["data_root"] = args.data
    if args.out_root:
        overrides["out_root"] = args.out_root
    cfg = preset(args.preset, **overrides)  # validated before anything heavy is imported
    from brainlib.train import train
    train(cfg, resume=args.resume)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from brainlib.sampling import generate_to_folder
    out = generate_to_folder(model=args.model, output=args.output, n=args.n, seed=args.seed,
                             class_name=args.class_name, psi=args.truncation, size=args.size,
                             out_root=args.out_root or "outputs")
    print(f"wrote {args.n} images to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from brainlib.eval.evaluate import evaluate
    result_path = evaluate(runs=args.run, n=args.n, out_root=args.out_root or "outputs")
    print(f"wrote {result_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from brainlib.batch.pipeline import run_batch
    summary = run_batch(preset=args.preset, classes=args.classes, conditional=args.conditional,
                        data_root=args.data, name=args.name, out_root=args.out_root or "outputs",
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brainlib", description="Synthetic brain MRI slices with StyleGAN.")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("data", help="inspect a dataset or build the embedded one")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("census", help="count images per split and class, report skipped files")
    c.add_argument("root")
    c.add_argument("--json", action="store_true")
    c.add_argument("--class-dir", action="append", metavar="AD=FOLDER", help="class folder names, e.g. NC=CN")
    ph = dsub.add_parser("phantom", help="build the embedded MNI152-based AD/NC dataset")
    ph.add_argument("--n", type=int, default=2000, help="images per class")
    ph.add_argument("--severity", type=float, default=1.0)
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--orientation", choices=("axial", "sagittal", "coronal"), default="axial")
    ph.add_argument("--out", default=None, help="default: data/phantom")
    d.set_defaults(func=_data)

    t = sub.add_parser("train", help="train a progressive StyleGAN")
    t.add_argument("--preset", default="demo")
    t.add_argument("--class", dest="class_name", default="AD", help="AD, NC or both (conditional)")
    t.add_argument("--run", default=None, help="run name under outputs/ (default: <preset>-<class>)")
    t.add_argument("--data", default=None, help="dataset root (default: the embedded dataset)")
    t.add_argument("--out-root", default=None)
    t.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any RunConfig field")
    t.set_defaults(func=_train)

    g = sub.add_parser("generate", help="write generated PNGs, as the original predict script")
    g.add_argument("--model", required=True, help="run name under outputs/ or a checkpoint path")
    g.add_argument("--output", required=True, help="folder name under generated_images/")
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--class", dest="class_name", default=None, choices=("AD", "NC"))
    g.add_argument("--truncation", type=float, default=1.0, help="psi; 1 = no truncation")
    g.add_argument("--size", type=int, default=None, help="default: the trained size")
    g.add_argument("--out-root", default=None)
    g.set_defaults(func=_generate)

    e = sub.add_parser("evaluate", help="metrics with real-vs-real floors; writes eval.json")
    e.add_argument("--run", nargs="+", required=True,
                   help="one conditional run, an AD and an NC run, or one run of one class")
    e.add_argument("--n", type=int, default=1000, help="generated images per class")
    e.add_argument("--out-root", default=None)
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("run", help="run the numbered notebooks end to end with papermill")
    r.add_argument("--preset", default="demo")
    r.add_argument("--classes", nargs="+", default=["AD", "NC"])
    r.add_argument("--conditional", action="store_true")
    r.add_argument("--data", default=None)
    r.add_argument("--name", default=None)
    r.add_argument("--out-root", default=None)
    r.add_argument("--retrain", action="store_true", help="retrain runs that already finished")
    r.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ConfigError, FileNotFoundError, ValueError, PipelineError) as e:
        print(f"brainlib {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
