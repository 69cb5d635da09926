"""The registry of training methods: what each one is and which class in `sgan.methods` trains
it, in one place, read by config validation, the trainer, sweeps and reports. Adding a method is
one entry here plus one class in methods/ (a `train_step(x_lb, y_lb, x_ulb) -> dict of floats`
and a `build(cfg, ...)` classmethod naming what it uses); methods/build.py looks every entry's
class up when `sgan.methods` is imported, so a misspelt one fails there.

Nothing here imports torch, so that reading the registry (e.g. to validate a config) is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    name: str
    builder: str  # "module:Class": the class of sgan.methods.<module> that builds and trains it
    uses_unlabeled: bool  # trains on the unlabeled images too
    has_generator: bool  # trains a generator against the classifier (an SGAN variant)
    augments: bool  # random views (affine, photo policy) of every training batch


REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("supervised", "supervised:Supervised", uses_unlabeled=False, has_generator=False, augments=False),
    MethodSpec("conventional", "supervised:Supervised", uses_unlabeled=False, has_generator=False, augments=True),
    # the SGAN's pseudo-label term alone, on augmented batches: what the unlabeled images buy without a generator
    MethodSpec("fixmatch", "fixmatch:FixMatch", uses_unlabeled=True, has_generator=False, augments=True),
    MethodSpec("sgan", "sgan:SGAN", uses_unlabeled=True, has_generator=True, augments=False),
    MethodSpec("sgan+aug", "sgan:SGAN", uses_unlabeled=True, has_generator=True, augments=True),
)}
METHODS = tuple(REGISTRY)

__all__ = ["METHODS", "REGISTRY", "MethodSpec"]
