"""The registry of training methods: what each one is, in one place, read by config validation,
the trainer, sweeps and reports. How each trains lives in methods/ (a `train_step(x_lb, y_lb,
x_ulb) -> dict of floats` each); methods/build.py makes one with its networks.

Nothing here imports torch, so that reading the registry (e.g. to validate a config) is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    name: str
    uses_unlabeled: bool  # trains on the unlabeled images too
    has_generator: bool  # trains a generator against the classifier (an SGAN variant)
    conventional: bool  # random affine views of its training batches + per-set standardization of every set


REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("supervised", uses_unlabeled=False, has_generator=False, conventional=False),
    MethodSpec("conventional", uses_unlabeled=False, has_generator=False, conventional=True),
    MethodSpec("sgan", uses_unlabeled=True, has_generator=True, conventional=False),
    MethodSpec("sgan+aug", uses_unlabeled=True, has_generator=True, conventional=True),
)}
METHODS = tuple(REGISTRY)

__all__ = ["METHODS", "REGISTRY", "MethodSpec"]
