"""Plain nn.Modules; they know nothing of files or training. The two factories below are the
one place a config becomes networks (training, evaluation and suggest-labels all use them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .digits import DigitClassifier, DigitGenerator, GaussianNoise
from .photos import DCGANGenerator, ResNet9Classifier, ResNet18Classifier

if TYPE_CHECKING:
    from ..config import Config


def build_classifier(cfg: Config, *, channels: int, num_classes: int) -> nn.Module:
    if cfg.model == "resnet18":
        return ResNet18Classifier(num_classes=num_classes, channels=channels, image_size=cfg.image_size,
                                  input_noise=cfg.input_noise, stem=cfg.resnet_stem)
    if cfg.model == "resnet9":
        return ResNet9Classifier(num_classes=num_classes, channels=channels, image_size=cfg.image_size,
                                 width=cfg.width, input_noise=cfg.input_noise)
    return DigitClassifier(num_classes=num_classes, channels=channels, input_noise=cfg.input_noise)


def memory_format(cfg: Config) -> torch.memory_format:
    """The networks' layout: channels_last (NHWC) unless --no-channels-last."""
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def build_generator(cfg: Config, *, channels: int) -> nn.Module:
    if cfg.model in ("resnet18", "resnet9"):
        return DCGANGenerator(z_dim=cfg.z_dim, channels=channels, image_size=cfg.image_size, ngf=cfg.generator_width)
    return DigitGenerator(z_dim=cfg.z_dim, channels=channels)


__all__ = ["DCGANGenerator", "DigitClassifier", "DigitGenerator", "GaussianNoise", "ResNet9Classifier", "ResNet18Classifier",
           "build_classifier", "build_generator", "memory_format"]
