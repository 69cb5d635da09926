"""Pixel transforms: uint8 images -> float tensors in the generator's output range."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, h, w) uint8 -> (N, C, size, size) uint8; a no-op when already that size."""
    if images.shape[-2:] == (size, size):
        return images
    x = torch.from_numpy(images).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1], the tanh generator's range (the notebook used [0, 1],
    which a tanh generator can match only on half its range)."""
    x = torch.as_tensor(images).float()
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8, the inverse of to_model_range (for sample grids)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
