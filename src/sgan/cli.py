"""The command line: `sgan train | sweep | eval | predict | export | report | suggest-labels | label`. Bad input
ends in one line on stderr and exit code 2. Commands import torch when they run, so that help
and argument errors come back at once."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from . import __version__
from .config import FIELDS, GROUPS, Config, Suggestion, read_config_file, resolve, run_config_file
from .errors import Interrupted, SganError, on_signals, pause_point, signals_deferred
from .files import check_target
from .run import RunFolder, SuggestFolder, SweepFolder
from .sweep import Sweep

if TYPE_CHECKING:
    from .evaluate import Classifier

DESCRIPTION = """Train an image classifier from a few labeled images plus many unlabeled ones with a
Semi-Supervised GAN, beside a supervised twin of the same network on the same labels."""
# the config keys suggest-labels reads: the pool, its split and the network it trains
SUGGEST_KEYS = ("data", "preset", "val_data", "val_fraction", "val_per_class", "test_per_class", "num_classes",
                "image_size", "channels", "loader_workers", "model", "width", "resnet_stem", "z_dim", "generator_width",
                "seed", "threads", "device", "amp", "channels_last", "progress")
STANDARDIZE_HELP = ("a test-time adaptation that looks at {what}'s images: move them from their own pixel mean/std, "
                    "computed once over all of them, to the training pool's (the numbers are printed)")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, fields: list[dataclasses.Field], *, dest_prefix: str = "") -> None:
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


def add_config_flags(parser: argparse.ArgumentParser, keys: Sequence[str]) -> None:
    """Config keys' flags, in one titled group per kind of setting (config.GROUPS)."""
    for group, members in GROUPS.items():
        if chosen := [FIELDS[k] for k in members if k in keys]:
            add_flags(parser.add_argument_group(f"{group} settings"), chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sgan", description=DESCRIPTION,
                    epilog="Bad input ends in one line on stderr and exit code 2. 'sgan COMMAND --help' lists "
                           "a command's flags.")
    parser.add_argument("--version", action="version", version=f"sgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="train the SGAN beside its supervised twin and fixmatch, print the table")
    train.add_argument("--config", help="a .toml or .json file of config keys")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last checkpoint")
    train.add_argument("--dry-run", action="store_true", help="print the resolved plan (data, model and its "
                       "parameters, methods, steps, device, run folder) and train nothing")
    add_config_flags(train, list(FIELDS))
    sw = sub.add_parser("sweep", help="label budgets x unlabeled sources x seeds, all methods; tables and a plot")
    sw.add_argument("--config", help="a .toml or .json file of config keys, with an optional [sweep] table "
                    "of budgets, seeds, sources, workers, and [sweep.per_budget.N] / [sweep.per_source.SOURCE] / "
                    "[sweep.per_cell.nN_SOURCE] tables of config keys for one budget's / source's / both's cells")
    tables = ("base", "per_source", "per_budget", "per_cell")
    add_flags(sw, [f for f in dataclasses.fields(Sweep) if f.name not in tables], dest_prefix="sweep_")
    add_config_flags(sw, [k for k in FIELDS if k not in ("n_labeled", "seed", "unlabeled", "out")])
    ev = sub.add_parser("eval", help="accuracy of a trained run on a labeled file")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--data", required=True, help="labeled file (CSV, IDX, NPZ) or image folder")
    ev.add_argument("--method", nargs="+", help="methods to evaluate (default: all in the run)")
    ev.add_argument("--standardize", action="store_true", help=STANDARDIZE_HELP.format(what="--data"))
    pr = sub.add_parser("predict", help="predict a file (Kaggle id,label CSV) or an image folder (path,label,confidence)")
    pr.add_argument("run", help="run folder")
    pr.add_argument("--data", required=True, help="images to label: e.g. Kaggle test.csv, or a folder of images")
    pr.add_argument("--out", required=True, help="CSV to write")
    pr.add_argument("--method", default="sgan", help="which trained classifier (default: sgan)")
    pr.add_argument("--standardize", action="store_true", help=STANDARDIZE_HELP.format(what="--data"))
    ex = sub.add_parser("export", help="one trained classifier as ONNX, to serve without sgan or torch")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--method", default="sgan", help="which trained classifier (default: sgan)")
    ex.add_argument("--format", default="onnx", choices=("onnx",), help="file format (default: onnx)")
    ex.add_argument("--out", help="file to write (default: RUN/<method>.onnx)")
    ex.add_argument("--standardize-to", metavar="FILE", help=STANDARDIZE_HELP.format(what="FILE")
                    + "; the two numbers are fixed inside the graph")
    sg = sub.add_parser("suggest-labels", help="propose which images to label, before any label exists")
    sg.add_argument("--config", help="a .toml or .json file of config keys (as for train)")
    sg.add_argument("--budget", type=int, required=True, help="how many images to label")
    add_flags(sg, list(dataclasses.fields(Suggestion)))
    sg.add_argument("--out", dest="suggest_out", default="suggestions", help="folder for picks.csv, picks.png (default suggestions)")
    add_config_flags(sg, SUGGEST_KEYS)
    lb = sub.add_parser("label", help="label suggest-labels' picks in a page in the browser, one image at a time")
    lb.add_argument("folder", help="the --out folder of sgan suggest-labels (picks.csv, reserve.csv, images/)")
    lb.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    lb.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1; "
                    "nothing else is allowed)")
    lb.add_argument("--classes", nargs="+", metavar="NAME", help="class names, where the pool names none")
    lb.add_argument("--no-browser", action="store_true", help="print the address, open no browser")
    rp = sub.add_parser("report", help="(re)build report.html of a finished run or sweep folder")
    rp.add_argument("folder", help="run or sweep folder")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
    if "eval" in overrides:
        overrides["eval"] = dict(overrides["eval"])
    return overrides


def run_config(args: argparse.Namespace) -> Config:
    """--config file (a sweep's serves one run too), then flags."""
    return resolve(run_config_file(args.config) if args.config else {}, _overrides(args))


def cmd_train(args: argparse.Namespace) -> None:
    from .distributed import ranks_from_env
    from .plan import make_plan
    from .report import format_table
    from .trainer import train

    if args.resume:
        if args.config or _overrides(args) or args.dry_run:
            raise SganError("--resume takes the run's own config; give no other settings")
        out = args.resume
        metrics = train(resume=args.resume)
    else:
        plan = make_plan(run_config(args))
        if args.dry_run:
            print(plan.describe())
            return
        out = plan.config.out
        metrics = train(plan, overwrite=args.overwrite)
    if not ranks_from_env().main:  # under torchrun rank 0 reports
        return
    print(format_table(metrics))
    print(f"run folder: {out} (open {RunFolder(out).report})")


def cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import run_sweep

    values = read_config_file(args.config, section="sweep") if args.config else {}
    flags = {k.removeprefix("sweep_"): v for k, v in vars(args).items() if k.startswith("sweep_")}
    sweep = Sweep.from_config(values, where=args.config or "command line", flags=flags, overrides=_overrides(args))
    run_sweep(sweep)
    print(SweepFolder(sweep.out).table("val").read_text(), end="")
    print(f"sweep folder: {sweep.out}")


def standardized(classifier: "Classifier", images: Any, wanted: bool) -> "Classifier":
    """The classifier, or with `wanted` the one standardizing from `images`' statistics, said on stderr."""
    if not wanted:
        return classifier
    adapted = classifier.standardized_to(images)
    (mean, std), (to_mean, to_std) = adapted.set_stats, adapted.input_stats
    print(f"sgan: {classifier.method}: standardizing from the images' pixel mean {mean:.4f}, std {std:.4f} "
          f"(model range) to the training pool's {to_mean:.4f}, {to_std:.4f}", file=sys.stderr)
    return adapted


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import load
    from .report import text_table

    rows = [["method", "data", "images", "accuracy" + (" (standardized to the pool)" if args.standardize else "")]]
    for method in args.method or RunFolder(args.run).read_config().methods:
        classifier = load(args.run, method=method)
        images = classifier.read(args.data)
        classifier = standardized(classifier, images, args.standardize)
        rows.append([method, args.data, str(len(images)), f"{classifier.accuracy(images):.4f}"])
    print(text_table(rows))


def cmd_predict(args: argparse.Namespace) -> None:
    from .evaluate import load, write_predictions, write_submission

    out = Path(args.out)
    check_target(out)
    classifier = load(args.run, method=args.method)
    images = classifier.read(args.data)
    probabilities = standardized(classifier, images, args.standardize).predict_proba(images)
    if images.paths is not None:  # an image folder: path,label,confidence
        write_predictions(out, images, probabilities, classifier.classes)
    else:
        write_submission(out, images, probabilities.argmax(axis=1).tolist())
    print(f"wrote {len(images)} predictions to {out}")


def cmd_export(args: argparse.Namespace) -> None:
    from .evaluate import load

    classifier = load(args.run, method=args.method)
    out = Path(args.out) if args.out else RunFolder(args.run).onnx(args.method)
    check_target(out)
    if args.standardize_to:
        classifier = standardized(classifier, classifier.read(args.standardize_to), True)
    classifier.export_onnx(out)
    print(f"wrote {out}: input 'images', float32 (N, {classifier.channels}, {classifier.image_size}, "
          f"{classifier.image_size}) pixel values 0..255; output 'probabilities' (N, {classifier.num_classes})")


def cmd_suggest(args: argparse.Namespace) -> None:
    import torch

    from .suggest import suggest_labels
    from .plan import pick_device

    cfg = run_config(args)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    chosen = {f.name: getattr(args, f.name) for f in dataclasses.fields(Suggestion) if hasattr(args, f.name)}
    summary = suggest_labels(cfg, budget=args.budget, out=args.suggest_out, **chosen, device=pick_device(cfg.device))
    out = SuggestFolder(args.suggest_out)
    print(f"picked {summary['picked']} of {summary['candidates']} images ({summary['reserve']} more in reserve): "
          f"label them in a browser with: sgan label {out} (or fill in the label column of {out.picks}; "
          f"contact sheet: {out.contact_sheet}), then: {out.train_command(summary['train_flags'])}")


def cmd_label(args: argparse.Namespace) -> None:
    from .label import label_server, open_browser

    with SuggestFolder(args.folder).in_use():  # one server per folder: two would overwrite each other's answers
        server = label_server(args.folder, host=args.host, port=args.port, classes=args.classes)
        try:
            state = server.labeling.state()
            print(f"labeling {args.folder}: {state['labeled']} of {state['budget']} labeled; open {server.url} "
                  "(Ctrl-C stops; every answer is saved as it is given)", flush=True)
            if not args.no_browser:
                open_browser(server.url)
            server.serve_forever()
        finally:
            server.server_close()


def cmd_report(args: argparse.Namespace) -> None:
    from .report import write_html_report

    print(f"wrote {write_html_report(args.folder)}")


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "eval": cmd_eval, "predict": cmd_predict, "export": cmd_export,
            "report": cmd_report, "suggest-labels": cmd_suggest, "label": cmd_label}


def stop_now(signum: int, frame: Any) -> NoReturn:
    """SIGINT and SIGTERM stop a command at once, with one line; the training loop sets its own
    handler for the time it runs, to finish the step and checkpoint first."""
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with on_signals(stop_now):
            with signals_deferred():
                import torch  # noqa: F401  every command's heavy import, where a signal must not land
            pause_point("started")
            COMMANDS[args.command](args)
    except SganError as e:
        print(f"sgan: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file sgan could not read or write that no check foresaw
        print(f"sgan: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        if not e.quiet:
            print(f"sgan: {e}", file=sys.stderr)
        return 128 + e.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
