"""One typed config: defaults -> preset -> config file -> CLI overrides; saved resolved in the run."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SganError
from .registry import METHODS, REGISTRY
from .presets import kaggle_layout, preset_values

MODELS = ("digits", "resnet18", "resnet9")
PHOTO_SIZES = (32, 64, 96, 128, 224)
RESNET9_SIZES = (32, 64, 128)
# keys a plan (plan.py) fills in where the user left them unset: a saved config has every one
PLANNED_KEYS = ("model", "image_size", "channels", "num_classes", "amp", "out")
DEFAULT_SIZE = {"digits": 28, "resnet18": 32, "resnet9": 32}  # 32 px: what a 2-core CPU trains photos at


def inside(value: float, interval: str) -> bool:
    """Whether `value` lies in an interval written "[0, 1)", "(0, inf)": NaN never does."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def describe(interval: str, *, integer: bool) -> str:
    """An interval in words: "positive" for "(0, inf)" and "[1, inf)", ">= 0" for "[0, inf)";
    a float bounded only below must also be finite."""
    if not interval.endswith(", inf)"):
        return f"in {interval}"
    words = "positive" if interval in ("(0, inf)", "[1, inf)") else \
        f"{'>=' if interval[0] == '[' else '>'} {interval[1:].split(',')[0]}"
    return words if integer else f"{words} and finite"


def option(default: Any, help: str, *, choices: tuple[Any, ...] = (), within: str = "") -> Any:
    """A config field with its help text (the CLI's, the docs'), for a choice its choices, for a
    number the interval it must lie in (e.g. "[0, 1)", "(0, inf)"; None is always allowed where
    the type allows it): each key's help, default and range are written here and nowhere else."""
    metadata = {"help": help, "choices": choices, "within": within}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_values(record: Any, where: str) -> None:
    """Every field of a dataclass of option()s against its choices and its interval."""
    for f in dataclasses.fields(record):
        values = getattr(record, f.name)
        many = isinstance(values, list)
        for value in values if many else [values]:
            if f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
                raise SganError(f"{where}: unknown {f.name.removesuffix('s') if many else f.name} {value!r}; "
                                f"choose from {', '.join(map(str, f.metadata['choices']))}")
            if f.metadata.get("within") and value is not None and not inside(value, f.metadata["within"]):
                integer = "int" in str(f.type)
                raise SganError(f"{where}: {f.name} must be {describe(f.metadata['within'], integer=integer)}, "
                                f"got {value}")


@dataclass
class Config:
    data: str = option("sklearn-digits", "labeled pool: Kaggle CSV, IDX (.idx3-ubyte[.gz]), .npz, an image folder "
                       "(one subfolder per class), a Kaggle folder (train.csv, test.csv, Dig-MNIST.csv), or the "
                       "bundled 'sklearn-digits'")
    val_data: str | None = option(None, "a separate labeled validation file (instead of a split of --data)")
    unlabeled: str | None = option(None, "unlabeled source: a file or image folder, the name of an --eval set "
                                   "(transductive), or 'test' (default: the rest of the pool)")
    unlabeled_plus_pool: bool = option(False, "with --unlabeled: the rest of the pool joins that source's images "
                                       "as unlabeled images (the training distribution beside a shifted target)")
    eval: dict[str, str] = option({}, "extra evaluation set NAME=FILE (repeatable), e.g. holdout=Dig-MNIST.csv")
    test_data: str | None = option(None, "images to label for a submission, e.g. Kaggle test.csv (a Kaggle folder "
                                   "sets it)")
    submit: bool = option(False, "write submission.csv for --test-data from the method best on validation")
    preset: str | None = option(None, "a protocol from BENCHMARK.md: kannada-10k, pets-12k, pets-12k-32, or pets-25k-32, "
                                "-64, -128 (Pets-25k at that size)")
    n_labeled: int = option(100, "class-balanced labeled budget", within="[1, inf)")
    labels_csv: str | None = option(None, "a filled-in picks.csv from sgan suggest-labels: these images, with these "
                                    "labels, are the labeled set")
    val_fraction: float = option(0.2, "stratified validation share of --data", within="(0, 1)")
    val_per_class: int | None = option(None, "validation images per class instead of --val-fraction", within="[1, inf)")
    test_per_class: int = option(0, "test images per class held out of --data, scored once at the end", within="[0, inf)")
    num_classes: int | None = option(None, "number of classes K (default: largest label + 1)", within="[2, inf)")
    image_size: int | None = option(None, "side length images are served at (default: 28 for the digits model, 32 "
                                    "for the photo models; resnet18: 32, 64, 96, 128 or 224; resnet9: 32, 64 or 128)",
                                    within="[8, 1024]")
    channels: int | None = option(None, "channels image folders are decoded to: 1 or 3 (default: 3)",
                                  choices=(1, 3))
    loader_workers: int = option(2, "processes decoding image folders", within="[0, 64]")
    stream: bool = option(False, "decode the --unlabeled image folder batch by batch in --loader-workers processes "
                          "while training (for folders larger than memory)")
    model: str = option("auto", "digits (the notebook's 28 px pair), resnet18 (ResNet18 from scratch), resnet9 "
                        "(a compact ResNet-9 that keeps resolution at small sizes), or auto: resnet9 for 3-channel "
                        "or larger than 28 px images, digits for the rest; the photo models get a DCGAN generator "
                        "sized to --image-size", choices=("auto", *MODELS))
    width: int = option(32, "the classifier's base width w: resnet9 stages of w, 2w, 4w, 8w channels (64 is the "
                        "original); digits w, 2w, 4w (the notebook's at 32); cost grows as its square",
                        within="[4, 256]")
    resnet_stem: str = option("small", "how the photo network meets large images: resnet18 under 128 px: small "
                              "(3x3 stride-1 stem) or imagenet (torchvision's, ~4x cheaper at 64 px); resnet9: small "
                              "(3x3 at full resolution, halved by a max-pool at 64 px), patch (a k x k stride-k "
                              "patch embedding down to the body's 32 px, k = size / 32: 128 px at about the cost of "
                              "32 px) or strided (log2 k 3x3 stride-2 convolutions down to 32 px); at 32 px all are "
                              "the 3x3 stem", choices=("small", "imagenet", "patch", "strided"))
    select: str = option("final", "final, or best_val: keep the weights with the best validation accuracy",
                         choices=("final", "best_val"))
    methods: list[str] = option(["supervised", "fixmatch", "sgan"], "methods side by side: the supervised twin, what "
                                "the unlabeled images buy without a generator (fixmatch), the SGAN", choices=METHODS)
    iterations: int = option(1500, "training steps per method", within="[1, inf)")
    batch_size: int = option(32, "labeled and unlabeled batch size", within="[1, inf)")
    fake_batch_size: int | None = option(None, "SGAN: generated images per step (default: --batch-size); the "
                                         "generator is most of the 28 px step, so fewer make it cheaper",
                                         within="[1, inf)")
    lr: float = option(2e-4, "Adam learning rate of both networks", within="(0, inf)")
    lr_schedule: str = option("constant", "constant, or cosine: decay both learning rates to 0 over the iterations",
                              choices=("constant", "cosine"))
    beta1: float = option(0.5, "Adam beta1", within="[0, 1)")
    z_dim: int = option(100, "generator noise size", within="[1, 4096]")
    generator_width: int = option(64, "the generator's width: its last hidden layer's channels, each layer "
                                  "before doubles them (photos: up to 512; digits: 4w, 2w, w, the notebook's at 64); "
                                  "cost grows as its square", within="[4, 512]")
    generator_loss: str = option("nonsaturating", "nonsaturating or feature_matching",
                                 choices=("nonsaturating", "feature_matching"))
    diff_augment: bool = option(False, "SGAN variants that augment (sgan+aug): the generated batch gets the real "
                                "batches' random views too, in both phases, differentiably, so that the generator "
                                "learns through them (DiffAugment, Zhao et al. 2020)")
    pull_away_weight: float = option(0.0, "SGAN variants: weight of Bad GAN's pull-away term (Dai et al. 2017) in "
                                     "the generator's loss, the mean squared cosine similarity between the "
                                     "discriminator features of different generated images (it spreads them "
                                     "apart); 0: off", within="[0, inf)")
    input_noise: float = option(0.3, "std of Gaussian noise on the classifier input in training (every method)",
                                within="[0, inf)")
    unlabeled_weight: float = option(1.0, "weight of the real/fake terms in the discriminator loss", within="[0, inf)")
    pseudo_label_weight: float = option(1.0, "weight of the pseudo-label loss (FixMatch), for fixmatch and the SGAN "
                                        "variants: cross-entropy of an augmented view of each unlabeled image against "
                                        "the class its plain view predicts confidently; 0: off (not for fixmatch)",
                                        within="[0, inf)")
    pseudo_label_threshold: float = option(0.95, "confidence an unlabeled image needs to get a pseudo-label",
                                           within="(0, 1]")
    pseudo_label_thresholds: str = option("fixed", "fixed: one threshold for every class; flexmatch: class-wise "
                                          "thresholds (FlexMatch), --pseudo-label-threshold scaled down for the "
                                          "classes the model confidently predicts least often",
                                          choices=("fixed", "flexmatch"))
    distribution_alignment: bool = option(False, "align the plain view's class probabilities to the labeled class "
                                          "shares before the threshold (ReMixMatch), both as moving averages")
    pseudo_label_teacher: float = option(0.0, "decay of an averaged (EMA) teacher whose plain-view predictions give "
                                         "the pseudo-labels (0: the classifier's own pass)", within="[0, 1)")
    label_smoothing: float = option(0.0, "label smoothing of the labeled cross-entropy (every method)",
                                    within="[0, 1)")
    split_bn: bool = option(False, "SGAN and fixmatch: labeled and unlabeled images in separate BatchNorm batches, "
                            "running statistics from the labeled ones (for an unlabeled source from another "
                            "distribution)")
    aug_policy: str = option("auto", "augmentation (conventional, fixmatch, +aug methods, pseudo-label views): affine "
                             "(rotation, shift, zoom), photo (also left-right flips and brightness/contrast "
                             "jitter), or auto: photo for 3-channel images, affine for 1-channel ones (digits are "
                             "never flipped)",
                             choices=("auto", "affine", "photo"))
    aug_jitter: float = option(0.1, "photo augmentation: brightness shift and contrast gain, +- this",
                               within="[0, 1]")
    aug_degrees: float = option(10.0, "augmentation (conventional, fixmatch, +aug, pseudo-label views): rotation "
                                "range, +- degrees", within="[0, 180]")
    aug_translate: float = option(0.1, "augmentation: shift, +- this fraction of the image size", within="[0, 1]")
    aug_scale: float = option(0.1, "augmentation: zoom range, 1 +- this", within="[0, 1)")
    aug_stroke: float = option(0.0, "augmentation: pen width, for line drawings such as digits: each image's lines "
                               "thickened or thinned (a 3x3 max or min filter blended in by a random share up to "
                               "this); 0: off", within="[0, 1]")
    strong_cutout: float = option(0.0, "the pseudo-label term's strong view (fixmatch, the SGAN variants): after the "
                                  "augmentation, a square of this fraction of the side, placed at random in each "
                                  "image, set to grey (FixMatch's Cutout); 0: off", within="[0, 1)")
    adabn: bool = option(False, "also report accuracy with BatchNorm re-estimated on each eval set (looks at its "
                         "images)")
    set_std: bool = option(False, "also report accuracy on each eval set standardized from its own pixel mean/std "
                           "(computed once over the whole set) to the training pool's, the Keras notebook's "
                           "conventional step (looks at the set's images)")
    tta_flip: bool = option(False, "evaluate on each image and its left-right mirror, averaging their class "
                            "probabilities (every method alike; photos only: a mirrored digit need not be its digit)")
    ema: float = option(0.0, "evaluate a moving average of the classifier with this decay (0: off)", within="[0, 1)")
    log_every: int = option(50, "steps between loss lines in metrics.jsonl", within="[1, inf)")
    tensorboard: bool = option(False, "also write TensorBoard event files under RUN/tensorboard (needs: pip install "
                               "tensorboard)")
    eval_every: int = option(500, "steps between validation checks and sample grids", within="[1, inf)")
    checkpoint_every: int = option(500, "steps between checkpoints for --resume (also written at each method's end "
                                   "and on SIGINT/SIGTERM)", within="[1, inf)")
    seed: int = option(0, "seed of the split, the initial weights and the batches", within="[0, inf)")
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)", within="[1, 1024]")
    device: str = option("auto", "auto, cpu or cuda")
    channels_last: bool = option(True, "NHWC memory layout for the networks (faster convolutions on CPU and tensor "
                                 "cores; same results within float tolerance)")
    amp: bool | None = option(None, "bfloat16 autocast of the forward passes; default: on where bf16 is fast (CUDA "
                              "GPUs with bf16, CPUs with AMX units), off elsewhere (CPUs without bf16 units get "
                              "slower)")
    compile: bool = option(False, "torch.compile both networks (GPUs; slower on the 2-core CPU measured)")
    out: str | None = option(None, "run folder (default: runs/<timestamp>)")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> "Config":
        check_values(self, "config")
        if self.submit and not self.test_data:
            raise SganError("config: submit needs test_data (the images to label)")
        if self.unlabeled == "test" and not self.test_data:
            raise SganError("config: unlabeled source 'test' needs test_data (a Kaggle folder sets it)")
        if self.unlabeled_plus_pool and (self.unlabeled is None or self.stream):
            raise SganError("config: unlabeled_plus_pool needs an --unlabeled source held in memory (not --stream)")
        if self.pseudo_label_weight == 0 and (pl_only := [m for m in self.methods if REGISTRY[m].uses_unlabeled
                                                          and not REGISTRY[m].has_generator]):
            raise SganError(f"config: {pl_only[0]} learns from unlabeled images through the pseudo-label term "
                            "alone; pseudo_label_weight must be > 0")
        if self.diff_augment and not any(REGISTRY[m].has_generator and REGISTRY[m].augments for m in self.methods):
            raise SganError("config: diff_augment views the generated images as the real ones are viewed: it needs "
                            "an SGAN variant that augments (sgan+aug) among the methods")
        if self.pull_away_weight > 0 and not any(REGISTRY[m].has_generator for m in self.methods):
            raise SganError("config: pull_away_weight is a term of the generator's loss: it needs an SGAN variant "
                            "among the methods")
        if self.pull_away_weight > 0 and (self.fake_batch_size or self.batch_size) < 2:
            raise SganError("config: pull_away_weight compares generated images pairwise: it needs 2 or more "
                            "generated images per step (fake_batch_size, else batch_size)")
        self.check_model()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise SganError(f"config: unknown device {self.device!r}; choose from auto, cpu, cuda, cuda:N")
        return self

    def check_model(self) -> None:
        """The model against the image size and the options that depend on the kind of image."""
        if self.tta_flip and self.model == "digits":
            raise SganError("config: tta_flip mirrors images, which the digits model's line drawings are not "
                            "symmetric under")
        sizes = {"digits": (28,), "resnet18": PHOTO_SIZES, "resnet9": RESNET9_SIZES}.get(self.model)
        if sizes and self.image_size is not None and self.image_size not in sizes:
            raise SganError(f"config: model {self.model!r} takes image_size in {sizes}, got {self.image_size}")
        stems = {"resnet18": ("small", "imagenet"), "resnet9": ("small", "patch", "strided")}.get(self.model)
        if stems and self.resnet_stem not in stems:
            raise SganError(f"config: model {self.model!r} takes resnet_stem {', '.join(stems)}, "
                            f"got {self.resnet_stem!r}")
        if self.model == "resnet9" and self.image_size == 128 and self.resnet_stem == "small":
            raise SganError("config: resnet9 at 128 px needs resnet_stem 'patch' or 'strided' (the small stem would "
                            "run its body at 64 px, 4x the cost)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


@dataclass
class Suggestion:
    """What `sgan suggest-labels` picks, and from what (its settings beside the config keys of the
    pool and the network it trains)."""

    strategy: str = option("representative", "representative (per k-means cluster of learnt features the image "
                           "nearest its centre), typical (its densest image, TypiClust) or random (uniform, the "
                           "baseline)", choices=("representative", "typical", "random"))
    features: str = option("contrastive", "features the clusters are made of, learnt without labels: contrastive "
                           "(SimCLR) or gan (the discriminator of a short unsupervised GAN)",
                           choices=("contrastive", "gan"))
    pretext_iterations: int = option(1500, "training steps of that pretext, 256 images each", within="[1, inf)")

# what each setting is about, for `sgan train --help` (every key in exactly one group, in Config's order)
GROUPS = {
    "data": ("data", "val_data", "unlabeled", "unlabeled_plus_pool", "eval", "test_data", "submit", "preset",
             "n_labeled", "labels_csv", "val_fraction", "val_per_class", "test_per_class", "num_classes", "image_size",
             "channels", "loader_workers", "stream"),
    "model": ("model", "width", "resnet_stem", "z_dim", "generator_width", "input_noise", "channels_last", "compile"),
    "method": ("methods", "fake_batch_size", "generator_loss", "diff_augment", "pull_away_weight", "unlabeled_weight",
               "pseudo_label_weight", "pseudo_label_threshold", "pseudo_label_thresholds", "distribution_alignment",
               "pseudo_label_teacher", "label_smoothing", "split_bn", "aug_policy", "aug_jitter", "aug_degrees",
               "aug_translate", "aug_scale", "aug_stroke", "strong_cutout"),
    "optimisation": ("iterations", "batch_size", "lr", "lr_schedule", "beta1", "seed", "threads", "device", "amp"),
    "evaluation": ("select", "eval_every", "adabn", "set_std", "tta_flip", "ema"),
    "run": ("out", "log_every", "tensorboard", "checkpoint_every", "progress"),
}
GROUP_OF = {key: group for group, keys in GROUPS.items() for key in keys}
assert sorted(GROUP_OF) == sorted(FIELDS) and len(GROUP_OF) == sum(map(len, GROUPS.values())), "a key in no group or two"


def check_keys(values: dict[str, Any], where: str) -> None:
    """Unknown keys are errors, with a did-you-mean."""
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SganError(f"{where}: unknown config key {key!r}{hint}")


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def is_kind(value: Any, kind: str) -> bool:
    """Whether a value from a file or the API has a field's type: "int", "list[str]",
    "dict[str, str]", "dict[str, dict[str, Any]]" (bool is not an int here)."""
    if kind in _SCALARS:
        return isinstance(value, _SCALARS[kind]) and (kind == "bool" or not isinstance(value, bool))
    if kind.startswith("list["):
        return isinstance(value, list) and all(is_kind(v, kind[5:-1]) for v in value)
    if kind.startswith("dict[str, "):
        inner = kind[len("dict[str, "):-1]
        return isinstance(value, dict) and all(isinstance(v, dict) if inner.startswith("dict") else is_kind(v, inner)
                                               for v in value.values())
    return True  # Any


def check_types(values: dict[str, Any], where: str, fields: dict[str, dataclasses.Field] = FIELDS) -> None:
    for key, value in values.items():
        kind = str(fields[key].type)
        if not (value is None and kind.endswith(" | None") or is_kind(value, kind.removesuffix(" | None"))):
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
    except OSError as e:
        raise SganError(f"{path}: cannot read config file: {e.strerror}") from None
    if not isinstance(values, dict):
        raise SganError(f"{path}: a config file holds a table of config keys, got {type(values).__name__}")
    extra = values.pop(section, None) if section else None
    if not isinstance(extra, (dict, type(None))):
        raise SganError(f"{path}: [{section}] must be a table, got {extra!r}")
    check_keys(values, path)
    check_types(values, path)
    return values if extra is None else {**values, section: extra}


def run_config_file(path: str) -> dict[str, Any]:
    """A config file's keys for one run: a sweep's config file serves one run too, its [sweep]
    table (the sweep's own) left out."""
    values = read_config_file(path, section="sweep")
    values.pop("sweep", None)
    return values


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
    """A saved config (a run's config.json) back as a Config, its keys and types checked. Saved
    configs are fitted to their data; one saved before `model` and `image_size` followed the data
    (and before `model` existed) ran the digits pair at 28 px, the defaults of its time."""
    check_keys(values, where)
    check_types(values, where)
    return Config(**{"model": "digits", "image_size": 28, **values})
