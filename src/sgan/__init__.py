"""sgan: semi-supervised GAN image classifiers, always beside a supervised twin.

Names are imported when first used, so that `sgan --help` does not wait for torch."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["Classifier", "Config", "ImageSet", "Metrics", "SganError", "load", "load_images", "train"]
_HOMES = {"Classifier": "evaluate", "Config": "config", "ImageSet": "data", "Metrics": "run", "SganError": "errors",
          "load": "evaluate", "load_images": "data", "train": "trainer"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sgan' has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
