"""Plain nn.Modules; they know nothing of files or training. The two factories below are the
one place a config becomes networks (training, evaluation and suggest-labels all use them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .classifier import ClassifierNet, FlipAveraged
from .digits import DigitClassifier, DigitGenerator, GaussianNoise
from .photos import DCGANGenerator, ResNet9Classifier, ResNet18Classifier

if TYPE_CHECKING:
    from ..config import Config


def planned(cfg: Config) -> tuple[int, int]:
    """A plan's config (plan.py: its model, image size, channels and classes chosen): its channels
    and classes."""
    if cfg.model == "auto" or cfg.image_size is None or cfg.channels is None or cfg.num_classes is None:
        raise ValueError("the config's model, image size, channels and classes follow the data: plan it first "
                         "(sgan.plan.make_plan)")
    return cfg.channels, cfg.num_classes


def build_classifier(cfg: Config) -> nn.Module:
    channels, num_classes = planned(cfg)
    if cfg.model == "resnet18":
        return ResNet18Classifier(num_classes=num_classes, channels=channels, image_size=cfg.image_size,
                                  input_noise=cfg.input_noise, stem=cfg.resnet_stem)
    if cfg.model == "resnet9":
        return ResNet9Classifier(num_classes=num_classes, channels=channels, image_size=cfg.image_size,
                                 width=cfg.width, input_noise=cfg.input_noise, stem=cfg.resnet_stem)
    return DigitClassifier(num_classes=num_classes, channels=channels, input_noise=cfg.input_noise, width=cfg.width)


def evaluated(cfg: Config, classifier: nn.Module) -> nn.Module:
    """What accuracy is measured on: the classifier, or with --tta-flip its flip-averaged
    predictions (the same weights, for every method alike)."""
    return FlipAveraged(classifier) if cfg.tta_flip else classifier


def memory_format(cfg: Config) -> torch.memory_format:
    """The networks' layout: channels_last (NHWC) unless --no-channels-last."""
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def build_generator(cfg: Config) -> nn.Module:
    channels, _ = planned(cfg)
    if cfg.model in ("resnet18", "resnet9"):
        return DCGANGenerator(z_dim=cfg.z_dim, channels=channels, image_size=cfg.image_size, ngf=cfg.generator_width)
    return DigitGenerator(z_dim=cfg.z_dim, channels=channels, width=cfg.generator_width)


__all__ = ["ClassifierNet", "DCGANGenerator", "FlipAveraged", "evaluated", "DigitClassifier", "DigitGenerator", "GaussianNoise", "ResNet9Classifier", "ResNet18Classifier",
           "build_classifier", "build_generator", "memory_format"]
