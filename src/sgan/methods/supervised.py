"""The supervised twin: the same classifier trained on the labeled images only."""

from __future__ import annotations

import torch
from torch import nn

from .. import losses
from ..config import Config
from .base import Augment, Wrap, adam, autocast, same


class Supervised:
    """Cross-entropy on (a view of) the labeled batch; the unlabeled batch is ignored."""

    generator = None

    def __init__(self, *, classifier: nn.Module, opt: torch.optim.Optimizer, label_smoothing: float = 0.0,
                 augment: Augment = same, wrap: Wrap = same, amp: bool = False) -> None:
        self.classifier, self.opt, self.augment, self.amp = classifier, opt, augment, amp
        self.label_smoothing = label_smoothing
        self.net = wrap(classifier)  # what the step runs: the classifier or its DistributedDataParallel

    @classmethod
    def build(cls, cfg: Config, *, classifier: nn.Module, views: Augment, wrap: Wrap, amp: bool) -> "Supervised":
        return cls(classifier=classifier, opt=adam(classifier, cfg), label_smoothing=cfg.label_smoothing,
                   augment=views, wrap=wrap, amp=amp)

    def train_step(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor) -> dict[str, float]:
        x_lb = self.augment(x_lb)
        with autocast(x_lb, self.amp):
            loss = losses.supervised_loss(self.net(x_lb), y_lb, self.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss_sup": loss.item()}

    def modules(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]
