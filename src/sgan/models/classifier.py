"""What every classifier (and SGAN discriminator) shares: features, then a head."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierNet(nn.Module):
    """images (B, C, H, W) -> K logits: `features` (B, F), then `head`. With `with_features` the
    forward also returns the features, so that one pass (through DistributedDataParallel too)
    serves a method that needs both: the SGAN's feature-matching target."""

    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)  # (B, F)
        logits = self.head(h)  # (B, K)
        return (logits, h) if with_features else logits


class FlipAveraged(nn.Module):
    """Test-time augmentation: the class probabilities of each image (B, C, H, W) and of its
    left-right mirror averaged, returned as logits (their log, B x K) so that argmax and
    softmax read them as any classifier's."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.classifier(torch.cat([x, x.flip(3)])).float().softmax(dim=1)  # (2B, K)
        plain, mirrored = both.chunk(2)
        return ((plain + mirrored) / 2).log()
