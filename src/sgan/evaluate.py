"""Predictions and accuracy of a classifier on in-memory tensors."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_weights, read_shapes
from .config import Config, load_run_config
from .errors import SganError
from .methods import build_classifier


@torch.no_grad()
def predict_logits(classifier: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, K) in eval mode (running BatchNorm statistics, no dropout); restores the mode."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    out = torch.cat([classifier(x[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(x), batch_size)])
    classifier.train(was_training)
    return out


def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict_logits(classifier, x).argmax(dim=1) == y.cpu()).float().mean().item()


def load_run_classifier(run_dir: str | Path, method: str) -> tuple[Config, nn.Module]:
    """The trained classifier of `method` from a run folder, in eval mode on the CPU."""
    cfg = load_run_config(run_dir)
    if method not in cfg.methods:
        raise SganError(f"{run_dir}: run has no method {method!r} (it has {', '.join(cfg.methods)})")
    path = Path(run_dir) / f"{method}_classifier.safetensors"
    shapes = read_shapes(path)
    classifier = build_classifier(cfg, channels=shapes["channels"], num_classes=shapes["num_classes"])
    load_weights(classifier, path)
    return cfg, classifier.eval()
