import pytest

from sgan import SganError
from sgan.config import Config, read_config_file, resolve


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('iterations = 7\nlr = 0.001\nmethods = ["sgan"]\n')
    cfg = resolve(read_config_file(str(path)), {"iterations": 9})
    assert (cfg.iterations, cfg.lr, cfg.methods) == (9, 0.001, ["sgan"])


def test_preset_fills_protocol_and_yields_to_overrides():
    cfg = resolve(overrides={"preset": "kannada-10k", "n_labeled": 1000})
    assert cfg.val_per_class == 200 and cfg.n_labeled == 1000
    assert cfg.data.endswith("X_kannada_MNIST_test-idx3-ubyte.gz")
    assert cfg.eval["holdout"].endswith("X_dig_MNIST-idx3-ubyte.gz")


@pytest.mark.parametrize("values, message", [
    ({"batch_sise": 3}, "did you mean 'batch_size'"),
    ({"batch_size": "32"}, "must be int"),
    ({"batch_size": True}, "must be int"),
    ({"iterations": -1}, "iterations must be positive"),
    ({"methods": ["sgan", "vae"]}, "unknown method 'vae'"),
    ({"generator_loss": "wgan"}, "unknown generator_loss"),
    ({"unlabeled": "test"}, "needs test_data"),
    ({"lr_schedule": "step"}, "unknown lr_schedule"),
    ({"model": "vgg"}, "unknown model 'vgg'"),
    ({"model": "digits", "image_size": 64}, r"'digits' takes image_size in \(28,\)"),
    ({"model": "digits", "tta_flip": True}, "tta_flip mirrors images"),
    ({"image_size": 4}, "image_size must be in"),
    ({"model": "resnet18", "image_size": 50}, "image_size in"),
    ({"channels": 2}, "unknown channels 2; choose from 1, 3"),
    ({"select": "best"}, "unknown select"),
    ({"model": "resnet9", "image_size": 128}, "resnet9 at 128 px needs resnet_stem 'patch' or 'strided'"),
    ({"model": "resnet9", "resnet_stem": "imagenet"}, "'resnet9' takes resnet_stem small, patch, strided"),
    ({"model": "resnet18", "resnet_stem": "patch"}, "'resnet18' takes resnet_stem small, imagenet"),
    ({"diff_augment": True, "methods": ["supervised", "sgan"]}, "diff_augment .* needs an SGAN variant that augments"),
    ({"pull_away_weight": 0.1, "methods": ["supervised", "fixmatch"]}, "pull_away_weight .* needs an SGAN variant"),
    ({"pull_away_weight": -1.0}, "pull_away_weight must be >= 0"),
    ({"pull_away_weight": 0.1, "fake_batch_size": 1}, "needs 2 or more generated images"),
])
def test_bad_config_values(values, message):
    with pytest.raises(SganError, match=message):
        resolve(overrides=values)


def test_config_roundtrip():
    cfg = Config(eval={"holdout": "x.csv"})
    assert Config(**cfg.to_dict()) == cfg


def test_every_config_key_has_a_documented_flag():
    from sgan.cli import build_parser
    from sgan.config import FIELDS

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    flags = {action.dest: action for action in train._actions}
    for name, f in FIELDS.items():
        assert f.metadata["help"], name
        assert flags[name].help.startswith(f.metadata["help"]), name  # the field's help, and its default
    assert flags["iterations"].help.endswith("(default: 1500)") and flags["progress"].help.endswith("(default: on)")
    args = parser.parse_args(["train", "--n-labeled", "7", "--eval", "a=b.csv", "--no-progress"])
    assert (args.n_labeled, args.eval, args.progress) == (7, [("a", "b.csv")], False)


def test_pets_12k_32_is_pets_12k_served_at_32_px():
    import numpy as np

    from sgan.data import split_pool

    small, big = resolve(overrides={"preset": "pets-12k-32"}), resolve(overrides={"preset": "pets-12k"})
    differ = {k for k, v in small.to_dict().items() if big.to_dict()[k] != v}
    assert differ == {"preset", "image_size"} and small.image_size == 32 and small.model == "resnet18"
    labels = np.repeat([0, 1], 6000)  # the pool's 6,000 cats and 6,000 dogs
    split = split_pool(labels, n_labeled=small.n_labeled, seed=0, num_classes=2, val_per_class=small.val_per_class,
                       test_per_class=small.test_per_class)
    assert [len(split.test), len(split.validation), len(split.labeled), len(split.unlabeled)] == [1000, 1000, 100, 9900]
    assert np.bincount(labels[split.labeled]).tolist() == [50, 50]


@pytest.mark.parametrize("size, files", [(32, "pets64"), (64, "pets64"), (128, "pets128")])
def test_pets_25k_is_pets_12k_with_the_whole_collection_unlabeled(size, files):
    """Pets-25k (BENCHMARK.md): Pets-12k's pool and split; the -extra folder unlabeled beside the
    rest of the pool; 128 px from the 128 px files (the same names, so the same split)."""
    from pathlib import Path

    cfg, ref = resolve(overrides={"preset": f"pets-25k-{size}"}), resolve(overrides={"preset": "pets-12k"})
    assert Path(cfg.data).name == files and Path(cfg.unlabeled).name == f"{files}-extra"
    assert cfg.unlabeled_plus_pool and cfg.image_size == size
    differ = {k for k, v in cfg.to_dict().items() if ref.to_dict()[k] != v}
    assert differ <= {"preset", "image_size", "data", "unlabeled", "unlabeled_plus_pool"}
    assert (cfg.val_per_class, cfg.test_per_class, cfg.n_labeled) == (500, 500, 100)
