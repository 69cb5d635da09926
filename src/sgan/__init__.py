"""sgan: semi-supervised GAN image classifiers, always beside a supervised twin."""

from .config import Config
from .data import ImageSet, load_images
from .errors import SganError
from .run import Metrics
from .trainer import train

__all__ = ["Config", "ImageSet", "Metrics", "SganError", "load_images", "train"]
__version__ = "0.1.0"
