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

# "+aug" methods add random affine augmentation and per-set standardization ("conventional"
# is the supervised twin with both); see methods.METHOD_SPECS
METHODS = ("supervised", "conventional", "sgan", "sgan+aug")
GENERATOR_LOSSES = ("nonsaturating", "feature_matching")
LR_SCHEDULES = ("constant", "cosine")
MODELS = ("digits", "resnet18")
RESNET_STEMS = ("small", "imagenet")
PHOTO_SIZES = (32, 64, 96, 128, 224)
SELECTIONS = ("final", "best_val")


@dataclass
class Config:
    # data: a file (Kaggle CSV, IDX, NPZ), a Kaggle folder, or the bundled "sklearn-digits"
    data: str = "sklearn-digits"
    val_data: str | None = None  # a separate validation file instead of a split of `data`
    unlabeled: str | None = None  # a separate unlabeled source: a file, an eval-set name, or "test"
    eval: dict[str, str] = field(default_factory=dict)  # extra evaluation sets, name -> file
    test_data: str | None = None  # images to label for a submission (Kaggle test.csv with ids)
    submit: bool = False  # write submission.csv for test_data from the method best on validation
    preset: str | None = None  # a protocol from BENCHMARK.md, e.g. "kannada-10k"
    n_labeled: int = 100  # class-balanced labeled budget
    labels_csv: str | None = None  # a filled-in `sgan suggest-labels` picks.csv: the labeled set instead of a draw
    val_fraction: float = 0.2  # stratified validation share of `data` ...
    val_per_class: int | None = None  # ... or this many validation images per class
    test_per_class: int = 0  # images per class held out of the pool as a test set, evaluated once at the end
    num_classes: int | None = None  # inferred from the labels when unset
    image_size: int = 28
    channels: int | None = None  # image folders are decoded to this many channels (default 3)
    loader_workers: int = 2  # processes decoding image folders
    stream: bool = False  # decode the --unlabeled image folder batch by batch while training, never all at once
    # "digits": the notebook's 28 px pair; "resnet18": torchvision's ResNet18 (from scratch) and a
    # DCGAN generator sized to image_size
    model: str = "digits"
    resnet_stem: str = "small"  # resnet18 below 128 px: "small" (3x3 stride 1) or "imagenet" (torchvision's)
    select: str = "final"  # or "best_val": keep the weights with the best validation accuracy
    methods: list[str] = field(default_factory=lambda: ["supervised", "sgan"])
    iterations: int = 1500
    batch_size: int = 32
    lr: float = 2e-4
    lr_schedule: str = "constant"  # or "cosine": decay both learning rates to 0 over the iterations
    beta1: float = 0.5
    z_dim: int = 100
    generator_loss: str = "nonsaturating"
    input_noise: float = 0.3  # std of Gaussian noise on the classifier's input in training (both methods)
    unlabeled_weight: float = 1.0
    # SGAN: cross-entropy of an augmented view (one more draw of aug_*) of each unlabeled image against the class
    # the plain view predicts with at least `threshold` confidence (FixMatch); 0: off
    pseudo_label_weight: float = 0.0
    pseudo_label_threshold: float = 0.95
    # SGAN: labeled and unlabeled images in separate BatchNorm batches (the unlabeled source may
    # come from another distribution); running statistics from the labeled ones
    split_bn: bool = False
    aug_degrees: float = 10.0  # augmentation: rotation range (+-degrees) ...
    aug_translate: float = 0.1  # ... shift (+- this fraction of the size) ...
    aug_scale: float = 0.1  # ... and zoom (1 +- this)
    adabn: bool = False  # also report accuracy with BatchNorm statistics re-estimated on each eval set
    ema: float = 0.0  # decay of an exponential moving average of the classifier, used to evaluate; 0: off
    log_every: int = 50
    tensorboard: bool = False  # also write TensorBoard event files (needs the tensorboard package)
    eval_every: int = 500
    checkpoint_every: int = 500  # steps between checkpoints (also written at each method's end and on SIGINT/SIGTERM)
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    device: str = "auto"
    channels_last: bool = True  # NHWC weights: faster convolutions on CPU and on tensor cores
    amp: bool = False  # bfloat16 autocast of the forward passes: for GPUs (CPUs without bf16 units get slower)
    compile: bool = False  # torch.compile both networks: for GPUs (slower on the 2-core CPU measured)
    out: str | None = None
    progress: bool = True

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
        for m in self.methods:
            if m not in METHODS:
                raise SganError(f"config: unknown method {m!r}; choose from {', '.join(METHODS)}")
        for key, allowed in (("model", MODELS), ("select", SELECTIONS), ("resnet_stem", RESNET_STEMS)):
            if getattr(self, key) not in allowed:
                raise SganError(f"config: unknown {key} {getattr(self, key)!r}; choose from {', '.join(allowed)}")
        if self.model == "digits" and self.image_size != 28:
            raise SganError(f"config: model 'digits' works on 28 px images, got image_size {self.image_size}")
        if self.model == "resnet18" and self.image_size not in PHOTO_SIZES:
            raise SganError(f"config: model 'resnet18' takes image_size in {PHOTO_SIZES}, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SganError(f"config: channels must be 1 or 3, got {self.channels}")
        if self.test_per_class < 0 or self.loader_workers < 0:
            raise SganError("config: test_per_class and loader_workers must be >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SganError(f"config: unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if self.generator_loss not in GENERATOR_LOSSES:
            raise SganError(f"config: unknown generator_loss {self.generator_loss!r}; "
                            f"choose from {', '.join(GENERATOR_LOSSES)}")
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
    from .data.presets import kaggle_layout, preset_values  # presets know data; config does not

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


def load_run_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise SganError(f"{run_dir}: not a run folder (no config.json)")
    values = json.loads(path.read_text())
    check_keys(values, str(path))
    check_types(values, str(path))
    return Config(**values)
