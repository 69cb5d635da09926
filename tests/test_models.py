import pytest
import torch

from sgan.config import Config
from sgan.methods import SGAN, build_method, frozen_bn_stats
from sgan.models import DigitClassifier, DigitGenerator


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_finite(channels):
    g, d = DigitGenerator(z_dim=100, channels=channels), DigitClassifier(num_classes=10, channels=channels)
    x = g(torch.randn(5, 100))
    assert x.shape == (5, channels, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5, 10)
    assert d.features(x).shape == (5, 2048)
    assert torch.isfinite(d(x)).all()


@pytest.mark.parametrize("generator_loss", ["nonsaturating", "feature_matching"])
def test_sgan_step_reaches_every_parameter(generator_loss):
    torch.manual_seed(0)
    cfg = Config(generator_loss=generator_loss)
    method = build_method("sgan", cfg, channels=1, num_classes=10, device=torch.device("cpu"))
    assert isinstance(method, SGAN)
    before = {k: p.detach().clone() for k, p in
              [*method.classifier.named_parameters(), *(("g." + n, p) for n, p in method.generator.named_parameters())]}
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    out = method.train_step(x, torch.randint(0, 10, (8,)), x)
    assert set(out) == {"loss_sup", "loss_real", "loss_fake", "loss_d", "loss_g"}
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    after = dict([*method.classifier.named_parameters(), *(("g." + n, p) for n, p in method.generator.named_parameters())])
    for name, p in after.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert not torch.equal(before[name], p.detach()), f"{name} was not updated"


def test_supervised_step_updates_every_classifier_parameter():
    torch.manual_seed(0)
    method = build_method("supervised", Config(), channels=1, num_classes=10, device=torch.device("cpu"))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    method.train_step(x, torch.randint(0, 10, (8,)), x)
    for name, p in method.classifier.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_bn_stats_normalises_by_batch_but_keeps_running_stats():
    d = DigitClassifier().train()
    d(torch.randn(16, 1, 28, 28))
    stats = {k: v.clone() for k, v in d.state_dict().items() if "running" in k}
    with frozen_bn_stats(d):
        d(torch.randn(16, 1, 28, 28) * 5 + 3)
    for k, v in stats.items():
        assert torch.equal(d.state_dict()[k], v), k
    d(torch.randn(16, 1, 28, 28) * 5 + 3)  # outside the context the stats move again
    assert not all(torch.equal(d.state_dict()[k], v) for k, v in stats.items())
