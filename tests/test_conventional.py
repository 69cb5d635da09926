"""Augmentation, per-set standardization and AdaBN inside training runs."""

import json

import pytest
import torch

import sgan.methods.build
import sgan.trainer
from sgan import train
from sgan.config import resolve
from sgan.data import prepare
from sgan.data.transforms import set_stats
from sgan.evaluate import adapt_batchnorm
from sgan.models import DigitClassifier

TINY = dict(iterations=4, batch_size=8, eval_every=2, log_every=2, progress=False, n_labeled=20)


def test_standardized_sets_all_get_the_pool_stats(digits_csv):
    cfg = resolve(overrides={"data": str(digits_csv), "n_labeled": 20})
    data = prepare(cfg)
    std = data.standardized()
    for x in (std.labeled.x, std.x_ulb, *(v.x for v in std.evals.values())):
        mean, sd = set_stats(x)
        assert mean == pytest.approx(data.pool_stats[0], abs=1e-5)
        assert sd == pytest.approx(data.pool_stats[1], abs=1e-5)
    assert torch.equal(std.labeled.y, data.labeled.y)


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
    assert len(seen) == 4 * 1 + 4 * 2  # conventional: labeled; sgan+aug: labeled and unlabeled
    cfg = resolve(overrides={"data": str(digits_csv), "n_labeled": 20})
    val = prepare(cfg).standardized().evals["val"].x
    assert any(torch.equal(x, val) for x in evaluated)  # evaluation saw the untouched val set


def test_all_four_methods_and_adabn_are_reported(digits_csv, tmp_path):
    out = tmp_path / "r"
    m = train(data=str(digits_csv), methods=["supervised", "conventional", "sgan", "sgan+aug"], adabn=True,
              out=str(out), **TINY)
    assert list(m.methods) == ["supervised", "conventional", "sgan", "sgan+aug"]
    for r in m.methods.values():
        assert {"val", "val+adabn"} <= set(r.accuracy)
    assert json.loads((out / "metrics.json").read_text())["protocol"]["adabn"] is True
    # a "+aug" run standardizes what it predicts, as in training
    from sgan import load, load_images

    clf = load(out, method="conventional")
    assert clf.standardize is not None
    images = load_images(str(digits_csv))
    assert set_stats(clf.inputs(images))[1] == pytest.approx(clf.standardize[1], abs=1e-4)
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
