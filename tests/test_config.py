import numpy as np
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


@pytest.mark.parametrize("chosen, channels, side, model, size", [
    ({}, 1, 8, "digits", 28),  # sklearn's 8 px digits are served at 28
    ({}, 1, 28, "digits", 28),
    ({}, 3, 28, "resnet9", 32),  # colour
    ({}, 1, 64, "resnet9", 32),  # larger than a digit
    ({}, 3, None, "resnet9", 32),  # an image folder
    ({"image_size": 64}, 3, None, "resnet9", 64),
    ({"model": "resnet18"}, 3, 64, "resnet18", 32),
    ({"model": "digits"}, 3, 64, "digits", 28),  # a model the user chose is kept
])
def test_the_default_model_and_size_follow_the_data(chosen, channels, side, model, size):
    fitted, said = Config(**chosen).fit_to_data(channels=channels, side=side)
    assert (fitted.model, fitted.image_size) == (model, size)
    if model == "digits":  # digits keep theirs without a word
        assert said is None
    else:
        assert said.startswith(f"sgan: {channels}-channel ") and f"model {model}" in said and f"at {size} px" in said


def test_flip_tta_on_data_that_gets_the_digits_model_is_refused():
    with pytest.raises(SganError, match="tta_flip mirrors images"):
        Config(tta_flip=True).fit_to_data(channels=1, side=28)
    assert Config(tta_flip=True).fit_to_data(channels=3, side=64)[0].model == "resnet9"


def test_a_model_and_size_both_given_are_kept_without_a_word():
    cfg = Config(model="resnet18", image_size=64)
    assert cfg.fit_to_data(channels=1, side=8) == (cfg, None)


def test_a_photo_folder_gets_the_photo_network_said_in_one_line(tmp_path):
    from PIL import Image

    from sgan.data import prepare

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data = prepare(Config(data=str(tmp_path), n_labeled=4, val_per_class=2, loader_workers=0))
    assert (data.config.model, data.config.image_size, data.labeled.x.shape[1:]) == ("resnet9", 32, (3, 32, 32))
    assert data.chosen == "sgan: 3-channel image folder: model resnet9 (width 32) at 32 px (choose with --model and " \
        "--image-size)"


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
