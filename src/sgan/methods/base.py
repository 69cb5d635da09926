"""What every method shares: the interface the trainer calls, and the bf16 forward context."""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

import torch
from torch import nn

Augment = Callable[[torch.Tensor], torch.Tensor]  # a random view of a batch (B, C, H, W)
Wrap = Callable[[nn.Module], nn.Module]  # e.g. into DistributedDataParallel


T = TypeVar("T")


def same(x: T) -> T:
    """The identity: no wrapping, or no augmentation."""
    return x


class Method(Protocol):
    """One method's networks and optimizers, and how one step updates them. It makes its own
    views of the batches it is given (augmentation, pseudo-label views)."""

    classifier: nn.Module
    generator: nn.Module | None  # the SGAN's; None for methods without one

    def train_step(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor) -> dict[str, float]: ...

    def modules(self) -> dict[str, nn.Module]: ...

    def optimizers(self) -> list[torch.optim.Optimizer]: ...


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up on `device`: CUDA GPUs with bf16, CPUs with AMX
    tiles (2.4x on the 32 px ResNet18 SGAN step, 1.7x on the 28 px one); CPUs without bf16 units
    emulate it and get slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check; private, so looked up
    return device.type == "cpu" and amx is not None and bool(amx())


def amp_enabled(amp: bool | None, device: torch.device) -> bool:
    """The config's --amp/--no-amp, else bf16 wherever it is fast."""
    return amp if amp is not None else bf16_is_fast(device)


def autocast(x: torch.Tensor, enabled: bool) -> torch.autocast:
    """bfloat16 forward passes when enabled (losses that need float32 get it from autocast; no
    gradient scaling, bf16 has float32's range); backward passes run outside it."""
    return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=enabled)
