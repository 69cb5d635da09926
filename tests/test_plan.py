"""The plan: every choice made once, from the config and the pool's header, before any image is prepared."""

import importlib
import json
import sys

import numpy as np
import pytest

from sgan import SganError
from sgan.cli import build_parser, main
from sgan.config import FIELDS, GROUPS, Config
from sgan.data.readers import Source
from sgan.plan import fit_model, make_plan
from sgan.registry import REGISTRY, MethodSpec
from conftest import prepared


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
    fitted, said = fit_model(Config(**chosen), channels=channels, side=side)
    assert (fitted.model, fitted.image_size) == (model, size)
    if model == "digits":  # digits keep theirs without a word
        assert said is None
    else:
        assert said.startswith(f"sgan: {channels}-channel ") and f"model {model}" in said and f"at {size} px" in said


def test_flip_tta_on_data_that_gets_the_digits_model_is_refused():
    with pytest.raises(SganError, match="tta_flip mirrors images"):
        fit_model(Config(tta_flip=True), channels=1, side=28)
    assert fit_model(Config(tta_flip=True), channels=3, side=64)[0].model == "resnet9"


def test_a_model_and_size_both_given_are_kept_without_a_word():
    cfg = Config(model="resnet18", image_size=64)
    assert fit_model(cfg, channels=1, side=8) == (cfg, None)


def test_the_plan_resolves_every_choice_from_the_pools_header():
    plan = make_plan(Config(data="sklearn-digits", methods=["sgan"]))
    cfg = plan.config
    assert (cfg.model, cfg.image_size, cfg.channels, cfg.num_classes) == ("digits", 28, 1, 10)
    assert cfg.out.startswith("runs/") and plan.device == "cpu" and plan.chosen is None
    assert make_plan(cfg) == plan  # a plan's own config plans to the same plan: what a resumed run reads back
    assert make_plan(Config(data="sklearn-digits", num_classes=12)).config.num_classes == 12  # one the user set


def test_a_photo_folder_gets_the_photo_network_said_in_one_line(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    plan = make_plan(Config(data=str(tmp_path), n_labeled=4, val_per_class=2, loader_workers=0))
    assert (plan.config.model, plan.config.image_size, plan.config.channels, plan.config.num_classes) == \
        ("resnet9", 32, 3, 2)
    assert plan.chosen == "sgan: 3-channel image folder: model resnet9 (width 32) at 32 px (choose with --model and " \
        "--image-size)"
    assert plan.pool.images is None  # the folder was listed, not decoded
    assert prepared(plan.config).labeled.x.shape[1:] == (3, 32, 32)


def test_classes_come_from_a_picks_file_where_the_pool_has_no_labels(tmp_path):
    picks = tmp_path / "picks.csv"
    picks.write_text("index,path,label\n0,,3\n1,,7\n")
    unlabeled = Source("pool", 1, 28, 0)
    assert make_plan(Config(labels_csv=str(picks)), unlabeled).config.num_classes == 8
    with pytest.raises(SganError, match="has no labels"):
        make_plan(Config(), unlabeled)
    assert make_plan(Config(), unlabeled, labeled=False).config.num_classes is None  # suggest-labels looks first


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "sklearn-digits", "--methods", "supervised", "sgan", "--iterations", "7",
                 "--out", str(out), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "digits" in said and "10 classes" in said and "7 per method" in said and str(out) in said
    assert "method sgan: classifier " in said and "generator " in said and "parameters" in said
    assert not out.exists()


def test_train_help_groups_its_options_by_what_they_are_about():
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    titles = {g.title: {a.dest for a in g._group_actions} for g in train._action_groups}
    for group, keys in GROUPS.items():
        assert titles[f"{group} settings"] == set(keys)
    text = train.format_help()
    start = text.index("data settings:")  # below the usage lines, which name every flag
    assert start < text.index("--n-labeled", start) < text.index("model settings:") < text.index("--width", start)
    assert sorted(k for keys in GROUPS.values() for k in keys) == sorted(FIELDS)  # each key in one group


@pytest.mark.parametrize("builder, error", [("sgan:SGNA", AttributeError), ("sagn:SGAN", ModuleNotFoundError)])
def test_a_misspelt_method_class_fails_when_the_methods_are_imported(monkeypatch, builder, error):
    monkeypatch.setitem(REGISTRY, "typo", MethodSpec("typo", builder, uses_unlabeled=True, has_generator=True,
                                                     augments=False))
    with pytest.raises(error, match=builder.split(":")[builder.startswith("sgan")]):
        importlib.reload(sys.modules["sgan.methods.build"])
    monkeypatch.delitem(REGISTRY, "typo")
    importlib.reload(sys.modules["sgan.methods.build"])


def test_a_run_saves_its_plan_and_a_resumed_run_reads_the_same_plan(tmp_path):
    from sgan.trainer import train

    out = tmp_path / "run"
    train(data="sklearn-digits", methods=["supervised"], iterations=2, eval_every=1, out=str(out), progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["image_size"], saved["channels"], saved["num_classes"], saved["out"]) == \
        ("digits", 28, 1, 10, str(out))
    assert make_plan(Config(**saved)).config == Config(**saved)


def test_one_class_folder_is_refused_for_training_but_not_for_suggest_labels(tmp_path):
    from PIL import Image

    (tmp_path / "all").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / "all" / f"{i}.png")
    with pytest.raises(SganError, match="labeled folder has one class .all."):
        make_plan(Config(data=str(tmp_path)))
    assert make_plan(Config(data=str(tmp_path)), labeled=False).config.model == "resnet9"  # photos to suggest from
