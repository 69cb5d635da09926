"""One method, ready to train: its networks (the classifier first, so that with one seed every
method starts from the same classifier weights), Adam optimizers and views, from the config."""

from __future__ import annotations

from functools import partial
from importlib import import_module
from inspect import signature

import torch

from ..config import Config
from ..data.transforms import colour_jitter, random_affine, random_cutout, random_flip, random_stroke
from ..models import build_classifier, memory_format
from ..registry import REGISTRY
from .base import Augment, Method, Wrap, same


def builder_class(spec: str) -> type:
    """The class a registry entry names ("module:Class" in sgan.methods)."""
    module, _, name = spec.partition(":")
    return getattr(import_module(f"{__package__}.{module}"), name)


# every registry entry's class, looked up when sgan.methods is imported: a misspelt module or class fails
# there, not when that method first trains
BUILDERS: dict[str, type] = {name: builder_class(spec.builder) for name, spec in REGISTRY.items()}


def augmentation(cfg: Config, generator: torch.Generator | None = None) -> Augment:
    """Random views drawn from `generator`: affine in the configured ranges, after a change of
    pen width if `aug_stroke` is set; for photos (the "auto" policy: 3 channels) first a left-right
    mirror of half the batch and after it a brightness/contrast jitter. A mirrored cat is a cat; a
    mirrored digit need not be its digit."""
    moved = partial(random_affine, degrees=cfg.aug_degrees, translate=cfg.aug_translate, scale=cfg.aug_scale,
                    generator=generator)
    affine = moved if not cfg.aug_stroke else lambda x: moved(random_stroke(x, cfg.aug_stroke, generator))
    policy = cfg.aug_policy if cfg.aug_policy != "auto" else ("photo" if cfg.channels == 3 else "affine")
    if policy == "affine":
        return affine
    return lambda x: colour_jitter(affine(random_flip(x, generator)), cfg.aug_jitter, generator)


def build_method(name: str, cfg: Config, *, device: torch.device, augment: Augment | None = None,
                 wrap: Wrap = same) -> Method:
    """The registry's class for `name`, built from a plan's config (plan.py). `augment` draws the
    random views (default: the configured ones on torch's global generator): of every training
    batch for methods that augment, and the pseudo-label view (one more draw of the same ranges:
    twice them was too strong, 87.0 vs 89.0% on Dig-MNIST at n = 1,000, seed 0, see
    docs/results.md), with a Cutout hole after it where `strong_cutout` is set. Each class's
    `build` is given what it asks for by name."""
    augment = augment or augmentation(cfg)
    strong = augment if not cfg.strong_cutout else lambda x: random_cutout(augment(x), cfg.strong_cutout)
    classifier = build_classifier(cfg).to(device, memory_format=memory_format(cfg))
    if cfg.compile:  # in place: checkpoints keep the plain module's keys
        classifier.compile()
    parts = {"classifier": classifier, "views": augment if REGISTRY[name].augments else same,
             "strong_augment": strong, "wrap": wrap, "amp": bool(cfg.amp)}
    builder = BUILDERS[name]
    return builder.build(cfg, **{k: v for k, v in parts.items() if k in signature(builder.build).parameters})
