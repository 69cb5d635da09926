"""From a config to tensors: read sources, split the pool, resize and scale every set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..errors import SganError
from .imageset import ImageSet
from .readers import load_images
from .splits import Split, split_pool
from .transforms import resize, set_stats, standardize, to_model_range


@dataclass
class LabeledTensors:
    x: torch.Tensor  # (N, C, H, W) float in [-1, 1]
    y: torch.Tensor  # (N,) int64


@dataclass
class Prepared:
    labeled: LabeledTensors
    x_ulb: torch.Tensor  # (M, C, H, W) float in [-1, 1]
    evals: dict[str, LabeledTensors]  # "val" first, then the named extra sets
    num_classes: int
    channels: int
    split: Split
    pool_stats: tuple[float, float]  # pixel mean, std of the whole pool in model range
    summary: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # undecodable image files: (file, reason)
    classes: list[str] = field(default_factory=list)  # class names, when the pool is an image folder

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per set: image count, count per class (labeled sets) and pixel mean/std in model
        range, so that a shift between sets shows."""
        def row(x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
            mean, std = set_stats(x)
            per_class = torch.bincount(y, minlength=self.num_classes).tolist() if y is not None else None
            return {"images": len(x), "per_class": per_class, "pixel_mean": round(mean, 4), "pixel_std": round(std, 4)}

        return {"labeled": row(self.labeled.x, self.labeled.y), "unlabeled": row(self.x_ulb, None),
                **{k: row(v.x, v.y) for k, v in self.evals.items()}}

    def standardized(self) -> "Prepared":
        """Every set (labeled, unlabeled, each evaluation set) shifted and scaled from its own
        pixel mean/std to the pool's; labels are not used."""
        mean, std = self.pool_stats

        def fix(x: torch.Tensor) -> torch.Tensor:
            return standardize(x, mean=mean, std=std)

        return dataclasses.replace(
            self, labeled=LabeledTensors(fix(self.labeled.x), self.labeled.y), x_ulb=fix(self.x_ulb),
            evals={k: LabeledTensors(fix(v.x), v.y) for k, v in self.evals.items()})


def check_label_range(labels: np.ndarray, num_classes: int, source: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise SganError(f"{source}: label {int(labels[bad[0]])} of image {int(bad[0])} is outside 0..{num_classes - 1}")


def prepare_images(images: np.ndarray, size: int) -> torch.Tensor:
    return to_model_range(resize(images, size))


def labeled_tensors(s: ImageSet, num_classes: int, size: int) -> LabeledTensors:
    labels = s.require_labels()
    check_label_range(labels, num_classes, s.source)
    return LabeledTensors(prepare_images(s.images, size), torch.from_numpy(labels))


def pool_part(pool_x: torch.Tensor, labels: np.ndarray, index: np.ndarray) -> LabeledTensors:
    return LabeledTensors(pool_x[index], torch.from_numpy(labels[index]))


def prepare(cfg: Config) -> Prepared:
    def read(path: str) -> ImageSet:
        return load_images(path, size=cfg.image_size, channels=cfg.channels or 3, workers=cfg.loader_workers)

    pool = read(cfg.data)
    y = pool.require_labels()
    if pool.classes and len(pool.classes) < 2:
        raise SganError(f"{pool.source}: labeled folder has one class ({pool.classes[0]}); a classifier needs two or more")
    num_classes = cfg.num_classes or int(y.max()) + 1
    check_label_range(y, num_classes, pool.source)
    extra = {name: read(path) for name, path in cfg.eval.items()}
    val_set = read(cfg.val_data) if cfg.val_data else None
    split = split_pool(
        y, n_labeled=cfg.n_labeled, seed=cfg.seed, num_classes=num_classes,
        val_per_class=None if val_set else cfg.val_per_class,
        val_fraction=None if val_set or cfg.val_per_class is not None else cfg.val_fraction,
        test_per_class=cfg.test_per_class, source=pool.source)
    size = cfg.image_size
    pool_x = prepare_images(pool.images, size)  # the pool is resized and scaled once; parts index it
    if cfg.unlabeled is None:
        unlabeled, x_ulb = pool.subset(split.unlabeled), pool_x[split.unlabeled]
    else:
        if cfg.unlabeled in extra:  # an evaluation set used unlabeled: transductive
            unlabeled = extra[cfg.unlabeled]
        elif cfg.unlabeled == "test":  # the submission images: transductive too
            unlabeled = read(cfg.test_data)
        else:
            unlabeled = read(cfg.unlabeled)
        x_ulb = prepare_images(unlabeled.images, size)
    held_out = {"test": pool.subset(split.test)} if cfg.test_per_class else {}
    sets = {"val": val_set or pool.subset(split.validation), **held_out, **extra}
    channels = pool.images.shape[1]
    for name, s in [("unlabeled", unlabeled), *sets.items()]:
        if s.images.shape[1] != channels:
            raise SganError(f"{s.source}: {s.images.shape[1]}-channel images, but the labeled "
                            f"pool has {channels}")
    evals = {name: labeled_tensors(s, num_classes, size) for name, s in extra.items()}
    val = labeled_tensors(val_set, num_classes, size) if val_set else pool_part(pool_x, y, split.validation)
    if cfg.test_per_class:
        evals = {"test": pool_part(pool_x, y, split.test), **evals}
    sources = [pool, unlabeled, *extra.values(), *([val_set] if val_set else [])]
    return Prepared(
        labeled=pool_part(pool_x, y, split.labeled),
        x_ulb=x_ulb,
        evals={"val": val, **evals},
        num_classes=num_classes,
        channels=channels,
        split=split,
        pool_stats=set_stats(pool_x),
        summary={"labeled": len(split.labeled), "unlabeled": len(unlabeled),
                 **{name: len(s) for name, s in sets.items()}},
        skipped=sorted({item for s in sources for item in s.skipped}),
        classes=pool.classes,
    )
