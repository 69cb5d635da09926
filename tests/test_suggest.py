"""`sgan suggest-labels`: which images to label, and training on the filled-in picks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import benchmark, prepared, run_sgan
from sgan.config import Config, resolve
from sgan.data.prepare import candidate_pool
from sgan.plan import make_plan
from sgan.data.readers import read_sklearn_digits
from sgan.errors import SganError
from sgan.suggest import gan_features, pick_representatives, suggest_labels, typicality, views


def blobs(centres: int, per: int, dims: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dims)) * 5
    labels = np.repeat(np.arange(centres), per)
    return means[labels] + rng.normal(size=(len(labels), dims)) * 0.3, labels


def test_views_are_seeded_in_range_and_differ_per_image():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    a, b = (views(x, torch.Generator().manual_seed(0)) for _ in range(2))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    again = views(x[:1].repeat(6, 1, 1, 1), torch.Generator().manual_seed(1))
    assert len({round(v.sum().item(), 4) for v in again}) == 6  # one image, six different views


def test_one_pick_per_cluster_deterministic():
    features, labels = blobs(6, 40)
    picks = pick_representatives(features, 6, seed=0)
    assert len(picks) == 6 and sorted(labels[picks].tolist()) == list(range(6))  # every blob once
    assert np.array_equal(picks, pick_representatives(features, 6, seed=0))


def test_outliers_and_near_duplicates_are_not_picked():
    features, labels = blobs(5, 50)
    far = np.random.default_rng(1).normal(size=(2, features.shape[1])) * 200  # two lone outliers
    with_outliers = np.concatenate([features, far])
    picks = pick_representatives(with_outliers, 5, seed=0)
    assert len(picks) == 5 and picks.max() < len(features)  # the outliers' clusters gave way
    assert sorted(labels[picks].tolist()) == list(range(5))
    # a blob of exact copies: picks from it are never copies of each other
    copies = np.concatenate([features, np.repeat(features[:1], 30, axis=0)])
    picks = pick_representatives(copies, 8, seed=0)
    unit = copies[picks] / np.linalg.norm(copies[picks], axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert (similarity[~np.eye(len(picks), dtype=bool)] < 0.98).all()


def test_nearly_parallel_features_still_fill_the_budget():
    """A GAN discriminator's features share a large common part (every pair's cosine above the
    near-duplicate limit before centring): the picks are told apart after centring, and the
    budget is filled."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(5), 60)
    features = rng.normal(size=(5, 8))[labels] * 2 + rng.normal(size=(300, 8))  # five overlapping classes
    parallel = 200.0 + features * 0.05  # cosine > 0.999 between any two rows
    unit = parallel / np.linalg.norm(parallel, axis=1, keepdims=True)
    assert (unit @ unit.T).min() > 0.98
    picks = pick_representatives(parallel, 40, seed=0)
    assert len(picks) == 40 and len(set(picks.tolist())) == 40
    assert sorted(set(labels[picks].tolist())) == list(range(5))


def test_clusters_of_copies_are_filled_farthest_first_and_a_short_pool_says_so(tmp_path, monkeypatch, capsys):
    """Where a cluster's members all copy earlier picks, the budget is filled farthest-first; a
    pool with fewer distinct images than the budget gives what it has, and suggest-labels says so."""
    cloud = np.random.default_rng(3).normal(size=(300, 8))
    picks = pick_representatives(cloud, 150, seed=0)  # half the rows: clusters of two, many beside a pick
    assert len(picks) == 150 and len(set(picks.tolist())) == 150
    rng = np.random.default_rng(5)
    groups = np.repeat(rng.normal(size=(10, 8)) * 3, 30, axis=0) + rng.normal(size=(300, 8)) * 0.05  # 10 images x 30
    far = rng.normal(size=(2, 8)) * 100  # two lone outliers: the budget stays short rather than take them
    picks = pick_representatives(np.concatenate([groups, far]), 12, seed=0)
    assert picks.max() < len(groups) and sorted(picks // 30) == list(range(10))
    assert len(pick_representatives(np.ones((40, 8)), 5, seed=0)) == 1  # all alike: one image, never repeated
    distinct = np.random.default_rng(4).normal(size=(3, 8))
    copies = np.repeat(distinct, 20, axis=0)  # three images, twenty copies each
    picks = pick_representatives(copies, 6, seed=0)
    assert len(picks) == 3 and sorted(picks // 20) == [0, 1, 2]
    from sgan import suggest

    monkeypatch.setattr(suggest, "pick_representatives", lambda f, budget, seed, by, reserve: np.arange(3))
    cfg = resolve({"data": "sklearn-digits", "seed": 0, "progress": False, "threads": 1})
    summary = suggest_labels(cfg, budget=6, out=tmp_path, pretext_iterations=1)
    assert summary["picked"] == 3 and summary["reserve"] == 0 and len(read_rows(tmp_path / "picks.csv")) == 3
    assert "only 3 of the 6 images asked for are not near-duplicates" in capsys.readouterr().err


def test_typicality_by_hand():
    points = np.array([[0.0], [1.0], [3.0]])
    # k = 1: nearest distances 1, 1, 2; k = 2: mean distances (1 + 3) / 2, (1 + 2) / 2, (3 + 2) / 2
    assert np.allclose(typicality(points, 1), [1, 1, 0.5])
    assert np.allclose(typicality(points, 2), [1 / 2, 1 / 1.5, 1 / 2.5])


def test_the_typical_pick_is_the_dense_core_not_the_point_nearest_the_centre():
    rng = np.random.default_rng(0)
    core = np.c_[rng.normal(0, 0.01, (10, 2)), np.full(10, 10.0)]  # ten images nearly alike
    spread = np.c_[np.linspace(1.5, 2.5, 8), np.zeros(8), np.full(8, 10.0)]  # eight apart, pulling the centre
    features = np.concatenate([core, spread])  # one cluster; its centre lies between them, nearer the spread
    assert pick_representatives(features, 1, seed=0, by="centre")[0] >= 10
    assert pick_representatives(features, 1, seed=0, by="typicality")[0] < 10


def test_gan_features_are_the_discriminators_and_finite():
    cfg = resolve({"data": "sklearn-digits", "seed": 0, "progress": False})
    cfg = make_plan(cfg, labeled=False).config
    x = torch.rand(40, 1, 28, 28) * 2 - 1
    features = gan_features(x, cfg, iterations=2, device=torch.device("cpu"), progress=False)
    assert features.shape[0] == 40 and features.ndim == 2 and torch.isfinite(features).all()
    assert torch.equal(features, gan_features(x, cfg, iterations=2, device=torch.device("cpu"), progress=False))


def test_the_gan_warm_up_is_the_sgan_step_with_one_logit_and_no_labels(monkeypatch):
    from sgan.methods import SGAN

    steps = []
    real_step = SGAN.train_step

    def recorded(self, x_lb, y_lb, x_ulb):
        steps.append((self.classifier, len(x_lb), len(y_lb), len(x_ulb)))
        losses = real_step(self, x_lb, y_lb, x_ulb)
        assert losses["loss_sup"] == 0.0 and all(np.isfinite(v) for v in losses.values())
        return losses

    monkeypatch.setattr(SGAN, "train_step", recorded)
    cfg = make_plan(resolve({"data": "sklearn-digits", "seed": 0, "progress": False}), labeled=False).config
    gan_features(torch.rand(40, 1, 28, 28) * 2 - 1, cfg, iterations=3, device=torch.device("cpu"), progress=False)
    assert [s[1:] for s in steps] == [(0, 0, 256)] * 3
    assert steps[0][0].head[-1].out_features == 1  # one logit: D(x) = sigmoid(l), the plain GAN's


def test_typical_picks_from_gan_features_end_to_end(tmp_path):
    cfg = resolve({"data": "sklearn-digits", "seed": 0, "progress": False, "threads": 1})
    summary = suggest_labels(cfg, budget=12, out=tmp_path, strategy="typical", features="gan", pretext_iterations=3)
    assert (summary["picked"], summary["features"], summary["strategy"]) == (12, "gan", "typical")
    assert len({r["index"] for r in read_rows(tmp_path / "picks.csv")}) == 12
    with pytest.raises(SganError, match="unknown features"):
        suggest_labels(cfg, budget=5, out=tmp_path / "c", features="vae")


@pytest.mark.parametrize("flag, value, said", [
    ("--strategy", "nearest", "unknown strategy 'nearest'; choose from representative, typical, random"),
    ("--features", "vae", "unknown features 'vae'; choose from contrastive, gan"),
    ("--pretext-iterations", "0", "pretext_iterations must be positive, got 0"),
])
def test_the_command_line_refuses_what_suggest_does_not_know_in_one_line(flag, value, said, tmp_path, capsys):
    from sgan.cli import main

    assert main(["suggest-labels", "--data", "sklearn-digits", "--budget", "5", "--out", str(tmp_path / "s"),
                 flag, value]) == 2
    assert capsys.readouterr().err == f"sgan: error: suggest-labels: {said}\n"
    assert not (tmp_path / "s").exists()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fill(picks_csv: Path, labels: np.ndarray, out: Path) -> Path:
    """The person who labels, played by the true labels."""
    rows = read_rows(picks_csv)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "path", "label"])
        for r in rows:
            writer.writerow([r["index"], r["path"], int(labels[int(r["index"])])])
    return out


def test_suggestions_cover_the_classes_avoid_validation_and_repeat(tmp_path):
    cfg = resolve({"data": "sklearn-digits", "seed": 0, "progress": False, "threads": 1})
    summary = suggest_labels(cfg, budget=20, out=tmp_path / "a", pretext_iterations=30)
    assert summary["picked"] == 20
    rows = read_rows(tmp_path / "a" / "picks.csv")
    index = np.array([int(r["index"]) for r in rows])
    assert all(r["label"] == "" for r in rows)
    labels = read_sklearn_digits().labels
    assert len(set(labels[index].tolist())) == 10  # labels unseen, yet every class (20 random picks miss one)
    plan = make_plan(cfg, labeled=False)
    _, candidates = candidate_pool(plan.config, plan.pool)
    validation = np.setdiff1d(np.arange(len(labels)), candidates)
    assert len(validation) > 300 and not np.intersect1d(index, validation).size
    with Image.open(tmp_path / "a" / "picks.png") as sheet:
        assert sheet.size[0] > 300
    suggest_labels(cfg, budget=20, out=tmp_path / "b", pretext_iterations=30)
    assert (tmp_path / "a" / "picks.csv").read_bytes() == (tmp_path / "b" / "picks.csv").read_bytes()


def test_random_strategy_is_uniform_over_candidates_and_seeded(tmp_path):
    cfg = resolve({"data": "sklearn-digits", "seed": 3, "progress": False})
    suggest_labels(cfg, budget=50, out=tmp_path / "a", strategy="random")
    suggest_labels(cfg, budget=50, out=tmp_path / "b", strategy="random")
    first = [int(r["index"]) for r in read_rows(tmp_path / "a" / "picks.csv")]
    assert first == [int(r["index"]) for r in read_rows(tmp_path / "b" / "picks.csv")]
    plan = make_plan(cfg, labeled=False)
    _, candidates = candidate_pool(plan.config, plan.pool)
    assert len(set(first)) == 50 and set(first) <= set(candidates.tolist())
    with pytest.raises(SganError, match="unknown strategy"):
        suggest_labels(cfg, budget=5, out=tmp_path / "c", strategy="best")


def test_training_on_filled_picks_uses_the_written_labels(tmp_path):
    cfg = resolve({"data": "sklearn-digits", "seed": 0, "progress": False})
    suggest_labels(cfg, budget=30, out=tmp_path, strategy="random")
    truth = read_sklearn_digits().labels
    filled = fill(tmp_path / "picks.csv", truth, tmp_path / "filled.csv")
    rows = read_rows(filled)
    rows[0]["label"] = str((int(rows[0]["label"]) + 1) % 10)  # the person's word wins, even when wrong
    with open(filled, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["index", "path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    data = prepared(Config(data="sklearn-digits", seed=0, labels_csv=str(filled)))
    index = np.array([int(r["index"]) for r in rows])
    order = np.argsort(index)
    assert data.split.labeled.tolist() == sorted(index.tolist())
    assert data.labeled.y.tolist() == [int(rows[i]["label"]) for i in order]
    assert len(data.x_ulb) == len(data.split.unlabeled) and not np.intersect1d(data.split.unlabeled, index).size


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["index", "path", "label"], *rows])
    return path


@pytest.mark.parametrize("rows, message", [
    ([[5, "", ""]], "line 2: no label"),
    ([[99999, "", 1]], "outside the pool"),
    ([[5, "", 1], [5, "", 2]], "listed twice"),
    ([["x", "", 1]], "not a whole number"),
    ([[5, "", "seven"]], "not a class number"),
])
def test_bad_picks_csv_is_refused(tmp_path, rows, message):
    picks = write_csv(tmp_path / "picks.csv", rows)
    with pytest.raises(SganError, match=message):
        prepared(Config(data="sklearn-digits", labels_csv=str(picks)))


def test_bad_picks_csv_through_the_cli_is_one_line_and_writes_nothing(tmp_path):
    picks = write_csv(tmp_path / "picks.csv", [[5, "", ""]])
    proc = run_sgan("train", "--data", "sklearn-digits", "--labels-csv",
                           str(picks), "--iterations", "1", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no label" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_picks_that_are_validation_images_are_refused(tmp_path):
    cfg = Config(data="sklearn-digits", seed=0)
    plan = make_plan(cfg, labeled=False)
    _, candidates = candidate_pool(plan.config, plan.pool)
    validation = np.setdiff1d(np.arange(1797), candidates)
    picks = write_csv(tmp_path / "picks.csv", [[int(validation[0]), "", 1]])
    with pytest.raises(SganError, match="validation or test image"):
        prepared(Config(data="sklearn-digits", seed=0, labels_csv=str(picks)))


def test_unlabeled_folder_named_labels_and_a_changed_folder(tmp_path):
    """A flat folder of photos: picks by path, labels written as names, validation from its own folder."""
    rng = np.random.default_rng(0)
    pool = tmp_path / "pool"
    val = tmp_path / "val"
    pool.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(pool / f"{i:02d}.png")
    for name in ("cat", "dog"):
        (val / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(val / name / f"{i}.png")
    cfg = Config(data=str(pool), image_size=32, model="resnet18", loader_workers=0, progress=False)
    suggest_labels(cfg, budget=4, out=tmp_path / "s", strategy="random")
    rows = read_rows(tmp_path / "s" / "picks.csv")
    assert all(Path(r["path"]).parent == pool for r in rows)
    names = write_csv(tmp_path / "names.csv", [[r["index"], r["path"], n] for r, n in zip(rows, ["dog", "cat"] * 2)])
    with pytest.raises(SganError, match="--val-data"):
        prepared(Config(data=str(pool), image_size=32, labels_csv=str(names), loader_workers=0))
    data = prepared(Config(data=str(pool), image_size=32, labels_csv=str(names), val_data=str(val), loader_workers=0))
    assert data.classes == ["cat", "dog"] and sorted(data.labeled.y.tolist()) == [0, 0, 1, 1]
    assert len(data.x_ulb) == 8
    moved = write_csv(tmp_path / "moved.csv", [[rows[0]["index"], str(pool / "elsewhere.png"), "cat"]])
    with pytest.raises(SganError, match="did the folder change"):
        prepared(Config(data=str(pool), image_size=32, labels_csv=str(moved), val_data=str(val), loader_workers=0))


def test_suggest_benchmark_runs_all_three_arms(tmp_path):
    """benchmarks/suggest_labels.py at a toy size: suggested, random and class-balanced picks."""
    config = tmp_path / "tiny.toml"
    config.write_text('data = "sklearn-digits"\niterations = 3\nbatch_size = 8\neval_every = 3\nlog_every = 3\n'
                      'threads = 1\n')
    bench = benchmark("suggest_labels")
    bench.main(["--config", str(config), "--budget", "20", "--seeds", "0", "--pretext-iterations", "5",
                "--out", str(tmp_path / "out")])
    results = json.loads((tmp_path / "out" / "suggest_labels.json").read_text())["results"]
    assert [r["arm"] for r in results] == ["suggested", "random", "balanced"]
    assert all(sum(r["per_class"]) == 20 and 0 <= r["val"] <= 1 for r in results)
    assert results[2]["per_class"] == [2] * 10  # the protocol's draw is class-balanced
    assert (tmp_path / "out" / "suggest_labels.md").read_text().count("\n") == 5


def test_suggest_benchmark_resumes_a_stopped_run_from_its_checkpoint(tmp_path, capsys):
    """A run stopped before metrics.json (the checkpoint kept) continues, not starts over."""
    config = tmp_path / "tiny.toml"
    config.write_text('data = "sklearn-digits"\niterations = 4\nbatch_size = 8\neval_every = 2\nlog_every = 2\n'
                      'checkpoint_every = 2\nthreads = 1\n')
    bench = benchmark("suggest_labels")
    args = ["--config", str(config), "--budget", "20", "--seeds", "0", "--arms", "random", "--out", str(tmp_path / "out")]
    bench.main(args)
    first = json.loads((tmp_path / "out" / "suggest_labels.json").read_text())["results"]
    run = tmp_path / "out" / "random_seed0"
    assert (run / "checkpoint.safetensors").is_file()
    (run / "metrics.json").unlink()  # as if stopped after the last checkpoint
    capsys.readouterr()
    bench.main(args)
    assert f"sgan: resuming {run}" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "suggest_labels.json").read_text())["results"] == first


def test_suggest_benchmark_takes_a_strategy_and_refuses_picks_made_otherwise(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('data = "sklearn-digits"\niterations = 2\nbatch_size = 8\neval_every = 2\nlog_every = 2\n'
                      'threads = 1\n')
    bench = benchmark("suggest_labels")
    common = ["--config", str(config), "--budget", "20", "--seeds", "0", "--pretext-iterations", "3",
              "--arms", "suggested", "--out", str(tmp_path / "out")]
    bench.main([*common, "--strategy", "typical", "--features", "gan"])
    made = json.loads((tmp_path / "out" / "picks_suggested_seed0" / "suggest.json").read_text())
    assert (made["strategy"], made["features"]) == ("typical", "gan")
    summary = json.loads((tmp_path / "out" / "suggest_labels.json").read_text())
    assert (summary["strategy"], summary["features"]) == ("typical", "gan")
    with pytest.raises(SystemExit, match="typical/gan, not representative/contrastive"):
        bench.main(common)


def test_suggest_labels_takes_the_amp_and_layout_flags_it_reads():
    from sgan.cli import build_parser, run_config

    args = build_parser().parse_args(["suggest-labels", "--budget", "10", "--no-amp", "--no-channels-last"])
    cfg = run_config(args)
    assert cfg.amp is False and cfg.channels_last is False
    assert run_config(build_parser().parse_args(["suggest-labels", "--budget", "10", "--amp"])).amp is True
