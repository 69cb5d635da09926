"""Plain nn.Modules; they know nothing of files or training."""

from .digits import DigitClassifier, DigitGenerator, GaussianNoise
from .photos import DCGANGenerator, ResNet18Classifier

__all__ = ["DCGANGenerator", "DigitClassifier", "DigitGenerator", "GaussianNoise", "ResNet18Classifier"]
