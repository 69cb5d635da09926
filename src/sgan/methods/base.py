"""What every method shares: the interface the trainer calls, and the bf16 forward context."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Protocol, TypeVar

import torch
from torch import nn
from torch.profiler import record_function

from .. import losses
from ..config import Config

Augment = Callable[[torch.Tensor], torch.Tensor]  # a random view of a batch (B, C, H, W)
Wrap = Callable[[nn.Module], nn.Module]  # e.g. into DistributedDataParallel


def adam(module: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    # fused: one kernel for all parameters (same update rule; ~6% faster per SGAN step on 2 CPU cores)
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=True)


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


@contextmanager
def frozen_params(model: nn.Module) -> Iterator[None]:
    """No weight gradients for `model` (inputs still get theirs): the G step needs D's
    input gradients only."""
    model.requires_grad_(False)
    try:
        yield
    finally:
        model.requires_grad_(True)


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Normalise with batch statistics but leave the running statistics alone, so that
    generated batches never leak into the statistics used to classify real images."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum


def labeled_and_unlabeled(net: nn.Module, bare: nn.Module, x_lb: torch.Tensor, x_ulb: torch.Tensor, *,
                          split_bn: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the labeled (B_lb, K) and unlabeled (B_ulb, K) batches through `net` (the
    classifier `bare`, or its DistributedDataParallel): one BatchNorm batch, or with `split_bn`
    two, the running statistics from the labeled images only."""
    if split_bn:
        logits_lb = net(x_lb)
        with frozen_bn_stats(bare):
            logits_ulb = net(x_ulb)  # normalised with its own batch statistics
        return logits_lb, logits_ulb
    logits_lb, logits_ulb = net(torch.cat([x_lb, x_ulb])).split([len(x_lb), len(x_ulb)])
    return logits_lb, logits_ulb


def pseudo_label_term(net: nn.Module, bare: nn.Module, logits_ulb: torch.Tensor, x_ulb: torch.Tensor,
                      strong_augment: Augment, threshold: float) -> tuple[torch.Tensor, dict[str, float]]:
    """FixMatch's term: a strong view of each unlabeled image (B, C, H, W) against the class its
    plain view's logits (B, K) predict with at least `threshold` confidence; logged with the share
    of images that passed (the mask rate: loss_pl = 0 with mask_rate 0 means none passed)."""
    with record_function("strong view"):
        strong = strong_augment(x_ulb)
    with frozen_bn_stats(bare), record_function("D: strong view pass"):
        logits_strong = net(strong)  # (B, K)
    weak = logits_ulb.detach()
    loss = losses.pseudo_label_loss(weak, logits_strong, threshold)
    mask_rate = losses.pseudo_labels(weak, threshold)[1].mean()
    return loss, {"loss_pl": loss.item(), "mask_rate": mask_rate.item()}
