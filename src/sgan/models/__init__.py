"""Plain nn.Modules; they know nothing of files or training."""

from .digits import DigitClassifier, DigitGenerator, GaussianNoise

__all__ = ["DigitClassifier", "DigitGenerator", "GaussianNoise"]
