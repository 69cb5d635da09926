"""FixMatch without a generator: the SGAN's pseudo-label term alone (Sohn et al. 2020).

The same classifier, optimizer, views, BatchNorm batches, threshold and weight as the SGAN's
pseudo-label term, and no generator and no real/fake terms, so that the SGAN minus this method is
what the generator bought.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import losses
from ..config import Config
from .base import Augment, PseudoLabeler, Wrap, adam, autocast, labeled_and_unlabeled, same


class FixMatch:
    """Cross-entropy on the labeled batch plus `pseudo_label_weight` x the pseudo-label loss of a
    strong view of each unlabeled image against its plain view's confident class."""

    generator = None

    def __init__(self, *, classifier: nn.Module, opt: torch.optim.Optimizer, pseudo: PseudoLabeler,
                 pseudo_label_weight: float = 1.0, split_bn: bool = False, label_smoothing: float = 0.0,
                 augment: Augment = same, wrap: Wrap = same, amp: bool = False) -> None:
        if pseudo_label_weight <= 0:
            raise ValueError("fixmatch learns from unlabeled images through its pseudo-label term: weight must be > 0")
        self.classifier, self.opt, self.amp = classifier, opt, amp
        self.net = wrap(classifier)
        self.augment, self.pseudo, self.pseudo_label_weight = augment, pseudo, pseudo_label_weight
        self.split_bn, self.label_smoothing = split_bn, label_smoothing

    @classmethod
    def build(cls, cfg: Config, *, classifier: nn.Module, views: Augment, strong_augment: Augment, wrap: Wrap,
              amp: bool) -> "FixMatch":
        pseudo = PseudoLabeler.build(cfg, strong_augment=strong_augment, classifier=classifier)
        return cls(classifier=classifier, opt=adam(classifier, cfg), pseudo=pseudo,
                   pseudo_label_weight=cfg.pseudo_label_weight, split_bn=cfg.split_bn,
                   label_smoothing=cfg.label_smoothing, augment=views, wrap=wrap, amp=amp)

    def train_step(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor) -> dict[str, float]:
        x_ulb, x_lb = self.augment(x_ulb), self.augment(x_lb)  # the SGAN's order of random draws
        with autocast(x_ulb, self.amp):
            logits_lb, logits_ulb, _ = labeled_and_unlabeled(self.net, self.classifier, x_lb, x_ulb,
                                                             split_bn=self.split_bn)
            loss_sup = losses.supervised_loss(logits_lb, y_lb, self.label_smoothing)
            loss_pl, logged = self.pseudo.term(self.net, self.classifier, logits_ulb, x_ulb, y_lb)
            loss = loss_sup + self.pseudo_label_weight * loss_pl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.pseudo.follow(self.classifier)
        return {"loss_sup": loss_sup.item(), **logged, "loss": loss.item()}

    def modules(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, **({"pseudo_labeler": self.pseudo} if self.pseudo.has_state else {})}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]
