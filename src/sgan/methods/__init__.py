"""How each method trains: `train_step(x_lb, y_lb, x_ulb) -> dict of floats` (what each method
is, and which class here builds it: registry.py)."""

from .base import Augment, Method, frozen_bn_stats, frozen_params
from .build import augmentation, build_method
from .fixmatch import FixMatch
from .sgan import SGAN
from .supervised import Supervised

__all__ = ["SGAN", "Augment", "FixMatch", "Method", "Supervised", "augmentation", "build_method", "frozen_bn_stats",
           "frozen_params"]
