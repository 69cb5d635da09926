"""ImageSet: the one in-memory form every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SganError


@dataclass
class ImageSet:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray | None = None  # (N,) int64, or None for unlabeled files
    ids: np.ndarray | None = None  # (N,) row ids from a Kaggle `id` column, kept for submissions
    source: str = ""  # where it came from, for error messages
    paths: np.ndarray | None = None  # (N,) file of each image, for image folders
    classes: list[str] = field(default_factory=list)  # class names of a labeled folder, by label
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) not decodable

    def __post_init__(self) -> None:
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        n = len(self.images)
        assert self.labels is None or self.labels.shape == (n,)
        assert self.ids is None or len(self.ids) == n
        assert self.paths is None or len(self.paths) == n

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "ImageSet":
        return ImageSet(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            ids=None if self.ids is None else self.ids[index],
            source=self.source,
            paths=None if self.paths is None else self.paths[index],
            classes=self.classes,
        )

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise no_labels(self.source)
        return self.labels


def no_labels(source: str) -> SganError:
    return SganError(f"{source}: has no labels (a CSV needs a 'label' column; an IDX image file needs its labels "
                     "file beside it; an image folder, one subfolder per class)")
