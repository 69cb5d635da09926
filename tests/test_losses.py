import math

import pytest
import torch

from sgan import losses


def test_real_and_fake_loss_match_hand_computation():
    # logits [0, 0]: Z = 2, D = 2/3
    logits = torch.zeros(1, 2)
    assert math.isclose(losses.real_loss(logits).item(), -math.log(2 / 3), rel_tol=1e-6)
    assert math.isclose(losses.fake_loss(logits).item(), -math.log(1 / 3), rel_tol=1e-6)
    # logits [ln 1, ln 3]: Z = 4, D = 4/5
    logits = torch.log(torch.tensor([[1.0, 3.0]]))
    assert math.isclose(losses.real_loss(logits).item(), -math.log(4 / 5), rel_tol=1e-6)
    assert math.isclose(losses.fake_loss(logits).item(), -math.log(1 / 5), rel_tol=1e-6)


def test_losses_equal_notebook_head_and_average_over_batch():
    logits = torch.randn(8, 10, dtype=torch.float64)
    z = logits.exp().sum(dim=1)
    d = 1 - 1 / (z + 1)  # the notebook's custom activation
    assert torch.allclose(losses.real_loss(logits), (-d.log()).mean())
    assert torch.allclose(losses.fake_loss(logits), (-(1 - d).log()).mean())


def test_losses_are_finite_for_extreme_logits():
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, -1000.0]], requires_grad=True)
    for loss in (losses.real_loss(logits), losses.fake_loss(logits)):
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(logits.grad).all()
    # confident real: real loss ~ 0; all logits very low: fake loss ~ 0
    assert losses.real_loss(torch.tensor([[1000.0, 0.0]])).item() < 1e-6
    assert losses.fake_loss(torch.tensor([[-1000.0, -1000.0]])).item() < 1e-6


def test_supervised_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert math.isclose(losses.supervised_loss(logits, torch.tensor([0])).item(), expected, rel_tol=1e-6)


def test_supervised_loss_of_no_labeled_images_is_zero_and_keeps_the_graph():
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = losses.supervised_loss(logits, torch.zeros(0, dtype=torch.int64))
    assert loss.item() == 0.0 and loss.requires_grad  # an SGAN step without labels: a plain GAN's


def test_feature_matching_loss_by_hand():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean [2, 3]
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean [1, 1]
    assert math.isclose(losses.feature_matching_loss(real, fake).item(), (1 + 4) / 2)


def test_pseudo_label_loss_counts_only_confident_images():
    # plain view: image 0 is 22/24 = 0.917 sure of class 0, image 1 is unsure
    weak = torch.tensor([[math.log(22.0), 0.0, 0.0], [0.1, 0.0, 0.0]])
    strong = torch.tensor([[0.0, math.log(2.0), 0.0], [5.0, 0.0, 0.0]])  # image 0's strong view: p(class 0) = 1/4
    weak = weak.softmax(dim=1)  # the plain view's probabilities
    assert math.isclose(losses.pseudo_label_loss(weak, strong, 0.9).item(), -math.log(1 / 4) / 2, rel_tol=1e-6)
    assert losses.pseudo_label_loss(weak, strong, 0.95).item() == 0.0  # nobody is sure enough
    # one threshold per class, read at the picked class: class 0's 0.9 lets image 0 pass
    assert math.isclose(losses.pseudo_label_loss(weak, strong, torch.tensor([0.9, 0.99, 0.99])).item(),
                        -math.log(1 / 4) / 2, rel_tol=1e-6)


def test_flexmatch_thresholds_by_hand():
    # K = 3: 30% of the images confidently class 0, 10% class 1, none class 2; 60% claimed by none
    # learning effect b = s / max(max s, 1 - sum s) = [0.3, 0.1, 0] / 0.6 = [1/2, 1/6, 0]
    # T = b / (2 - b) x 0.9 = [(1/2)/(3/2), (1/6)/(11/6), 0] x 0.9 = [0.3, 0.9/11, 0]
    t = losses.flexmatch_thresholds(torch.tensor([0.3, 0.1, 0.0]), 0.9)
    assert torch.allclose(t, torch.tensor([0.3, 0.9 / 11, 0.0]))
    # once the classes are claimed (sum s = 1), the best-learnt class gets the full threshold
    t = losses.flexmatch_thresholds(torch.tensor([0.6, 0.4]), 0.9)  # b = [1, 2/3]
    assert torch.allclose(t, torch.tensor([0.9, (2 / 3) / (4 / 3) * 0.9]))


def test_distribution_alignment_by_hand():
    # the model predicts class 0 three times as often as class 1; the labels are balanced
    probs = torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    aligned = losses.align_distribution(probs, torch.tensor([0.75, 0.25]), torch.tensor([0.5, 0.5]))
    # row 0: [0.6 / 0.75, 0.4 / 0.25] x 0.5 = [0.4, 0.8] -> [1/3, 2/3]; row 1: [0.6, 0.2] -> [3/4, 1/4]
    assert torch.allclose(aligned, torch.tensor([[1 / 3, 2 / 3], [0.75, 0.25]]))


def test_label_smoothing_by_hand():
    logits, y = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    # target [0.95, 0.05] for e = 0.1 over K = 2; uniform logits: -log(1/2) either way
    assert math.isclose(losses.supervised_loss(logits, y, 0.1).item(), math.log(2), rel_tol=1e-6)
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = [3/4, 1/4]
    expected = -(0.95 * math.log(0.75) + 0.05 * math.log(0.25))
    assert math.isclose(losses.supervised_loss(logits, y, 0.1).item(), expected, rel_tol=1e-6)


def test_contrastive_loss_by_hand():
    # two images, two views each: rows 0 and 2 are image 0, rows 1 and 3 image 1; unit vectors
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])  # lengths do not matter
    # row 0's similarities to rows 1, 2, 3 are 0, 1, 0 (temperature 1); the right one is row 2
    expected = math.log(2 + math.e) - 1  # the same for every row, by symmetry
    assert math.isclose(losses.contrastive_loss(z, 1.0).item(), expected, rel_tol=1e-6)
    # a lower temperature sharpens: with the views matched, the loss falls
    assert losses.contrastive_loss(z, 0.1).item() < losses.contrastive_loss(z, 1.0).item()
    # views of the wrong images score worse than chance (log 3)
    swapped = z[[0, 1, 3, 2]]
    assert losses.contrastive_loss(swapped, 1.0).item() > math.log(3)


def test_pull_away_term_by_hand():
    """Three features: (1, 0), (1, 1), (0, 2). Cosines: 1/sqrt2, 0, 1/sqrt2; squared 0.5, 0, 0.5;
    each pair counted twice over 3 x 2 ordered pairs: (0.5 + 0 + 0.5) x 2 / 6 = 1/3."""
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert losses.pull_away_term(f).item() == pytest.approx(1 / 3)
    assert losses.pull_away_term(torch.tensor([[2.0, 0.0], [3.0, 0.0]])).item() == pytest.approx(1.0)  # collapsed
    assert losses.pull_away_term(torch.eye(4)).item() == pytest.approx(0.0)  # orthogonal
