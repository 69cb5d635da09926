"""From a config to tensors: read sources, split the pool, resize and scale every set."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import SganError
from .imageset import ImageSet
from .picks import Picks, read_picks
from .batches import STATS_SAMPLE, StreamedFolder
from .readers import Source, load_images
from .splits import Split, split_pool
from .transforms import resize, set_stats, to_model_range


@dataclass
class LabeledTensors:
    x: torch.Tensor  # (N, C, H, W) float in [-1, 1]
    y: torch.Tensor  # (N,) int64


if TYPE_CHECKING:
    from ..config import Config


@dataclass
class Prepared:
    labeled: LabeledTensors
    x_ulb: torch.Tensor | StreamedFolder  # (M, C, H, W) float in [-1, 1], or a folder decoded as it trains
    evals: dict[str, LabeledTensors]  # "val" first, then the named extra sets
    split: Split
    pool_stats: tuple[float, float]  # pixel mean, std of the whole pool in model range
    summary: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # undecodable image files: (file, reason)
    classes: list[str] = field(default_factory=list)  # class names, when the pool is an image folder

    def describe(self, num_classes: int) -> dict[str, dict[str, Any]]:
        """Per set: image count, count per class of the K classes (labeled sets) and pixel
        mean/std in model range, so that a shift between sets shows."""
        def row(x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
            mean, std = set_stats(x)
            per_class = torch.bincount(y, minlength=num_classes).tolist() if y is not None else None
            return {"images": len(x), "per_class": per_class, "pixel_mean": round(mean, 4), "pixel_std": round(std, 4)}

        unlabeled = row(self.x_ulb if isinstance(self.x_ulb, torch.Tensor) else self.x_ulb.sample, None)
        if isinstance(self.x_ulb, StreamedFolder):  # pixel statistics from a sample of the folder
            unlabeled.update(images=len(self.x_ulb), stats_from=f"a sample of {min(STATS_SAMPLE, len(self.x_ulb))}")
        return {"labeled": row(self.labeled.x, self.labeled.y), "unlabeled": unlabeled,
                **{k: row(v.x, v.y) for k, v in self.evals.items()}}

    def fingerprint(self) -> str:
        """A digest of every set's images and labels (a streamed folder: its file list), so that a
        checkpoint can tell whether it was written on this data."""
        digest = hashlib.sha256()
        ulb = self.x_ulb if isinstance(self.x_ulb, torch.Tensor) else None
        for t in (self.labeled.x, self.labeled.y, ulb, *(t for v in self.evals.values() for t in (v.x, v.y))):
            if t is not None:
                digest.update(t.contiguous().numpy().tobytes())
        if isinstance(self.x_ulb, StreamedFolder):
            digest.update("\n".join(self.x_ulb.paths).encode())
        return digest.hexdigest()[:16]


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


def read_source(cfg: Config, path: str) -> ImageSet:
    """Another set than the pool (validation, evaluation, unlabeled), at the run's size and channels."""
    return load_images(path, size=cfg.image_size, channels=cfg.channels, workers=cfg.loader_workers)


def read_pool(cfg: Config, pool: Source) -> ImageSet:
    return pool.read(size=cfg.image_size, channels=cfg.channels, workers=cfg.loader_workers)


def split_of(cfg: Config, y: np.ndarray | None, n: int, num_classes: int, *, own_val: bool,
             picks: Picks | None, source: str) -> Split:
    """The protocol's split of a pool of n images (labels y): validation and test per class,
    then a class-balanced labeled draw, or the labels CSV's picks instead of the draw."""
    if y is None:  # an unlabeled pool: validation comes from its own file, nothing is held out
        base = Split(*(np.empty(0, dtype=np.int64) for _ in range(2)), np.arange(n), np.empty(0, dtype=np.int64))
    else:
        base = split_pool(
            y, n_labeled=0 if picks else cfg.n_labeled, seed=cfg.seed, num_classes=num_classes,
            val_per_class=None if own_val else cfg.val_per_class,
            val_fraction=None if own_val or cfg.val_per_class is not None else cfg.val_fraction,
            test_per_class=cfg.test_per_class, source=source)
    if picks is None:
        return base
    if missing := sorted(set(range(num_classes)) - set(picks.labels.tolist())):  # a person's choice: said, not refused
        print(f"sgan: warning: {cfg.labels_csv}: no image is labeled class {', '.join(map(str, missing))} "
              f"(of 0..{num_classes - 1}); the classifier sees no labeled example of it", file=sys.stderr)
    taken = np.intersect1d(picks.index, np.concatenate([base.validation, base.test]))
    if len(taken):
        raise SganError(f"{cfg.labels_csv}: image {taken[0]} is a validation or test image of this split "
                        f"(seed {cfg.seed}); suggest labels with the same data, validation settings and seed")
    return Split(np.sort(picks.index), base.validation, np.setdiff1d(base.unlabeled, picks.index), base.test)


def check_sets(pool: ImageSet, split: Split, sets: dict[str, ImageSet], unlabeled: ImageSet | None) -> None:
    """Every set has the pool's channels, and neither the validation nor the unlabeled set is
    empty (an empty set has no batch to draw: a run would spin)."""
    channels = pool.images.shape[1]
    for s in [*([unlabeled] if unlabeled is not None else []), *sets.values()]:
        if s.images.shape[1] != channels:
            raise SganError(f"{s.source}: {s.images.shape[1]}-channel images, but the labeled pool has {channels}")
    counts = (f"{len(split.labeled)} labeled, {len(split.validation)} validation and {len(split.test)} test "
              f"of its {len(pool)} images")
    if unlabeled is not None and len(unlabeled) == 0:
        raise SganError(f"{pool.source}: the split leaves no unlabeled image ({counts}); lower --n-labeled or "
                        "the validation or test share, or give --unlabeled")
    if len(sets["val"]) == 0:
        raise SganError(f"{pool.source}: the split leaves no validation image ({counts}); raise --val-fraction, "
                        "or give --val-per-class or --val-data")


def candidate_pool(cfg: Config, source: Source) -> tuple[ImageSet, np.ndarray]:
    """The pool (images at the run's size) and the images a person may be asked to label: all
    but the validation and test images that `sgan train` with this config would take. `cfg` is a
    plan's config (plan.py), fitted to `source`."""
    pool = read_pool(cfg, source)
    pool = dataclasses.replace(pool, images=resize(pool.images, cfg.image_size))
    split = split_of(cfg, pool.labels, len(pool), cfg.num_classes, own_val=bool(cfg.val_data), picks=None,
                     source=pool.source)
    return pool, np.sort(np.concatenate([split.labeled, split.unlabeled]))


def prepare(cfg: Config, source: Source) -> Prepared:
    """Every set of a run as tensors at the run's size: `cfg` is a plan's config (plan.py), its
    model, size, channels and classes chosen; `source` its labeled pool, opened."""
    pool = read_pool(cfg, source)
    picks = read_picks(cfg.labels_csv, pool) if cfg.labels_csv else None
    extra = {name: read_source(cfg, path) for name, path in cfg.eval.items()}
    val_set = read_source(cfg, cfg.val_data) if cfg.val_data else None
    if picks is None:
        y = pool.require_labels()
    elif pool.labels is None and (val_set is None or cfg.test_per_class):
        raise SganError(f"{pool.source}: has no labels, so validation must come from --val-data "
                        "(and no test set can be held out of it)")
    else:  # the pool's own labels, if any, only split off validation and test
        y = pool.labels
    num_classes = cfg.num_classes
    if y is not None:
        check_label_range(y, num_classes, pool.source)
    split = split_of(cfg, y, len(pool), num_classes, own_val=val_set is not None, picks=picks, source=pool.source)
    if picks is not None:  # the labeled images take the labels the person wrote
        check_label_range(picks.labels, num_classes, str(cfg.labels_csv))
        y = y.copy() if y is not None else np.zeros(len(pool), dtype=np.int64)  # unlabeled rows: never read
        y[picks.index] = picks.labels
    size = cfg.image_size
    pool_x = prepare_images(pool.images, size)  # the pool is resized and scaled once; parts index it
    streamed: StreamedFolder | None = None
    if cfg.unlabeled is None:
        unlabeled, x_ulb = pool.subset(split.unlabeled), pool_x[split.unlabeled]
    elif cfg.stream:  # only the file list now; decoded batch by batch while training
        if not Path(cfg.unlabeled).is_dir():
            raise SganError(f"--stream needs --unlabeled to be an image folder, got {cfg.unlabeled!r}")
        streamed = x_ulb = StreamedFolder.open(cfg.unlabeled, size=size, channels=cfg.channels)
    else:
        if cfg.unlabeled in extra:  # an evaluation set used unlabeled: transductive
            unlabeled = extra[cfg.unlabeled]
        elif cfg.unlabeled == "test":  # the submission images: transductive too
            unlabeled = read_source(cfg, cfg.test_data)
        else:
            unlabeled = read_source(cfg, cfg.unlabeled)
        x_ulb = prepare_images(unlabeled.images, size)
        if cfg.unlabeled_plus_pool:
            x_ulb = torch.cat([pool_x[split.unlabeled], x_ulb])  # (M_pool + M_source, C, H, W)
    held_out = {"test": pool.subset(split.test)} if cfg.test_per_class else {}
    sets = {"val": val_set or pool.subset(split.validation), **held_out, **extra}
    check_sets(pool, split, sets, None if streamed else unlabeled)
    evals = {name: labeled_tensors(s, num_classes, size) for name, s in extra.items()}
    val = labeled_tensors(val_set, num_classes, size) if val_set else pool_part(pool_x, y, split.validation)
    if cfg.test_per_class:
        evals = {"test": pool_part(pool_x, y, split.test), **evals}
    sources = [pool, *([] if streamed else [unlabeled]), *extra.values(), *([val_set] if val_set else [])]
    return Prepared(
        labeled=pool_part(pool_x, y, split.labeled),
        x_ulb=x_ulb,
        evals={"val": val, **evals},
        split=split,
        pool_stats=set_stats(pool_x),
        summary={"labeled": len(split.labeled), "unlabeled": len(x_ulb),
                 **{name: len(s) for name, s in sets.items()}},
        skipped=sorted({item for s in sources for item in s.skipped}),
        classes=pool.classes or (picks.classes if picks else []),
    )
