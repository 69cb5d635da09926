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


def supervised_loss(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the K classes; logits (B, K), y (B,); with `smoothing` e the target is
    1 - e on the label plus e / K on every class. An empty batch costs 0 (an SGAN step without
    labels is a plain GAN's: suggest-labels' warm-up)."""
    if len(y) == 0:
        return logits.sum() * 0.0  # 0, in the graph
    return F.cross_entropy(logits, y, label_smoothing=smoothing)


def real_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean -log D(x): unlabeled real images in the D step, generated ones in the G step
    (the non-saturating generator loss)."""
    lse = torch.logsumexp(logits, dim=1)  # (B,)
    return (F.softplus(lse) - lse).mean()


def fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean -log(1 - D(x)) for generated images in the D step."""
    return F.softplus(torch.logsumexp(logits, dim=1)).mean()


def pseudo_labels(probs_weak: torch.Tensor, threshold: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class the plain view's probabilities (B, K) pick, (B,), and whether it is at least
    `threshold` confident, (B,) float 0/1 (FixMatch's mask; its mean is the logged mask rate).
    `threshold` is one number, or one per class (K,), looked up at the picked class."""
    confidence, target = probs_weak.max(dim=1)  # (B,), (B,)
    bar = threshold[target] if isinstance(threshold, torch.Tensor) else threshold
    return target, (confidence >= bar).float()


def pseudo_label_loss(probs_weak: torch.Tensor, logits_strong: torch.Tensor,
                      threshold: float | torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a strongly augmented view (B, K) against the argmax of the plain view's
    probabilities (B, K), counted only where those are at least `threshold` confident (FixMatch)."""
    target, mask = pseudo_labels(probs_weak, threshold)
    return (F.cross_entropy(logits_strong, target, reduction="none") * mask).mean()


def flexmatch_thresholds(confident_share: torch.Tensor, threshold: float) -> torch.Tensor:
    """FlexMatch's class-wise thresholds (Zhang et al. 2021), (K,): with s(c) the share of
    unlabeled images confidently predicted as class c, (K,), the learning effect is
    b(c) = s(c) / max(max s, 1 - sum s) (the warm-up form: images no class claims yet count as
    one more class), mapped convexly, T(c) = b / (2 - b) x `threshold`: classes the model has
    learnt least get the lowest bars."""
    effect = confident_share / torch.maximum(confident_share.max(), 1 - confident_share.sum()).clamp_min(1e-12)
    return effect / (2 - effect) * threshold


def align_distribution(probs: torch.Tensor, model_mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ReMixMatch's distribution alignment: probabilities (B, K) times the target class shares
    (K,) over the model's moving average prediction (K,), renormalised per row."""
    aligned = probs * target / model_mean.clamp_min(1e-12)
    return aligned / aligned.sum(dim=1, keepdim=True)


def real_probability(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = Z / (Z + 1) = sigmoid(logsumexp(l)) per image, (B,), from logits (B, K)."""
    return torch.sigmoid(torch.logsumexp(logits, dim=1))


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Squared distance between the batch means of discriminator features (B, F)."""
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).pow(2).mean()


def pull_away_term(features: torch.Tensor) -> torch.Tensor:
    """Bad GAN's pull-away term (Dai et al. 2017, after EBGAN's): the mean over ordered pairs
    i != j of the squared cosine similarity between the features (B, F) of generated images;
    0 when they are orthogonal, 1 when all point one way (a collapsed generator)."""
    unit = F.normalize(features, dim=1)
    cos2 = (unit @ unit.t()).pow(2)  # (B, B)
    b = len(features)
    return (cos2.sum() - cos2.diagonal().sum()) / (b * (b - 1))


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
