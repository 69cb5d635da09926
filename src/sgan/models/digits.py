"""The 28x28 generator/discriminator pair of the Kannada-MNIST Keras notebook, in PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from .classifier import ClassifierNet

LEAK = 0.01  # Keras LeakyReLU alpha in the notebook


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training only (Keras' GaussianNoise). On the discriminator's
    input it is the regulariser Salimans et al. 2016 used for semi-supervised MNIST."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            # drawn in the contiguous layout: filling a channels_last tensor is ~6x slower on the CPU
            # (90 ms of a 1.3 s step at 128 px per classifier pass)
            return x + self.std * torch.randn(x.shape, dtype=x.dtype, device=x.device)
        return x


class Dropout(nn.Module):
    """nn.Dropout's math (zero with probability p, scale the rest by 1 / (1 - p)) with the mask
    drawn by rand_like: ~3x faster on CPU than the bernoulli_ that nn.Dropout draws it with."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p  # (B, F) bool
        return x * keep / (1 - self.p)


class DigitGenerator(nn.Module):
    """z (B, z_dim) -> images (B, C, 28, 28) in [-1, 1]. Width w: 4w, 2w, w channels (the
    notebook's 256, 128, 64 at w = 64); its cost grows as w^2 (the 7 -> 14 convolution dominates)."""

    def __init__(self, *, z_dim: int = 100, channels: int = 1, width: int = 64) -> None:
        super().__init__()
        self.z_dim, self.width = z_dim, width
        self.project = nn.Linear(z_dim, 7 * 7 * 4 * width)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 3, stride=2, padding=1, output_padding=1),  # 7 -> 14
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(LEAK),
            nn.ConvTranspose2d(2 * width, width, 3, stride=1, padding=1),  # 14 -> 14
            nn.BatchNorm2d(width),
            nn.LeakyReLU(LEAK),
            nn.ConvTranspose2d(width, channels, 3, stride=2, padding=1, output_padding=1),  # 14 -> 28
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, 4 * self.width, 7, 7)  # (B, 4w, 7, 7)
        return self.net(h)  # (B, C, 28, 28)


class DigitClassifier(ClassifierNet):
    """The SGAN discriminator and the supervised twin: images (B, C, 28, 28) -> K logits.

    `features` is the shared core (B, 64w); `head` maps it to class logits. The real/fake
    output is not a separate layer: D(x) = Z / (Z + 1) with Z = sum(exp(logits)). Width w:
    w, 2w, 4w channels (the notebook's 32, 64, 128 at w = 32); its cost grows as w^2.
    """

    def __init__(self, *, num_classes: int = 10, channels: int = 1, dropout: float = 0.5,
                 input_noise: float = 0.0, width: int = 32) -> None:
        super().__init__()
        self.core = nn.Sequential(
            GaussianNoise(input_noise),
            nn.Conv2d(channels, width, 3, stride=2, padding=1),  # 28 -> 14
            nn.LeakyReLU(LEAK),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # 14 -> 7
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),  # 7 -> 4
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(LEAK),
            nn.Flatten(),  # (B, 4w * 4 * 4)
        )
        self.head = nn.Sequential(Dropout(dropout), nn.Linear(4 * width * 4 * 4, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x)  # (B, 64w)
