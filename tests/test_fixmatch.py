"""The pseudo-label method without a generator, the diagnostics every logged step carries, and
what a run keeps with --ema."""

import json
import math

import pytest
import torch
from torch import nn

import sgan.methods.sgan
import sgan.models
from sgan import SganError, load, losses, train
from sgan.config import resolve
from sgan.methods import FixMatch, build_method
from sgan.methods.base import PseudoLabeler, same
from sgan.registry import REGISTRY
from conftest import planned, prepared

TINY = dict(iterations=6, batch_size=8, eval_every=3, log_every=1, progress=False, n_labeled=20)


def logged(run, method: str) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["method"] == method and "val" not in r]


def test_mask_rate_equals_a_hand_count_on_a_toy_batch():
    # a classifier whose logits are its input: the confidences are known by hand
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(3))
    x_ulb = torch.tensor([[10.0, 0, 0], [1, 0, 0], [0, 8, 0], [0, 0, 2], [5, 5, 0]]).view(5, 1, 1, 3)
    confidence = torch.softmax(x_ulb.view(5, 3), dim=1).max(dim=1).values
    assert [round(c, 4) for c in confidence.tolist()] == [0.9999, 0.5761, 0.9993, 0.7870, 0.4983]
    method = FixMatch(classifier=net, opt=torch.optim.SGD(net.parameters(), lr=0.0),
                      pseudo=PseudoLabeler(num_classes=3, strong_augment=same, threshold=0.95))
    out = method.train_step(torch.zeros(2, 1, 1, 3), torch.tensor([0, 1]), x_ulb)
    assert out["mask_rate"] == pytest.approx(2 / 5)  # images 0 and 2 pass 0.95
    # the loss: cross-entropy of the (same) strong view against those two pseudo-labels, over all five
    ce = nn.functional.cross_entropy(x_ulb.view(5, 3)[[0, 2]], torch.tensor([0, 1]), reduction="sum") / 5
    assert out["loss_pl"] == pytest.approx(ce.item(), rel=1e-5)
    target, mask = losses.pseudo_labels(x_ulb.view(5, 3).softmax(dim=1), 0.95)
    assert target.tolist()[:4] == [0, 0, 1, 2] and mask.tolist() == [1, 0, 1, 0, 0]


def test_fixmatch_never_builds_a_generator_nor_calls_the_real_fake_losses(digits_csv, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fixmatch touched the GAN")

    for module in (sgan.models, sgan.methods.sgan):
        monkeypatch.setattr(module, "build_generator", refuse)
    for name in ("real_loss", "fake_loss", "feature_matching_loss"):
        monkeypatch.setattr(losses, name, refuse)
    cfg = resolve(overrides={"data": str(digits_csv)})
    method = build_method("fixmatch", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"))
    assert method.generator is None and list(method.modules()) == ["classifier"]
    m = train(data=str(digits_csv), methods=["fixmatch"], out=str(tmp_path / "r"), **TINY)
    lines = logged(tmp_path / "r", "fixmatch")
    assert len(lines) == 6 and all({"loss_sup", "loss_pl", "mask_rate", "lr"} <= set(r) for r in lines)
    assert not any({"loss_g", "d_real", "d_fake", "lr_g"} & set(r) for r in lines)
    assert not (tmp_path / "r" / "fixmatch_generator.safetensors").exists()
    assert 0 <= m.methods["fixmatch"].accuracy["val"] <= 1


def test_registry_entries_name_the_class_that_builds_them():
    from sgan.methods.build import BUILDERS, builder_class

    for name, spec in REGISTRY.items():
        assert BUILDERS[name] is builder_class(spec.builder) and hasattr(BUILDERS[name], "build"), spec
    spec = REGISTRY["fixmatch"]
    assert spec.uses_unlabeled and not spec.has_generator and spec.augments


def test_fixmatch_without_its_term_is_refused_in_one_line():
    with pytest.raises(SganError, match="fixmatch learns from unlabeled images through the pseudo-label term alone"):
        resolve(overrides={"methods": ["supervised", "fixmatch"], "pseudo_label_weight": 0.0})
    resolve(overrides={"methods": ["supervised", "sgan"], "pseudo_label_weight": 0.0})  # the SGAN may go without


def test_every_logged_step_carries_the_learning_rates_and_the_sgan_diagnostics(digits_csv, tmp_path):
    lr, steps = 1e-3, TINY["iterations"]
    train(data=str(digits_csv), methods=["sgan"], lr=lr, lr_schedule="cosine", out=str(tmp_path / "r"), **TINY)
    lines = logged(tmp_path / "r", "sgan")
    assert [r["step"] for r in lines] == list(range(1, steps + 1))
    for r in lines:  # the rate the step used: cosine from lr at step 1
        expected = lr * (1 + math.cos(math.pi * (r["step"] - 1) / steps)) / 2
        assert r["lr"] == pytest.approx(expected) and r["lr_g"] == pytest.approx(expected)
        assert 0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 and 0 <= r["mask_rate"] <= 1


def test_real_probability_matches_hand_computation():
    # logits [0, 0]: Z = 2, D = 2/3; [ln 1, ln 3]: Z = 4, D = 4/5
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    assert losses.real_probability(logits).tolist() == pytest.approx([2 / 3, 4 / 5])


def test_ema_keeps_the_raw_classifier_and_the_average_and_load_serves_the_average(digits_csv, tmp_path):
    out = tmp_path / "ema"
    m = train(data=str(digits_csv), methods=["supervised"], ema=0.5, out=str(out), **TINY)
    raw, ema = out / "supervised_classifier.safetensors", out / "supervised_ema.safetensors"
    assert raw.is_file() and ema.is_file() and raw.read_bytes() != ema.read_bytes()
    clf = load(out, method="supervised")  # the weights the run's accuracies were measured with

    data = prepared(resolve(overrides={"data": str(digits_csv), "n_labeled": 20}))
    val = data.evals["val"]
    with torch.no_grad():
        clf.network.eval()
        predicted = clf.network(val.x).argmax(dim=1)
    assert (predicted == val.y).float().mean().item() == pytest.approx(m.methods["supervised"].accuracy["val"])


def toy_identity(k: int = 3) -> nn.Module:
    """A classifier whose logits are its (1, 1, K) input."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(k, k, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(k))
    return net


def test_the_ema_teacher_averages_the_weights_and_gives_the_pseudo_labels():
    net = toy_identity()
    pseudo = PseudoLabeler(num_classes=3, strong_augment=same, threshold=0.95, teacher_decay=0.9, classifier=net)
    w0 = net[1].weight.detach().clone()
    with torch.no_grad():
        net[1].weight.mul_(3.0)  # a first step
    pseudo.follow(net)  # the first update copies the weights (torch's AveragedModel)
    assert torch.equal(pseudo.teacher.module[1].weight, 3 * w0)
    with torch.no_grad():
        net[1].weight.copy_(-w0)  # a second step
    pseudo.follow(net)
    assert torch.allclose(pseudo.teacher.module[1].weight, 0.9 * 3 * w0 + 0.1 * -w0)  # 2.6 x identity
    # the classifier now predicts the opposite class to its input; the teacher (2.6 x identity)
    # says class 0 with confidence 0.99975 for the first image and is unsure of the second
    x_ulb = torch.tensor([[4.0, 0, 0], [0.5, 0, 0]]).view(2, 1, 1, 3)
    loss, logged = pseudo.term(net, net, net(x_ulb), x_ulb, torch.tensor([0]))
    assert logged["mask_rate"] == pytest.approx(1 / 2)
    own = nn.functional.cross_entropy(net(x_ulb[:1]), torch.tensor([0])) / 2  # the strong view (= the plain one)
    assert loss.item() == pytest.approx(own.item(), rel=1e-5)


def test_flexmatch_thresholds_follow_the_confident_class_shares():
    net = toy_identity()
    pseudo = PseudoLabeler(num_classes=3, strong_augment=same, threshold=0.9, thresholds="flexmatch")
    x_ulb = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [0, 9.0, 0], [0, 0.1, 0]]).view(4, 1, 1, 3)
    _, logged = pseudo.term(net, net, net(x_ulb), x_ulb, torch.tensor([0]))
    # this batch's confident shares [2/4, 1/4, 0], averaged in with momentum 0.99 from zero
    share = 0.01 * torch.tensor([0.5, 0.25, 0.0])
    assert torch.allclose(pseudo.confident_share, share)
    effect = share / (1 - share.sum())  # the warm-up form: most images are claimed by no class yet
    expected = effect / (2 - effect) * 0.9
    assert logged["threshold"] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert logged["mask_rate"] == pytest.approx(1.0)  # early bars are low: the unsure image passes too
    assert PseudoLabeler(num_classes=3, strong_augment=same).has_state is False and pseudo.has_state


def test_distribution_alignment_moves_the_plain_view_towards_the_labeled_shares():
    net = toy_identity(2)
    pseudo = PseudoLabeler(num_classes=2, strong_augment=same, threshold=0.5, align=True)
    x_ulb = torch.tensor([[2.0, 0], [1.0, 0]]).view(2, 1, 1, 2)
    pseudo.term(net, net, net(x_ulb), x_ulb, torch.tensor([1, 1]))  # this batch's labels: all class 1
    probs = x_ulb.view(2, 2).softmax(dim=1)
    assert torch.allclose(pseudo.model_mean, 0.99 * 0.5 + 0.01 * probs.mean(dim=0))
    assert torch.allclose(pseudo.labeled_share, torch.tensor([0.99 * 0.5, 0.99 * 0.5 + 0.01]))


def test_the_pseudo_labeler_is_checkpointed_only_when_it_keeps_state(digits_csv, tmp_path):
    cfg = resolve(overrides={"data": str(digits_csv), "pseudo_label_thresholds": "flexmatch",
                             "pseudo_label_teacher": 0.99})
    fixmatch = build_method("fixmatch", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"))
    assert list(fixmatch.modules()) == ["classifier", "pseudo_labeler"]
    assert "teacher.n_averaged" in fixmatch.modules()["pseudo_labeler"].state_dict()
    plain = build_method("sgan", planned(resolve(overrides={"data": str(digits_csv)}), channels=1, num_classes=10),
                         device=torch.device("cpu"))
    assert list(plain.modules()) == ["classifier", "generator"]
    m = train(data=str(digits_csv), methods=["fixmatch", "sgan"], out=str(tmp_path / "r"), pseudo_label_teacher=0.99,
              pseudo_label_thresholds="flexmatch", distribution_alignment=True, label_smoothing=0.1, **TINY)
    assert all(math.isfinite(v) for r in m.methods.values() for v in r.accuracy.values())
    assert all("threshold" in r for r in logged(tmp_path / "r", "sgan"))
