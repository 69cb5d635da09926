"""The command line: `sgan train | sweep | eval | predict | report | suggest-labels`. Bad input
ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import FIELDS, Config, read_config_file, resolve
from .distributed import ranks_from_env
from .errors import SganError
from .evaluate import TrainedClassifier, write_predictions, write_submission
from .report import format_table, write_html_report
from .run import RunFolder, SuggestFolder, SweepFolder, default_run_path
from .suggest import suggest_labels
from .sweep import SWEEP_KEYS, Sweep, run_sweep
from .trainer import Interrupted, pick_device, train

def _parse_pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def help_text(f: dataclasses.Field) -> str:
    """A field's help from its metadata, with its default."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if default is None or default == {}:
        return f.metadata["help"]
    shown = ("on" if default else "off") if isinstance(default, bool) else \
        " ".join(map(str, default)) if isinstance(default, list) else default
    return f"{f.metadata['help']} (default: {shown})"


def add_flags(parser: argparse.ArgumentParser, fields: list[dataclasses.Field], *, dest_prefix: str = "") -> None:
    """One flag per dataclass field, its help from the field; only flags given on the command
    line appear in the parsed arguments."""
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).removesuffix(" | None")
        kw: dict[str, Any] = {"dest": dest_prefix + f.name, "default": argparse.SUPPRESS, "help": help_text(f)}
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif kind.startswith("list["):
            parser.add_argument(flag, nargs="+", type=int if kind == "list[int]" else str, **kw)
        elif kind.startswith("dict"):
            parser.add_argument(flag, action="append", type=_parse_pair, metavar="NAME=FILE", **kw)
        else:
            parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), **kw)


def add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    add_flags(parser, [f for f in FIELDS.values() if f.name not in skip])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the SGAN and its supervised twin, print the table")
    train.add_argument("--config", help="a .toml or .json file of config keys")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last checkpoint")
    add_config_flags(train)
    sw = sub.add_parser("sweep", help="label budgets x unlabeled sources x seeds, all methods; tables and a plot")
    sw.add_argument("--config", help="a .toml or .json file of config keys, with an optional [sweep] table "
                    "of budgets, seeds, sources, workers, and [sweep.per_source.SOURCE] tables of config keys for one source's cells")
    add_flags(sw, [f for f in dataclasses.fields(Sweep) if f.name not in ("base", "per_source")], dest_prefix="sweep_")
    add_config_flags(sw, skip=("n_labeled", "seed", "unlabeled", "out"))
    ev = sub.add_parser("eval", help="accuracy of a trained run on a labeled file")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--data", required=True, help="labeled file (CSV, IDX, NPZ)")
    ev.add_argument("--method", nargs="+", help="methods to evaluate (default: all in the run)")
    pr = sub.add_parser("predict", help="predict a file (Kaggle id,label CSV) or an image folder (path,label,confidence)")
    pr.add_argument("run", help="run folder")
    pr.add_argument("--data", required=True, help="images to label: e.g. Kaggle test.csv, or a folder of images")
    pr.add_argument("--out", required=True, help="CSV to write")
    pr.add_argument("--method", default="sgan", help="which trained classifier (default: sgan)")
    sg = sub.add_parser("suggest-labels", help="propose which images to label, before any label exists")
    sg.add_argument("--config", help="a .toml or .json file of config keys (as for train)")
    sg.add_argument("--budget", type=int, required=True, help="how many images to label")
    sg.add_argument("--strategy", default="representative",
                    help="representative (contrastive features + k-means, default) or random (uniform, the baseline)")
    sg.add_argument("--pretext-iterations", type=int, default=1500,
                    help="contrastive (SimCLR) training steps of 256 image pairs (default 1500)")
    sg.add_argument("--out", dest="suggest_out", default="suggestions", help="folder for picks.csv, picks.png (default suggestions)")
    add_config_flags(sg, skip=("out", "labels_csv"))
    rp = sub.add_parser("report", help="(re)build report.html of a finished run or sweep folder")
    rp.add_argument("folder", help="run or sweep folder")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
    if "eval" in overrides:
        overrides["eval"] = dict(overrides["eval"])
    return overrides


def run_config(args: argparse.Namespace) -> Config:
    """--config file, then flags. A sweep's config file serves one run too: its [sweep] table is
    the sweep's and is left out."""
    values = read_config_file(args.config, section="sweep") if args.config else {}
    values.pop("sweep", None)
    return resolve(values, _overrides(args))


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume:
        if args.config or _overrides(args):
            raise SganError("--resume takes the run's own config; give no other settings")
        out = args.resume
        metrics = train(resume=args.resume)
    else:
        cfg = run_config(args)
        out = cfg.out or str(default_run_path())
        metrics = train(dataclasses.replace(cfg, out=out), overwrite=args.overwrite)
    if not ranks_from_env().main:  # under torchrun rank 0 reports
        return
    print(format_table(metrics))
    print(f"run folder: {out} (open {RunFolder(out).report})")


def cmd_sweep(args: argparse.Namespace) -> None:
    values = read_config_file(args.config, section="sweep") if args.config else {}
    table = values.pop("sweep", {})
    unknown = set(table) - set(SWEEP_KEYS)
    if unknown:
        raise SganError(f"{args.config}: unknown [sweep] key {sorted(unknown)[0]!r}; expected {', '.join(SWEEP_KEYS)}")
    base = {**values, **_overrides(args)}
    resolve(base)  # every key and value checked before any cell starts
    for source, values in table.get("per_source", {}).items():
        if not isinstance(values, dict):
            raise SganError(f"{args.config}: [sweep.per_source.{source}] must be a table of config keys")
        resolve({**base, **values})
    flags = {k.removeprefix("sweep_"): v for k, v in vars(args).items() if k.startswith("sweep_")}
    sweep = Sweep(base=base, **{**table, **flags})  # per_source comes from the config file only
    if sweep.workers < 1:
        raise SganError(f"sweep: workers must be positive, got {sweep.workers}")
    run_sweep(sweep)
    print(SweepFolder(sweep.out).table("val").read_text(), end="")
    print(f"sweep folder: {sweep.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    for method in args.method or RunFolder(args.run).read_config().methods:
        classifier = TrainedClassifier(args.run, method)
        print(f"{method}\t{classifier.accuracy(classifier.read(args.data)):.4f}\t{args.data}")


def cmd_predict(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.is_dir():
        raise SganError(f"{out}: output path is a folder")
    classifier = TrainedClassifier(args.run, args.method)
    images = classifier.read(args.data)
    probabilities = classifier.probabilities(images)
    if images.paths is not None:  # an image folder: path,label,confidence
        write_predictions(out, images, probabilities, classifier.classes)
    else:
        write_submission(out, images, probabilities.argmax(dim=1).tolist())
    print(f"wrote {len(images)} predictions to {out}")


def cmd_suggest(args: argparse.Namespace) -> None:
    cfg = run_config(args)
    if args.pretext_iterations <= 0:
        raise SganError(f"--pretext-iterations must be positive, got {args.pretext_iterations}")
    summary = suggest_labels(cfg, budget=args.budget, out=args.suggest_out, strategy=args.strategy,
                             pretext_iterations=args.pretext_iterations, device=pick_device(cfg.device))
    out = SuggestFolder(args.suggest_out)
    print(f"picked {summary['picked']} of {summary['candidates']} images: fill in the label column of "
          f"{out.picks} (contact sheet: {out.contact_sheet}), then: sgan train --labels-csv {out.picks} ...")


def cmd_report(args: argparse.Namespace) -> None:
    print(f"wrote {write_html_report(args.folder)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "sweep": cmd_sweep, "eval": cmd_eval, "predict": cmd_predict, "report": cmd_report,
         "suggest-labels": cmd_suggest}[args.command](args)
    except SganError as e:
        print(f"sgan: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        if not e.quiet:
            print(f"sgan: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("sgan: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
