import numpy as np
import pytest

from sgan import SganError
from sgan.data.splits import split_pool
from conftest import prepared

LABELS = np.repeat(np.arange(10), 50)  # 50 per class, in class blocks
np.random.default_rng(9).shuffle(LABELS)


def test_split_is_class_balanced_disjoint_and_complete():
    s = split_pool(LABELS, n_labeled=100, seed=0, num_classes=10, val_per_class=5)
    assert np.bincount(LABELS[s.labeled], minlength=10).tolist() == [10] * 10
    assert np.bincount(LABELS[s.validation], minlength=10).tolist() == [5] * 10
    parts = np.concatenate([s.labeled, s.validation, s.unlabeled])
    assert sorted(parts.tolist()) == list(range(len(LABELS)))


def test_split_repeats_for_a_seed_and_changes_with_it():
    a = split_pool(LABELS, n_labeled=30, seed=1, num_classes=10, val_fraction=0.2)
    b = split_pool(LABELS, n_labeled=30, seed=1, num_classes=10, val_fraction=0.2)
    c = split_pool(LABELS, n_labeled=30, seed=2, num_classes=10, val_fraction=0.2)
    assert a.to_dict() == b.to_dict()
    assert a.labeled.tolist() != c.labeled.tolist()
    assert np.bincount(LABELS[a.validation]).tolist() == [10] * 10


def test_split_follows_benchmark_rule():
    """BENCHMARK.md: per class, a default_rng(s) permutation; first val, next n/10 labeled."""
    s = split_pool(LABELS, n_labeled=20, seed=3, num_classes=10, val_per_class=4)
    rng = np.random.default_rng(3)
    for c in range(10):
        perm = rng.permutation(np.flatnonzero(LABELS == c))
        assert set(perm[:4]) <= set(s.validation)
        assert set(perm[4:6]) <= set(s.labeled)


def test_split_follows_the_pets_rule_test_first():
    """BENCHMARK.md Pets-12k: per class, first test, next validation, next labeled, rest unlabeled."""
    labels = np.repeat([0, 1], 60)
    s = split_pool(labels, n_labeled=10, seed=4, num_classes=2, val_per_class=7, test_per_class=9)
    rng = np.random.default_rng(4)
    for c in range(2):
        perm = rng.permutation(np.flatnonzero(labels == c))
        assert set(perm[:9]) <= set(s.test)
        assert set(perm[9:16]) <= set(s.validation)
        assert set(perm[16:21]) <= set(s.labeled)
        assert set(perm[21:]) <= set(s.unlabeled)
    assert sorted(np.concatenate([s.test, s.validation, s.labeled, s.unlabeled]).tolist()) == list(range(120))


def test_uneven_budget_spreads_remainder():
    s = split_pool(LABELS, n_labeled=13, seed=0, num_classes=10)
    assert len(s.labeled) == 13 and np.bincount(LABELS[s.labeled]).max() == 2


def test_budget_larger_than_a_class_is_an_error():
    with pytest.raises(SganError, match="class 0"):
        split_pool(LABELS, n_labeled=1000, seed=0, num_classes=10, val_per_class=5)


def test_class_without_images_is_an_error():
    with pytest.raises(SganError, match="class 10 has no images"):
        split_pool(LABELS, n_labeled=11, seed=0, num_classes=11)


def test_unlabeled_plus_pool_joins_the_rest_of_the_pool_to_the_source(digits_csv, test_csv):
    import dataclasses

    import torch

    from sgan.config import Config
    from sgan.plan import make_plan
    from sgan.trainer import protocol_of

    pool = prepared(Config(data=str(digits_csv), n_labeled=50))
    only = Config(data=str(digits_csv), n_labeled=50, unlabeled=str(test_csv))
    both = dataclasses.replace(only, unlabeled_plus_pool=True)
    source, joined = prepared(only), prepared(both)
    assert len(source.x_ulb) == 50
    assert torch.equal(joined.x_ulb, torch.cat([pool.x_ulb, source.x_ulb]))  # the same split's rest, then the source
    assert joined.summary["unlabeled"] == len(pool.x_ulb) + 50
    assert protocol_of(make_plan(both).config, joined).unlabeled == f"pool+{test_csv}"  # as a run plans it
    with pytest.raises(SganError, match="unlabeled_plus_pool needs an --unlabeled source"):
        Config(data=str(digits_csv), unlabeled_plus_pool=True).validate()
