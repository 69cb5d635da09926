"""Pure loss functions of the SGAN (Salimans et al. 2016, "Improved Techniques for Training GANs").

With K class logits l and Z = sum(exp(l)), the discriminator's "real" probability is
D(x) = Z / (Z + 1) = sigmoid(LSE) with LSE = logsumexp(l). So
    -log D(x)       = -LSE + softplus(LSE)   (real images should look real)
    -log (1 - D(x)) =  softplus(LSE)         (generated images should look fake)
which is the notebook's 1 - 1 / (Z + 1) head, in a numerically stable form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supervised_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the K classes; logits (B, K), y (B,)."""
    return F.cross_entropy(logits, y)


def real_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean -log D(x): unlabeled real images in the D step, generated ones in the G step
    (the non-saturating generator loss)."""
    lse = torch.logsumexp(logits, dim=1)  # (B,)
    return (F.softplus(lse) - lse).mean()


def fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean -log(1 - D(x)) for generated images in the D step."""
    return F.softplus(torch.logsumexp(logits, dim=1)).mean()


def pseudo_labels(logits_weak: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The class the plain view (B, K) predicts, (B,), and whether it is at least `threshold`
    confident, (B,) float 0/1 (FixMatch's mask; its mean is the logged mask rate)."""
    confidence, target = F.softmax(logits_weak, dim=1).max(dim=1)  # (B,), (B,)
    return target, (confidence >= threshold).float()


def pseudo_label_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cross-entropy of a strongly augmented view (B, K) against the argmax of the plain view
    (B, K), counted only where the plain view is at least `threshold` confident (FixMatch)."""
    target, mask = pseudo_labels(logits_weak, threshold)
    return (F.cross_entropy(logits_strong, target, reduction="none") * mask).mean()


def real_probability(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = Z / (Z + 1) = sigmoid(logsumexp(l)) per image, (B,), from logits (B, K)."""
    return torch.sigmoid(torch.logsumexp(logits, dim=1))


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Squared distance between the batch means of discriminator features (B, F)."""
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).pow(2).mean()


def contrastive_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): z (2B, D) holds two views of B images, image i's in rows i and B + i.
    Each row's cosine similarities / temperature to the 2B - 1 other rows are scored by
    cross-entropy against the row holding the other view of its image."""
    z = F.normalize(z, dim=1)
    sim = z @ z.t() / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))  # not itself
    b = len(z) // 2
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)  # (2B,)
    return F.cross_entropy(sim, target)
