"""The SGAN step (Salimans et al. 2016): a K-class discriminator that is also the classifier.

Labeled images train it with cross-entropy, unlabeled real images must look real, generated
images fake; the generator is then trained against it. Two labelled phases, as in
pytorch/examples' DCGAN: D on `fake.detach()`, then G.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from .. import losses
from ..config import Config
from ..models import build_generator, memory_format
from .base import (Augment, PseudoLabeler, Wrap, adam, autocast, frozen_bn_stats, frozen_params,
                   labeled_and_unlabeled, same)


class SGAN:
    """K-class discriminator: labeled -> cross-entropy, unlabeled -> real, generated -> fake."""

    def __init__(self, *, classifier: nn.Module, generator: nn.Module, opt_d: torch.optim.Optimizer,
                 opt_g: torch.optim.Optimizer, z_dim: int, fake_batch_size: int | None = None,
                 generator_loss: str = "nonsaturating", unlabeled_weight: float = 1.0, split_bn: bool = False,
                 pseudo: PseudoLabeler | None = None, pseudo_label_weight: float = 0.0, label_smoothing: float = 0.0,
                 augment: Augment = same, diff_augment: bool = False, pull_away_weight: float = 0.0,
                 wrap: Wrap = same, amp: bool = False) -> None:
        if pseudo_label_weight > 0 and pseudo is None:
            raise ValueError("a pseudo-label weight needs a PseudoLabeler")
        self.classifier, self.generator, self.amp = classifier, generator, amp
        # the D phase and the generator forward run these (DistributedDataParallel under torchrun);
        # the G phase calls the bare classifier: it needs no weight gradients there, so none to average
        self.d_net, self.g_net = wrap(classifier), wrap(generator)
        self.opt_d, self.opt_g = opt_d, opt_g
        self.z_dim, self.generator_loss, self.unlabeled_weight = z_dim, generator_loss, unlabeled_weight
        self.fake_batch_size = fake_batch_size  # None: as many as unlabeled images
        self.split_bn, self.label_smoothing = split_bn, label_smoothing
        self.pseudo = pseudo if pseudo_label_weight > 0 else None
        self.pseudo_label_weight = pseudo_label_weight
        self.augment = augment  # training views; the pseudo-label views are the PseudoLabeler's
        self.diff_augment = diff_augment  # the generated batch through `augment` too, in both phases
        self.pull_away_weight = pull_away_weight

    @classmethod
    def build(cls, cfg: Config, *, classifier: nn.Module, views: Augment, strong_augment: Augment, wrap: Wrap,
              amp: bool) -> "SGAN":
        """The generator is made after the classifier, so that every method of a seed starts from
        the same classifier weights; on the classifier's device."""
        generator = build_generator(cfg).to(next(classifier.parameters()).device, memory_format=memory_format(cfg))
        if cfg.compile:
            generator.compile()
        pseudo = PseudoLabeler.build(cfg, strong_augment=strong_augment,
                                     classifier=classifier) if cfg.pseudo_label_weight > 0 else None
        return cls(classifier=classifier, generator=generator, opt_d=adam(classifier, cfg), opt_g=adam(generator, cfg),
                   z_dim=cfg.z_dim, fake_batch_size=cfg.fake_batch_size, generator_loss=cfg.generator_loss,
                   unlabeled_weight=cfg.unlabeled_weight, split_bn=cfg.split_bn, pseudo=pseudo,
                   pseudo_label_weight=cfg.pseudo_label_weight, label_smoothing=cfg.label_smoothing,
                   augment=views, diff_augment=cfg.diff_augment, pull_away_weight=cfg.pull_away_weight,
                   wrap=wrap, amp=amp)

    def train_step(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor) -> dict[str, float]:
        # record_function labels name the step's parts for benchmarks/profile_step.py (microseconds unprofiled)
        with record_function("augment"):
            x_ulb, x_lb = self.augment(x_ulb), self.augment(x_lb)  # in this order: the views' random draws
        z = torch.randn(self.fake_batch_size or len(x_ulb), self.z_dim, device=x_ulb.device)

        # Phase 1: discriminator on real images and on fake.detach()
        with autocast(x_ulb, self.amp):
            with record_function("generator forward"):
                fake = self.g_net(z)  # (B, C, H, W); one generator forward serves both phases
        if self.diff_augment:  # DiffAugment (Zhao et al. 2020): D sees generated images in the real ones'
            with record_function("augment"):  # views, and G learns through the same differentiable view
                fake = self.augment(fake.float())
        with autocast(x_ulb, self.amp):
            loss_d, logged, target = self.discriminator_loss(x_lb, y_lb, x_ulb, fake.detach())
        with record_function("D backward"):
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
        with record_function("D optimizer"):
            self.opt_d.step()
        if self.pseudo is not None:
            self.pseudo.follow(self.classifier)

        # Phase 2: generator against the updated discriminator
        with autocast(x_ulb, self.amp):
            loss_g, g_logged = self.generator_objective(target, fake)
        with record_function("G backward (through D, then G)"):
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        with record_function("G optimizer"):
            self.opt_g.step()
        return {**logged, **g_logged, "loss_d": loss_d.item(), "loss_g": loss_g.item()}

    def discriminator_loss(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """The loss, what to log, and the unlabeled batch's features (B, F), detached: the
        generator's feature-matching target, taken from this pass rather than a second one."""
        d, d_net = self.classifier, self.d_net
        with record_function("D: labeled + unlabeled pass"):
            logits_lb, logits_ulb, features_ulb = labeled_and_unlabeled(d_net, d, x_lb, x_ulb, split_bn=self.split_bn,
                                                                        with_features=True)
        with frozen_bn_stats(d), record_function("D: generated pass"):
            logits_fake = d_net(fake)
        loss_sup = losses.supervised_loss(logits_lb, y_lb, self.label_smoothing)
        loss_real = losses.real_loss(logits_ulb)
        loss_fake = losses.fake_loss(logits_fake)
        loss_d = loss_sup + self.unlabeled_weight * 0.5 * (loss_real + loss_fake)
        with torch.no_grad():  # what the discriminator says of each batch, before this step's update
            d_real, d_fake = losses.real_probability(logits_ulb).mean(), losses.real_probability(logits_fake).mean()
        logged = {"loss_sup": loss_sup.item(), "loss_real": loss_real.item(), "loss_fake": loss_fake.item(),
                  "d_real": d_real.item(), "d_fake": d_fake.item()}
        if self.pseudo is not None:
            loss_pl, pl_logged = self.pseudo.term(d_net, d, logits_ulb, x_ulb, y_lb)
            loss_d = loss_d + self.pseudo_label_weight * loss_pl
            logged.update(pl_logged)
        return loss_d, logged, features_ulb.detach()

    def generator_objective(self, target: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's loss and what to log. The G phase runs the bare classifier: frozen
        weights, BatchNorm statistics untouched. Feature matching pulls the generated batch's mean
        features towards `target`'s (B, F): the unlabeled features of the D phase, one update
        older, as in a simultaneous-update GAN. With a pull-away weight, Bad GAN's term on the
        generated batch's features is added: it pushes generated images apart (against collapse)."""
        d = self.classifier
        with frozen_bn_stats(d), frozen_params(d), record_function("G: generated pass through D"):
            if self.generator_loss == "feature_matching":  # the features alone: the head's dropout draws nothing
                features = d.features(fake)  # (B, F)
                loss = losses.feature_matching_loss(target, features)
            elif self.pull_away_weight > 0:
                logits, features = d(fake, with_features=True)  # (B, K), (B, F)
                loss = losses.real_loss(logits)
            else:
                loss = losses.real_loss(d(fake))
        if self.pull_away_weight == 0:
            return loss, {}
        with torch.autocast(fake.device.type, enabled=False):  # cosines in float32, not bf16
            pull_away = losses.pull_away_term(features.float())
        return loss + self.pull_away_weight * pull_away, {"loss_pt": pull_away.item()}

    def modules(self) -> dict[str, nn.Module]:
        kept = {"pseudo_labeler": self.pseudo} if self.pseudo is not None and self.pseudo.has_state else {}
        return {"classifier": self.classifier, "generator": self.generator, **kept}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt_d, self.opt_g]
