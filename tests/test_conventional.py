"""Augmentation in training runs; the two test-time adaptations (set standardization, AdaBN)."""

import json

import pytest
import torch

import sgan.methods.build
import sgan.trainer
from sgan import train
from sgan.config import resolve
from sgan.data.prepare import LabeledTensors
from sgan.data.transforms import set_stats, to_model_range
from sgan.evaluate import accuracy, adapt_batchnorm, evaluate
from sgan.models import DigitClassifier
from conftest import prepared

TINY = dict(iterations=4, batch_size=8, eval_every=2, log_every=2, progress=False, n_labeled=20)


def test_set_standardization_is_reported_apart_and_matches_a_hand_computation():
    torch.manual_seed(0)
    clf = DigitClassifier().eval()
    x, y = torch.rand(64, 1, 28, 28) * 0.8 - 0.9, torch.randint(0, 10, (64,))  # a darker set
    pool = (-0.5, 0.6)
    accuracies, _ = evaluate(clf, {"holdout": LabeledTensors(x, y)}, set_std=pool)
    moved = (x - x.double().mean().float()) / x.double().std().float() * pool[1] + pool[0]  # by hand
    assert set_stats(moved) == pytest.approx(pool, abs=1e-5)
    assert accuracies["holdout+std"] == pytest.approx(accuracy(clf, moved, y))
    assert accuracies["holdout"] == pytest.approx(accuracy(clf, x, y))  # the plain figure uses the images as they are


def test_training_sets_are_not_standardized(digits_csv, tmp_path, monkeypatch):
    seen = []
    real = sgan.trainer.TrainingBatches

    def spy(x_lb, y_lb, x_ulb, **kw):
        seen.append((x_lb, x_ulb))
        return real(x_lb, y_lb, x_ulb, **kw)

    monkeypatch.setattr(sgan.trainer, "TrainingBatches", spy)
    train(data=str(digits_csv), methods=["supervised", "conventional", "sgan+aug"], out=str(tmp_path / "r"), **TINY)
    data = prepared(resolve(overrides={"data": str(digits_csv), "n_labeled": 20}))
    assert len(seen) == 3 and all(torch.equal(lb, data.labeled.x) and torch.equal(ulb, data.x_ulb) for lb, ulb in seen)


def test_augmentation_touches_training_batches_only(digits_csv, tmp_path, monkeypatch):
    seen = []
    real = sgan.methods.build.random_affine

    def spy(x, **kw):
        seen.append(x.shape[0])
        return real(x, **kw)

    monkeypatch.setattr(sgan.methods.build, "random_affine", spy)
    evaluated = []
    real_accuracy = sgan.trainer.accuracy
    monkeypatch.setattr(sgan.trainer, "accuracy", lambda c, x, y: (evaluated.append(x), real_accuracy(c, x, y))[1])
    train(data=str(digits_csv), methods=["conventional", "sgan+aug"], out=str(tmp_path / "r"), **TINY)
    assert seen and set(seen) == {8}  # training batches of 8
    assert len(seen) == 4 * 1 + 4 * 3  # conventional: labeled; sgan+aug: labeled, unlabeled and the strong view
    cfg = resolve(overrides={"data": str(digits_csv), "n_labeled": 20})
    val = prepared(cfg).evals["val"].x
    assert any(torch.equal(x, val) for x in evaluated)  # evaluation saw the untouched val set


def test_every_method_and_both_adaptations_are_reported(digits_csv, tmp_path):
    out = tmp_path / "r"
    methods = ["supervised", "conventional", "fixmatch", "sgan", "sgan+aug"]
    m = train(data=str(digits_csv), methods=methods, adabn=True, set_std=True, out=str(out), **TINY)
    assert list(m.methods) == methods
    for r in m.methods.values():
        assert set(r.accuracy) == {"val", "val+adabn", "val+std"}
    assert json.loads((out / "metrics.json").read_text())["protocol"]["adabn"] is True
    from sgan import load, load_images

    clf = load(out, method="conventional")  # every method keeps the pool's statistics, and uses none by default
    assert clf.input_stats == pytest.approx(prepared(resolve(overrides={"data": str(digits_csv)})).pool_stats)
    images = load_images(str(digits_csv))
    assert torch.equal(clf.inputs(images), to_model_range(images.images))
    assert 0 <= clf.accuracy(images) <= 1


def test_adabn_reestimates_batchnorm_on_the_given_images_only():
    torch.manual_seed(0)
    clf = DigitClassifier().eval()
    x = torch.randn(64, 1, 28, 28) * 3 + 2
    adapted = adapt_batchnorm(clf, x)
    assert not adapted.training and not clf.training
    bn = adapted.core[4]  # the first BatchNorm, after Conv(32->64)
    with torch.no_grad():
        h = adapted.core[:4](x)  # noise layer off in eval: exact features
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.equal(clf.core[4].running_mean, torch.zeros(64))  # the original is untouched


def test_photos_are_mirrored_in_training_and_digits_never(digits_csv, tmp_path, monkeypatch):
    from test_folders import make_pets

    flipped = []
    real = sgan.methods.build.random_flip
    monkeypatch.setattr(sgan.methods.build, "random_flip", lambda x, g: (flipped.append(x.shape), real(x, g))[1])
    train(data=str(make_pets(tmp_path / "pets")), model="resnet18", image_size=32, methods=["conventional"],
          out=str(tmp_path / "photos"), **{**TINY, "n_labeled": 4})
    assert flipped and set(flipped) == {(8, 3, 32, 32)}  # the training batches, nothing evaluated
    flipped.clear()
    train(data=str(digits_csv), methods=["conventional", "sgan+aug"], pseudo_label_weight=1.0,
          out=str(tmp_path / "digits"), **TINY)
    assert flipped == []
