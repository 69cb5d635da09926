"""Seeded, class-balanced splits: validation, labeled budget, the rest unlabeled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SganError


@dataclass
class Split:
    labeled: np.ndarray  # indices into the pool
    validation: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray  # empty unless the protocol holds a test set out of the pool

    def to_dict(self) -> dict[str, list[int]]:
        return {k: getattr(self, k).tolist() for k in ("labeled", "validation", "unlabeled", "test")}


def per_class_counts(total: int, classes: int) -> np.ndarray:
    """`total` spread over classes as evenly as possible; the first classes take the remainder."""
    counts = np.full(classes, total // classes)
    counts[: total % classes] += 1
    return counts


def split_pool(labels: np.ndarray, *, n_labeled: int, seed: int, num_classes: int,
               val_per_class: int | None = None, val_fraction: float | None = None,
               test_per_class: int = 0, source: str = "pool") -> Split:
    """Per class (in class order), one permutation from numpy default_rng(seed): the first
    `test_per_class` images are test, the next validation, the next labeled, the rest
    unlabeled (BENCHMARK.md's rule). With neither validation argument, no validation images
    are taken from the pool."""
    if 0 < n_labeled < num_classes:
        raise SganError(f"{source}: label budget {n_labeled} leaves classes {n_labeled}..{num_classes - 1} without a "
                        f"labeled image; the {num_classes} classes need n_labeled >= {num_classes}")
    rng = np.random.default_rng(seed)
    lab_counts = per_class_counts(n_labeled, num_classes)
    labeled, validation, unlabeled, test = [], [], [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) == 0:
            raise SganError(f"{source}: class {c} has no images")
        if val_per_class is not None:
            n_val = val_per_class
        elif val_fraction is not None:
            n_val = int(round(val_fraction * len(idx)))
        else:
            n_val = 0
        n_lab = int(lab_counts[c])
        if test_per_class + n_val + n_lab > len(idx):
            raise SganError(
                f"{source}: label budget {n_labeled} needs {n_lab} labeled images of class {c}, "
                f"but it has {len(idx)} and {test_per_class + n_val} go to test and validation")
        test.append(idx[:test_per_class])
        idx = idx[test_per_class:]
        validation.append(idx[:n_val])
        labeled.append(idx[n_val:n_val + n_lab])
        unlabeled.append(idx[n_val + n_lab:])
    return Split(*(np.sort(np.concatenate(parts)) for parts in (labeled, validation, unlabeled, test)))
