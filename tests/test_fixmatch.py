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
from sgan.methods.base import same
from sgan.registry import REGISTRY

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
    method = FixMatch(classifier=net, opt=torch.optim.SGD(net.parameters(), lr=0.0), strong_augment=same,
                      pseudo_label_threshold=0.95)
    out = method.train_step(torch.zeros(2, 1, 1, 3), torch.tensor([0, 1]), x_ulb)
    assert out["mask_rate"] == pytest.approx(2 / 5)  # images 0 and 2 pass 0.95
    # the loss: cross-entropy of the (same) strong view against those two pseudo-labels, over all five
    ce = nn.functional.cross_entropy(x_ulb.view(5, 3)[[0, 2]], torch.tensor([0, 1]), reduction="sum") / 5
    assert out["loss_pl"] == pytest.approx(ce.item(), rel=1e-5)
    target, mask = losses.pseudo_labels(x_ulb.view(5, 3), 0.95)
    assert target.tolist()[:4] == [0, 0, 1, 2] and mask.tolist() == [1, 0, 1, 0, 0]


def test_fixmatch_never_builds_a_generator_nor_calls_the_real_fake_losses(digits_csv, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fixmatch touched the GAN")

    for module in (sgan.models, sgan.methods.sgan):
        monkeypatch.setattr(module, "build_generator", refuse)
    for name in ("real_loss", "fake_loss", "feature_matching_loss"):
        monkeypatch.setattr(losses, name, refuse)
    cfg = resolve(overrides={"data": str(digits_csv)})
    method = build_method("fixmatch", cfg, channels=1, num_classes=10, device=torch.device("cpu"))
    assert method.generator is None and list(method.modules()) == ["classifier"]
    m = train(data=str(digits_csv), methods=["fixmatch"], out=str(tmp_path / "r"), **TINY)
    lines = logged(tmp_path / "r", "fixmatch")
    assert len(lines) == 6 and all({"loss_sup", "loss_pl", "mask_rate", "lr"} <= set(r) for r in lines)
    assert not any({"loss_g", "d_real", "d_fake", "lr_g"} & set(r) for r in lines)
    assert not (tmp_path / "r" / "fixmatch_generator.safetensors").exists()
    assert 0 <= m.methods["fixmatch"].accuracy["val"] <= 1


def test_registry_entries_name_the_class_that_builds_them():
    import sgan.methods

    for spec in REGISTRY.values():
        assert hasattr(getattr(sgan.methods, spec.builder), "build"), spec
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
    from sgan.data import prepare

    data = prepare(resolve(overrides={"data": str(digits_csv), "n_labeled": 20}))
    val = data.evals["val"]
    with torch.no_grad():
        clf.network.eval()
        predicted = clf.network(val.x).argmax(dim=1)
    assert (predicted == val.y).float().mean().item() == pytest.approx(m.methods["supervised"].accuracy["val"])
