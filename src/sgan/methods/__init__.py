"""How each method trains: `train_step(x_lb, y_lb, x_ulb) -> dict of floats` (what each method
is: registry.py)."""

from .base import Augment, Method
from .build import augmentation, build_method
from .sgan import SGAN, frozen_bn_stats, frozen_params
from .supervised import Supervised

__all__ = ["SGAN", "Augment", "Method", "Supervised", "augmentation", "build_method", "frozen_bn_stats",
           "frozen_params"]
