"""Protocols from ../shared/BENCHMARK.md as config presets, so the tool and the benchmark agree."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from .errors import SganError


def shared_data_root() -> Path:
    """$SGAN_DATA_ROOT, else ../shared/data from the working directory or from the repository."""
    if "SGAN_DATA_ROOT" in os.environ:
        return Path(os.environ["SGAN_DATA_ROOT"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def kannada_10k() -> dict[str, Any]:
    """Pool: the 10,000 Kannada-MNIST test images; 200 validation per class; holdout: Dig-MNIST."""
    root = shared_data_root() / "kannada-mnist"
    return {
        "data": str(root / "X_kannada_MNIST_test-idx3-ubyte.gz"),
        "eval": {"holdout": str(root / "X_dig_MNIST-idx3-ubyte.gz")},
        "val_per_class": 200,
        "num_classes": 10,
        "n_labeled": 100,
    }


def pets_12k() -> dict[str, Any]:
    """pets64/{cat,dog}: per class 500 test, 500 validation, 50 labeled, the rest unlabeled;
    ResNet18 from scratch at 64 px, weights chosen on validation, test scored once."""
    return {
        "data": str(shared_data_root() / "pets64"),
        "image_size": 64,
        "channels": 3,
        "model": "resnet18",
        "test_per_class": 500,
        "val_per_class": 500,
        "num_classes": 2,
        "n_labeled": 100,
        "select": "best_val",
        "batch_size": 64,
    }


def pets_12k_32() -> dict[str, Any]:
    """Pets-12k's split and rules with every image served at 32 px: the protocol that fits a
    2-core CPU (BENCHMARK.md, Pets-12k-32)."""
    return {**pets_12k(), "image_size": 32}


def pets_25k(size: int) -> dict[str, Any]:
    """Pets-12k's split, and every other photo of the collection unlabeled: the 9,900 left in the
    pool plus the 12,998 of the -extra folder (22,898), served at `size` px: 32 and 64 from the
    64 px files, 128 from the 128 px files, the same names, so the same split (BENCHMARK.md,
    Pets-25k)."""
    files = "pets128" if size == 128 else "pets64"
    root = shared_data_root()
    return {**pets_12k(), "data": str(root / files), "unlabeled": str(root / f"{files}-extra"),
            "unlabeled_plus_pool": True, "image_size": size}


def kaggle_layout(data: str) -> dict[str, Any] | None:
    """A Kaggle Kannada-MNIST folder: train.csv is the labeled pool, Dig-MNIST.csv the holdout,
    test.csv the submission set (any of them can be the unlabeled source)."""
    folder = Path(data)
    if not (folder.is_dir() and (folder / "train.csv").is_file()):
        return None
    values: dict[str, Any] = {"data": str(folder / "train.csv"), "eval": {}}
    if (folder / "Dig-MNIST.csv").is_file():
        values["eval"]["holdout"] = str(folder / "Dig-MNIST.csv")
    if (folder / "test.csv").is_file():
        values["test_data"] = str(folder / "test.csv")
    return values


PRESETS = {"kannada-10k": kannada_10k, "pets-12k": pets_12k, "pets-12k-32": pets_12k_32,
           **{f"pets-25k-{size}": partial(pets_25k, size) for size in (32, 64, 128)}}


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise SganError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return {"preset": name, **PRESETS[name]()}
