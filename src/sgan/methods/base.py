"""What every method shares: the interface the trainer calls, and the bf16 forward context."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Protocol, TypeVar

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
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
                          split_bn: bool, with_features: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits of the labeled (B_lb, K) and unlabeled (B_ulb, K) batches through `net` (the
    classifier `bare`, or its DistributedDataParallel), and with `with_features` the unlabeled
    batch's features (B_ulb, F) from the same pass (else None): one BatchNorm batch, or with
    `split_bn` two, the running statistics from the labeled images only."""
    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return net(x, with_features=True) if with_features else (net(x), None)

    if split_bn:
        logits_lb, _ = run(x_lb)
        with frozen_bn_stats(bare):
            logits_ulb, features_ulb = run(x_ulb)  # normalised with its own batch statistics
        return logits_lb, logits_ulb, features_ulb
    logits, features = run(torch.cat([x_lb, x_ulb]))
    logits_lb, logits_ulb = logits.split([len(x_lb), len(x_ulb)])
    return logits_lb, logits_ulb, None if features is None else features[len(x_lb):]


def moving_average(module: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `module`'s weights and buffers, moved by
    `update_parameters(module)` after each step (the first update copies them)."""
    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class PseudoLabeler(nn.Module):
    """FixMatch's term (Sohn et al. 2020): a strong view of each unlabeled image against the class
    its plain view predicts with enough confidence. Options, each off by default:
    - `teacher_decay` d > 0: the plain view's prediction comes from a moving average of the
      classifier's weights (an EMA teacher, updated by `follow` after every step, run in eval
      mode), not from the classifier's own pass;
    - `thresholds` "flexmatch": class-wise thresholds (`losses.flexmatch_thresholds`) from a
      moving average of each batch's confidently predicted class shares (FlexMatch keeps one per
      image; a moving average needs no image indices);
    - `align`: ReMixMatch's distribution alignment of the plain view's probabilities towards the
      labeled batches' class shares, both as moving averages.
    Its buffers (and the teacher) are training state, saved in checkpoints."""

    MOMENTUM = 0.99  # of the moving averages of class shares: about the last 100 batches

    def __init__(self, *, num_classes: int, strong_augment: Augment, threshold: float = 0.95,
                 thresholds: str = "fixed", align: bool = False, teacher_decay: float = 0.0,
                 classifier: nn.Module | None = None) -> None:
        super().__init__()
        if thresholds not in ("fixed", "flexmatch"):
            raise ValueError(f"unknown thresholds {thresholds!r}")
        if teacher_decay > 0 and classifier is None:
            raise ValueError("an EMA teacher needs the classifier it averages")
        self.strong_augment, self.threshold, self.thresholds, self.align = strong_augment, threshold, thresholds, align
        uniform = torch.full((num_classes,), 1 / num_classes)
        self.register_buffer("confident_share", torch.zeros(num_classes))  # (K,) FlexMatch's s(c)
        self.register_buffer("model_mean", uniform.clone())  # (K,) mean plain-view prediction
        self.register_buffer("labeled_share", uniform.clone())  # (K,) class shares of the labeled batches
        self.teacher = None if teacher_decay == 0 else moving_average(classifier, teacher_decay)

    @property
    def has_state(self) -> bool:
        """Whether any option keeps state between steps (else nothing to checkpoint)."""
        return self.teacher is not None or self.thresholds != "fixed" or self.align

    def follow(self, classifier: nn.Module) -> None:
        """After each optimizer step: the teacher moves towards the classifier's new weights."""
        if self.teacher is not None:
            self.teacher.update_parameters(classifier)

    def moving(self, name: str, batch_value: torch.Tensor) -> torch.Tensor:
        average = getattr(self, name)
        average.mul_(self.MOMENTUM).add_(batch_value.float(), alpha=1 - self.MOMENTUM)
        return average

    def term(self, net: nn.Module, bare: nn.Module, logits_ulb: torch.Tensor, x_ulb: torch.Tensor,
             y_lb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss on the unlabeled batch x_ulb (B, C, H, W) whose plain-view logits through
        `net` are `logits_ulb` (B, K), and what to log: the loss, the share of images that passed
        (the mask rate: loss_pl = 0 with mask_rate 0 means none passed), and with class-wise
        thresholds their mean."""
        with torch.no_grad():
            if self.teacher is not None:
                self.teacher.eval()
                logits_ulb = self.teacher(x_ulb)
            probs = logits_ulb.detach().float().softmax(dim=1)  # (B, K)
            if self.align:
                shares = nn.functional.one_hot(y_lb, len(self.labeled_share)).float().mean(dim=0)  # (K,)
                probs = losses.align_distribution(probs, self.moving("model_mean", probs.mean(dim=0)),
                                                  self.moving("labeled_share", shares))
            threshold: float | torch.Tensor = self.threshold
            if self.thresholds == "flexmatch":
                target, confident = losses.pseudo_labels(probs, self.threshold)
                claimed = torch.zeros_like(self.confident_share).index_add_(0, target, confident) / len(probs)
                threshold = losses.flexmatch_thresholds(self.moving("confident_share", claimed), self.threshold)
        with record_function("strong view"):
            strong = self.strong_augment(x_ulb)
        with frozen_bn_stats(bare), record_function("D: strong view pass"):
            logits_strong = net(strong)  # (B, K)
        loss = losses.pseudo_label_loss(probs, logits_strong, threshold)
        logged = {"loss_pl": loss.item(), "mask_rate": losses.pseudo_labels(probs, threshold)[1].mean().item()}
        if isinstance(threshold, torch.Tensor):
            logged["threshold"] = threshold.mean().item()
        return loss, logged

    @classmethod
    def build(cls, cfg: Config, *, strong_augment: Augment, classifier: nn.Module) -> "PseudoLabeler":
        return cls(num_classes=cfg.num_classes, strong_augment=strong_augment, threshold=cfg.pseudo_label_threshold,
                   thresholds=cfg.pseudo_label_thresholds, align=cfg.distribution_alignment,
                   teacher_decay=cfg.pseudo_label_teacher, classifier=classifier).to(
                       next(classifier.parameters()).device)
