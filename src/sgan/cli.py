"""`sgan train | eval | predict`: bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import FIELDS, Config, load_run_config, read_config_file, resolve
from .distributed import ranks_from_env
from .errors import SganError
from .evaluate import TrainedClassifier, write_predictions, write_submission
from .report import format_table, write_html_report
from .sweep import Sweep, run_sweep
from .suggest import suggest_labels
from .trainer import Interrupted, default_run_dir, pick_device, train

SWEEP_KEYS = ("budgets", "seeds", "sources", "workers", "per_source")

HELP = {
    "data": "labeled pool: Kaggle CSV, IDX (.idx3-ubyte[.gz]), .npz, an image folder (one subfolder per "
            "class), a Kaggle folder (train.csv, test.csv, Dig-MNIST.csv), or the bundled 'sklearn-digits'",
    "val_data": "a separate labeled validation file (instead of a split of --data)",
    "unlabeled": "unlabeled source: a file or image folder, the name of an --eval set (transductive), or 'test'",
    "eval": "extra evaluation set NAME=FILE (repeatable), e.g. holdout=Dig-MNIST.csv",
    "test_data": "images to label for a submission, e.g. Kaggle test.csv (a Kaggle folder sets it)",
    "submit": "write submission.csv for --test-data from the method best on validation",
    "preset": "a protocol from BENCHMARK.md: kannada-10k or pets-12k",
    "n_labeled": "class-balanced labeled budget (default 100)",
    "labels_csv": "a filled-in picks.csv from sgan suggest-labels: these images, with these labels, are the labeled set",
    "val_fraction": "stratified validation share of --data (default 0.2)",
    "val_per_class": "validation images per class instead of --val-fraction",
    "test_per_class": "test images per class held out of --data, scored once at the end (default 0)",
    "channels": "channels image folders are decoded to: 1 or 3 (default 3)",
    "loader_workers": "processes decoding image folders (default 2)",
    "stream": "decode the --unlabeled image folder batch by batch in --loader-workers processes while training "
              "(for folders larger than memory)",
    "model": "digits (28 px notebook pair, default) or resnet18 (ResNet18 from scratch + DCGAN generator)",
    "select": "final (default) or best_val: keep the weights with the best validation accuracy",
    "num_classes": "number of classes K (default: largest label + 1)",
    "image_size": "side length images are resized to (default 28; resnet18: 32, 64, 96, 128 or 224)",
    "methods": "methods side by side: supervised conventional sgan sgan+aug (default: supervised sgan)",
    "iterations": "training steps per method (default 1500)",
    "batch_size": "labeled and unlabeled batch size (default 32)",
    "lr": "Adam learning rate of both networks (default 2e-4)",
    "channels_last": "NHWC memory layout for the networks (default on; same results within float tolerance)",
    "amp": "bfloat16 autocast of the forward passes (GPUs; matches float32 within bf16 tolerance)",
    "compile": "torch.compile both networks (GPUs; slower on small CPUs)",
    "resnet_stem": "resnet18 under 128 px: small (3x3 stride-1 stem, default) or imagenet (torchvision's, ~4x cheaper at 64 px)",
    "split_bn": "SGAN: labeled and unlabeled images in separate BatchNorm batches",
    "lr_schedule": "constant, or cosine: decay both learning rates to 0 over the iterations",
    "beta1": "Adam beta1 (default 0.5)",
    "z_dim": "generator noise size (default 100)",
    "generator_loss": "nonsaturating (default) or feature_matching",
    "input_noise": "std of Gaussian noise on the classifier input in training (default 0.3)",
    "unlabeled_weight": "weight of the real/fake terms in the discriminator loss (default 1)",
    "pseudo_label_weight": "SGAN: weight of the pseudo-label loss on augmented views of unlabeled images (default 0)",
    "pseudo_label_threshold": "SGAN: confidence an unlabeled image needs to get a pseudo-label (default 0.95)",
    "aug_degrees": "augmentation rotation range in degrees, +aug methods (default 10)",
    "aug_translate": "augmentation shift, fraction of the image size (default 0.1)",
    "aug_scale": "augmentation zoom range, 1 +- this (default 0.1)",
    "adabn": "also report accuracy with BatchNorm re-estimated on each eval set (looks at its images)",
    "ema": "evaluate a moving average of the classifier with this decay (default 0: off)",
    "tensorboard": "also write TensorBoard event files under RUN/tensorboard (needs: pip install tensorboard)",
    "log_every": "steps between loss lines in metrics.jsonl (default 50)",
    "eval_every": "steps between validation checks and sample grids (default 500)",
    "checkpoint_every": "steps between checkpoints for --resume (default 500)",
    "seed": "seed of the split, the initial weights and the batches (default 0)",
    "threads": "torch CPU threads (default: torch's choice)",
    "device": "auto, cpu or cuda (default auto)",
    "out": "run folder (default runs/<timestamp>)",
    "progress": "show a progress bar (default on)",
}


def _parse_pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field; only flags given on the command line become overrides."""
    for f in FIELDS.values():
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).removesuffix(" | None")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": HELP.get(f.name)}
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif kind == "list[str]":
            parser.add_argument(flag, nargs="+", **kw)
        elif kind.startswith("dict"):
            parser.add_argument(flag, action="append", type=_parse_pair, metavar="NAME=FILE", **kw)
        else:
            parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the SGAN and its supervised twin, print the table")
    train.add_argument("--config", help="a .toml or .json file of config keys")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last checkpoint")
    add_config_flags(train)
    sw = sub.add_parser("sweep", help="label budgets x unlabeled sources x seeds, all methods; tables and a plot")
    sw.add_argument("--config", help="a .toml or .json file of config keys, with an optional [sweep] table "
                    "of budgets, seeds, sources, workers, and [sweep.per_source.SOURCE] tables of config keys for one source's cells")
    sw.add_argument("--budgets", nargs="+", type=int, help="label budgets (default 100 1000 4000)")
    sw.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0 1 2)")
    sw.add_argument("--sources", nargs="+", help="unlabeled sources: pool, an --eval name or a file (default pool)")
    sw.add_argument("--workers", type=int, help="cells trained at once, in worker processes (default 1)")
    sw.add_argument("--out", dest="sweep_out", default="sweeps/latest", help="sweep folder (default sweeps/latest)")
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
        out = cfg.out or str(default_run_dir())
        metrics = train(dataclasses.replace(cfg, out=out), overwrite=args.overwrite)
    if not ranks_from_env().main:  # under torchrun rank 0 reports
        return
    print(format_table(metrics))
    print(f"run folder: {out} (open {Path(out) / 'report.html'})")


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
    sweep = Sweep(base=base, out=args.sweep_out, **table)
    for key in SWEEP_KEYS:
        if getattr(args, key, None) is not None:  # per_source comes from the config file only
            setattr(sweep, key, getattr(args, key))
    if sweep.workers < 1:
        raise SganError(f"sweep: workers must be positive, got {sweep.workers}")
    run_sweep(sweep)
    print((Path(sweep.out) / "table_val.md").read_text(), end="")
    print(f"sweep folder: {sweep.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    for method in args.method or load_run_config(args.run).methods:
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
    out = Path(args.suggest_out)
    print(f"picked {summary['picked']} of {summary['candidates']} images: fill in the label column of "
          f"{out / 'picks.csv'} (contact sheet: {out / 'picks.png'}), then: sgan train --labels-csv {out / 'picks.csv'} ...")


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
