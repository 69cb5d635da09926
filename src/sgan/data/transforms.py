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


def set_stats(x: torch.Tensor) -> tuple[float, float]:
    """Pixel mean and std of a whole set (N, C, H, W), from its own pixels only."""
    x64 = x.double()
    return x64.mean().item(), x64.std().item()


def shift_scale(x: torch.Tensor, *, own: tuple[float, float], target: tuple[float, float]) -> torch.Tensor:
    """Pixels of a set whose mean/std are `own` moved to mean/std `target` (per-set
    standardization: a set from another scanner or pen lands on the training set's intensity
    scale, no labels used)."""
    return (x - own[0]) / max(own[1], 1e-8) * target[1] + target[0]


def random_affine(x: torch.Tensor, *, degrees: float, translate: float, scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A different small rotation (+-degrees), shift (+-translate of the size) and zoom
    (1 +- scale) for every image of the batch (B, C, H, W); edges repeat the border pixels."""
    b = len(x)
    rand = torch.rand(b, 4, generator=generator).to(x.device) * 2 - 1  # (B, 4) in [-1, 1]
    angle = rand[:, 0] * degrees * torch.pi / 180
    zoom = 1 + rand[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, rand[:, 2] * translate * 2], dim=1),
                         torch.stack([sin, cos, rand[:, 3] * translate * 2], dim=1)], dim=1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_stroke(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, H, W) with its lines made thicker or thinner, as by another pen: blended
    towards its 3x3 max filter (dilation) or min filter (erosion) by a share uniform in +-strength.
    Either sign does both, so bright-on-dark and dark-on-bright drawings are treated alike."""
    share = (torch.rand(len(x), 1, 1, 1, generator=generator) * 2 - 1).to(x.device) * strength  # (B, 1, 1, 1)
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)  # (B, C, H, W)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return x + share.abs() * (torch.where(share > 0, dilated, eroded) - x)


def colour_jitter(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, H, W) in [-1, 1] gets its own brightness shift and contrast gain, both
    uniform in +-strength."""
    shift, gain = (torch.rand(2, len(x), 1, 1, 1, generator=generator) * 2 - 1).to(x.device) * strength  # (B, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * (1 + gain) + mean + shift).clamp(-1, 1)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Half the images of the batch (B, C, H, W), drawn at random, mirrored left to right."""
    mirror = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)  # (B,)
    return torch.where(mirror[:, None, None, None], x.flip(-1), x)


def random_cutout(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (B, C, H, W) with one square of side fraction x H set to 0 (grey in [-1, 1]),
    centred anywhere in the image, so that near an edge only part of it falls inside (Cutout,
    DeVries & Taylor 2017, as FixMatch uses it)."""
    b, _, h, w = x.shape
    half = fraction * h / 2
    centre = torch.rand(b, 2, generator=generator).to(x.device) * torch.tensor([h, w], device=x.device)  # (B, 2)
    rows = (torch.arange(h, device=x.device) + 0.5 - centre[:, :1]).abs() < half  # (B, H)
    cols = (torch.arange(w, device=x.device) + 0.5 - centre[:, 1:]).abs() < half  # (B, W)
    hole = rows[:, None, :, None] & cols[:, None, None, :]  # (B, 1, H, W)
    return x.masked_fill(hole, 0.0)
