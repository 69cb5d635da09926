"""Data: readers -> ImageSet -> split -> tensors."""

from .imageset import ImageSet
from .prepare import Prepared, prepare
from .readers import load_images
from .splits import Split, split_pool

__all__ = ["ImageSet", "Prepared", "Split", "load_images", "prepare", "split_pool"]
