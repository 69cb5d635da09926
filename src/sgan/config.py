"""One typed config: defaults -> preset -> config file -> CLI overrides; saved resolved in the run."""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SganError
from .registry import METHODS
from .presets import kaggle_layout, preset_values

PHOTO_SIZES = (32, 64, 96, 128, 224)


def option(default: Any, help: str, *, choices: tuple[Any, ...] = ()) -> Any:
    """A config field with its help text (the CLI's, the docs') and, for a choice, its choices:
    each key's help and default are written here and nowhere else."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    data: str = option("sklearn-digits", "labeled pool: Kaggle CSV, IDX (.idx3-ubyte[.gz]), .npz, an image folder "
                       "(one subfolder per class), a Kaggle folder (train.csv, test.csv, Dig-MNIST.csv), or the "
                       "bundled 'sklearn-digits'")
    val_data: str | None = option(None, "a separate labeled validation file (instead of a split of --data)")
    unlabeled: str | None = option(None, "unlabeled source: a file or image folder, the name of an --eval set "
                                   "(transductive), or 'test' (default: the rest of the pool)")
    eval: dict[str, str] = option({}, "extra evaluation set NAME=FILE (repeatable), e.g. holdout=Dig-MNIST.csv")
    test_data: str | None = option(None, "images to label for a submission, e.g. Kaggle test.csv (a Kaggle folder "
                                   "sets it)")
    submit: bool = option(False, "write submission.csv for --test-data from the method best on validation")
    preset: str | None = option(None, "a protocol from BENCHMARK.md: kannada-10k or pets-12k")
    n_labeled: int = option(100, "class-balanced labeled budget")
    labels_csv: str | None = option(None, "a filled-in picks.csv from sgan suggest-labels: these images, with these "
                                    "labels, are the labeled set")
    val_fraction: float = option(0.2, "stratified validation share of --data")
    val_per_class: int | None = option(None, "validation images per class instead of --val-fraction")
    test_per_class: int = option(0, "test images per class held out of --data, scored once at the end")
    num_classes: int | None = option(None, "number of classes K (default: largest label + 1)")
    image_size: int = option(28, "side length images are resized to (resnet18: 32, 64, 96, 128 or 224)")
    channels: int | None = option(None, "channels image folders are decoded to: 1 or 3 (default: 3)")
    loader_workers: int = option(2, "processes decoding image folders")
    stream: bool = option(False, "decode the --unlabeled image folder batch by batch in --loader-workers processes "
                          "while training (for folders larger than memory)")
    model: str = option("digits", "digits (the notebook's 28 px pair) or resnet18 (ResNet18 from scratch + a DCGAN "
                        "generator sized to --image-size)", choices=("digits", "resnet18"))
    resnet_stem: str = option("small", "resnet18 under 128 px: small (3x3 stride-1 stem) or imagenet (torchvision's, "
                              "~4x cheaper at 64 px)", choices=("small", "imagenet"))
    select: str = option("final", "final, or best_val: keep the weights with the best validation accuracy",
                         choices=("final", "best_val"))
    methods: list[str] = option(["supervised", "sgan"], "methods side by side", choices=METHODS)
    iterations: int = option(1500, "training steps per method")
    batch_size: int = option(32, "labeled and unlabeled batch size")
    lr: float = option(2e-4, "Adam learning rate of both networks")
    lr_schedule: str = option("constant", "constant, or cosine: decay both learning rates to 0 over the iterations",
                              choices=("constant", "cosine"))
    beta1: float = option(0.5, "Adam beta1")
    z_dim: int = option(100, "generator noise size")
    generator_loss: str = option("nonsaturating", "nonsaturating or feature_matching",
                                 choices=("nonsaturating", "feature_matching"))
    input_noise: float = option(0.3, "std of Gaussian noise on the classifier input in training (every method)")
    unlabeled_weight: float = option(1.0, "weight of the real/fake terms in the discriminator loss")
    pseudo_label_weight: float = option(0.0, "SGAN: weight of the pseudo-label loss: cross-entropy of an augmented "
                                        "view of each unlabeled image against the class its plain view predicts "
                                        "confidently (FixMatch); 0: off")
    pseudo_label_threshold: float = option(0.95, "SGAN: confidence an unlabeled image needs to get a pseudo-label")
    split_bn: bool = option(False, "SGAN: labeled and unlabeled images in separate BatchNorm batches, running "
                            "statistics from the labeled ones (for an unlabeled source from another distribution)")
    aug_degrees: float = option(10.0, "augmentation (+aug methods, pseudo-label views): rotation range, +- degrees")
    aug_translate: float = option(0.1, "augmentation: shift, +- this fraction of the image size")
    aug_scale: float = option(0.1, "augmentation: zoom range, 1 +- this")
    adabn: bool = option(False, "also report accuracy with BatchNorm re-estimated on each eval set (looks at its "
                         "images)")
    ema: float = option(0.0, "evaluate a moving average of the classifier with this decay (0: off)")
    log_every: int = option(50, "steps between loss lines in metrics.jsonl")
    tensorboard: bool = option(False, "also write TensorBoard event files under RUN/tensorboard (needs: pip install "
                               "tensorboard)")
    eval_every: int = option(500, "steps between validation checks and sample grids")
    checkpoint_every: int = option(500, "steps between checkpoints for --resume (also written at each method's end "
                                   "and on SIGINT/SIGTERM)")
    seed: int = option(0, "seed of the split, the initial weights and the batches")
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)")
    device: str = option("auto", "auto, cpu or cuda")
    channels_last: bool = option(True, "NHWC memory layout for the networks (faster convolutions on CPU and tensor "
                                 "cores; same results within float tolerance)")
    amp: bool = option(False, "bfloat16 autocast of the forward passes (GPUs; CPUs without bf16 units get slower)")
    compile: bool = option(False, "torch.compile both networks (GPUs; slower on the 2-core CPU measured)")
    out: str | None = option(None, "run folder (default: runs/<timestamp>)")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> "Config":
        for name in ("n_labeled", "iterations", "batch_size", "z_dim", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise SganError(f"config: {name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise SganError(f"config: lr must be positive, got {self.lr}")
        if self.input_noise < 0:
            raise SganError(f"config: input_noise must be >= 0, got {self.input_noise}")
        if self.submit and not self.test_data:
            raise SganError("config: submit needs test_data (the images to label)")
        if self.unlabeled == "test" and not self.test_data:
            raise SganError("config: unlabeled source 'test' needs test_data (a Kaggle folder sets it)")
        for name in ("aug_degrees", "aug_translate", "aug_scale", "pseudo_label_weight"):
            if getattr(self, name) < 0:
                raise SganError(f"config: {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.pseudo_label_threshold <= 1:
            raise SganError(f"config: pseudo_label_threshold must be in (0, 1], got {self.pseudo_label_threshold}")
        if not 0 <= self.ema < 1:
            raise SganError(f"config: ema must be in [0, 1), got {self.ema}")
        if not 0 < self.val_fraction < 1:
            raise SganError(f"config: val_fraction must be in (0, 1), got {self.val_fraction}")
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            many = isinstance(values, list)
            for value in values if many else [values]:
                if f.metadata["choices"] and value not in f.metadata["choices"]:
                    raise SganError(f"config: unknown {f.name.removesuffix('s') if many else f.name} {value!r}; "
                                    f"choose from {', '.join(f.metadata['choices'])}")
        if self.model == "digits" and self.image_size != 28:
            raise SganError(f"config: model 'digits' works on 28 px images, got image_size {self.image_size}")
        if self.model == "resnet18" and self.image_size not in PHOTO_SIZES:
            raise SganError(f"config: model 'resnet18' takes image_size in {PHOTO_SIZES}, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SganError(f"config: channels must be 1 or 3, got {self.channels}")
        if self.val_per_class is not None and self.val_per_class < 1:
            raise SganError(f"config: val_per_class must be positive, got {self.val_per_class}")
        if self.test_per_class < 0 or self.loader_workers < 0:
            raise SganError("config: test_per_class and loader_workers must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def check_keys(values: dict[str, Any], where: str) -> None:
    """Unknown keys are errors, with a did-you-mean."""
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SganError(f"{where}: unknown config key {key!r}{hint}")


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def check_types(values: dict[str, Any], where: str) -> None:
    """Values from files and the API must have the field's type (bool is not an int here)."""
    for key, value in values.items():
        kind = str(FIELDS[key].type)
        if value is None and kind.endswith("| None"):
            continue
        base = kind.removesuffix(" | None")
        if base in _SCALARS:
            ok = isinstance(value, _SCALARS[base]) and (base == "bool" or not isinstance(value, bool))
        elif base == "list[str]":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:  # dict[str, str]
            ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        if not ok:
            raise SganError(f"{where}: config key {key!r} must be {kind}, got {value!r}")


def read_config_file(path: str, *, section: str | None = None) -> dict[str, Any]:
    """Config keys from a .toml/.json file; with `section` (e.g. "sweep"), that table is
    returned under its name, unchecked, for its command to read."""
    p = Path(path)
    if not p.is_file():
        raise SganError(f"{path}: config file not found")
    try:
        if p.suffix == ".toml":
            values = tomllib.loads(p.read_text())
        elif p.suffix == ".json":
            values = json.loads(p.read_text())
        else:
            raise SganError(f"{path}: config file must be .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SganError(f"{path}: cannot parse config file: {e}") from None
    extra = values.pop(section, None) if section else None
    check_keys(values, path)
    check_types(values, path)
    return values if extra is None else {**values, section: extra}


def resolve(file_values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset named anywhere, then the file, then overrides."""
    file_values, overrides = file_values or {}, overrides or {}
    check_keys(overrides, "command line")
    check_types(overrides, "command line")
    preset = overrides.get("preset", file_values.get("preset"))
    values: dict[str, Any] = {}
    if preset:
        values.update(preset_values(preset))
    values.update(file_values)
    values.update(overrides)
    layout = kaggle_layout(values.get("data", Config.data))
    if layout:  # a Kaggle folder: its files take their roles unless set explicitly
        values = {**layout, **values, "data": layout["data"],
                  "eval": {**layout["eval"], **values.get("eval", {})}}
    return Config(**values).validate()


def config_from_dict(values: dict[str, Any], where: str) -> Config:
    """A saved config (a run's config.json) back as a Config, its keys and types checked."""
    check_keys(values, where)
    check_types(values, where)
    return Config(**values)
