"""The CLI end to end on tiny real data (CPU), and every bad input as one line with exit code 2."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import digits28, run_sgan, write_kaggle_csv
from sgan.cli import COMMANDS
from sgan.registry import REGISTRY

FAST = ["--iterations", "12", "--batch-size", "8", "--eval-every", "6", "--log-every", "3", "--no-progress"]


sgan = run_sgan  # the command line, in this process


@pytest.fixture
def run_dir(finished_run) -> Path:
    return finished_run


def test_train_prints_the_table_and_where_the_run_is(digits_csv, tmp_path):
    r = sgan("train", "--data", str(digits_csv), "--n-labeled", "20", "--out", str(tmp_path / "run"),
             "--iterations", "2", "--batch-size", "8", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert all(m in r.stdout for m in ("supervised", "fixmatch", "sgan"))  # the default methods
    assert r.stdout.strip().splitlines()[-1] == f"run folder: {tmp_path / 'run'} (open {tmp_path / 'run' / 'report.html'})"


def test_train_writes_a_complete_run_folder(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "split.json", "metrics.jsonl", "metrics.json", "losses.png", "sgan_samples.png",
            "sgan_classifier.safetensors", "sgan_generator.safetensors", "supervised_classifier.safetensors",
            "sgan_diagnostics.safetensors", "supervised_diagnostics.safetensors", "fixmatch_classifier.safetensors",
            "sgan+aug_generator.safetensors", "report.html"} <= names
    assert "fixmatch_generator.safetensors" not in names and "conventional_generator.safetensors" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"protocol", "methods"}
    assert list(metrics["methods"]) == list(REGISTRY)
    for m in metrics["methods"].values():
        assert set(m) == {"val", "holdout", "train_seconds", "iterations", "selected_step"}
        assert 0 <= m["val"] <= 1 and 0 <= m["holdout"] <= 1 and m["iterations"] == 12
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["labeled"]) == 20
    assert len(split["validation"]) == pytest.approx(1797 * 0.2, abs=10)
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in steps if "loss_d" in r} == {3, 6, 9, 12}
    seconds = [r["seconds"] for r in steps if r.get("method") == "sgan" and "val" in r]  # training time so far
    assert len(seconds) == 2 and 0 < seconds[0] < seconds[1]
    assert sorted(p.name for p in (run_dir / "samples" / "sgan").iterdir()) == [
        "step_0000006.png", "step_0000012.png"]


def test_same_seed_repeats_exactly(run_dir, digits_csv, tmp_path):
    holdout = json.loads((run_dir / "config.json").read_text())["eval"]["holdout"]
    r = sgan("train", "--data", str(digits_csv), "--eval", f"holdout={holdout}", "--n-labeled", "20",
             "--methods", "supervised", "sgan", "--out", str(tmp_path / "again"), *FAST)
    assert r.returncode == 0, r.stderr
    first = json.loads((run_dir / "metrics.json").read_text())["methods"]
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["methods"]
    for method in again:  # each method starts from the seed, whichever others ran beside it
        assert first[method]["val"] == again[method]["val"]
        assert first[method]["holdout"] == again[method]["holdout"]


def test_predict_writes_a_kaggle_submission(run_dir, test_csv, tmp_path):
    out = tmp_path / "submission.csv"
    r = sgan("predict", str(run_dir), "--data", str(test_csv), "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["id", "label"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1000, 1050))
    assert all(0 <= int(r[1]) <= 9 for r in rows[1:])


def test_eval_reports_each_method(run_dir, digits_csv):
    r = sgan("eval", str(run_dir), "--data", str(digits_csv))
    assert r.returncode == 0, r.stderr
    header, *rows = [line.split() for line in r.stdout.strip().splitlines()]
    assert header == ["method", "data", "images", "accuracy"]
    assert [row[0] for row in rows] == list(REGISTRY)
    assert all(row[1] == str(digits_csv) and row[2] == "1797" and 0 <= float(row[3]) <= 1 for row in rows)


def test_existing_run_folder_is_not_overwritten(run_dir, digits_csv):
    before = (run_dir / "metrics.json").read_text()
    r = sgan("train", "--data", str(digits_csv), "--out", str(run_dir), *FAST)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (run_dir / "metrics.json").read_text() == before


def _write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


PIX = ",".join(f"pixel{i}" for i in range(784))
ROW = ",".join(["0"] * 784)


def _cli_cases(tmp_path: Path, digits_csv: Path) -> dict[str, tuple[list[str], str]]:
    """The catalogue of bad inputs: every reader case through --data, then the cases only a
    whole run meets (labels against K, budgets, folders, config values, the output path)."""
    from test_folders import photo, write_broken
    from test_readers import BAD_INPUTS

    cases = {}
    for i, (name, (make, message)) in enumerate(sorted(BAD_INPUTS.items())):
        folder = tmp_path / f"reader{i}"  # each case in its own folder: "folder without images" needs it empty
        folder.mkdir()
        cases[name] = (["--data", make(folder)], message)
    images, labels = digits28()
    big = write_kaggle_csv(tmp_path / "label12.csv", images[:100, 0], np.r_[labels[:99], 12])
    nine = write_kaggle_csv(tmp_path / "nine.csv", images[labels != 9][:300, 0], labels[labels != 9][:300])
    (tmp_path / "empty_dir").mkdir()
    write_broken(tmp_path / "broken_dir")
    (tmp_path / "one" / "cat").mkdir(parents=True)
    for i in range(4):
        photo(i).save(tmp_path / "one" / "cat" / f"{i}.jpg")
    ten = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)])  # 10 images of each class
    np.savez(tmp_path / "hundred.npz", x=images[ten, 0], y=labels[ten])
    np.savez(rgb := tmp_path / "rgb.npz", x=np.zeros((8, 3, 28, 28), dtype=np.uint8))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    return {
        **cases,
        "csv without label column": (["--data", _write(tmp_path, "id.csv", f"id,{PIX}\n0,{ROW}\n")], "has no labels"),
        "label outside 0..K-1": (["--data", str(big), "--num-classes", "10"], "label 12 of image 99 is outside 0..9"),
        "class with no labeled example": (["--data", str(nine), "--num-classes", "10"], "class 9 has no images"),
        "budget above a class": (["--data", str(digits_csv), "--n-labeled", "2000"], "label budget 2000"),
        "unlabeled folder empty": (["--data", str(digits_csv), "--unlabeled", str(tmp_path / "empty_dir")],
                                   "empty_dir: no image files"),
        "no decodable image": (["--data", str(digits_csv), "--unlabeled", str(tmp_path / "broken_dir")],
                               "none of its 4 image files could be decoded"),
        "labeled folder with one class": (["--data", str(tmp_path / "one"), "--model", "resnet18", "--image-size", "32"],
                                          "labeled folder has one class (cat)"),
        # a folder is decoded to the pool's channels; a file keeps its own
        "channels differ": (["--data", str(digits_csv), "--unlabeled", str(rgb)], "3-channel images"),
        "unknown config key": (["--config", _write(tmp_path, "c.toml", "iteratons = 5\n")], "did you mean 'iterations'"),
        "config value of the wrong type": (["--config", _write(tmp_path, "t.toml", 'lr = "fast"\n')], "must be float"),
        "zero batch size": (["--batch-size", "0"], "batch_size must be positive"),
        "negative batch size": (["--batch-size", "-4"], "batch_size must be positive"),
        "zero learning rate": (["--lr", "0"], "lr must be positive"),
        "negative learning rate": (["--lr", "-1"], "lr must be positive"),
        "zero iterations": (["--iterations", "0"], "iterations must be positive"),
        "output path is a file": (["--out", _write(tmp_path, "file.txt", "x")], "output path is a file"),
        "unknown preset": (["--preset", "mnist-1m"], "unknown preset"),
        # these two spun forever at 100% CPU, deaf to Ctrl-C: the run had an empty set to draw batches from
        "split leaves no unlabeled image": (["--data", str(tmp_path / "hundred.npz"), "--val-per-class", "2",
                                             "--n-labeled", "80"], "the split leaves no unlabeled image"),
        "negative validation per class": (["--val-per-class", "-1"], "val_per_class must be positive"),
        "zero validation per class": (["--val-per-class", "0"], "val_per_class must be positive"),
        "overwrite a folder sgan did not write": (["--out", str(tmp_path / "mine"), "--overwrite"],
                                                  "not a run folder, not overwritten (it holds thesis.txt"),
        # these ended in a traceback
        "config file holding a list": (["--config", _write(tmp_path, "l.json", "[1, 2]")],
                                       "holds a table of config keys, got list"),
        "config file holding a string": (["--config", _write(tmp_path, "s.json", '"x"')],
                                         "holds a table of config keys, got str"),
        "[sweep] that is not a table": (["--config", _write(tmp_path, "sw.toml", "sweep = 3\n")],
                                        "[sweep] must be a table"),
        "sweep per_source not a table": (["sweep", "--config", _write(tmp_path, "ps.toml", "[sweep]\nper_source = 3\n")],
                                         "config key 'per_source' must be dict"),
        "sweep per_budget not a budget": (["sweep", "--config",
                                           _write(tmp_path, "pb.toml", "[sweep.per_budget.few]\niterations = 9\n")],
                                          "[sweep.per_budget.few] must name a label budget"),
        "sweep per_cell naming no cell": (["sweep", "--config",
                                           _write(tmp_path, "pc.toml", "[sweep.per_cell.n100_holdout]\niterations = 9\n")],
                                          "[sweep.per_cell.n100_holdout] names no cells of this sweep"),
        "sweep joining the pool to the pool": (["sweep", "--config", _write(tmp_path, "up.toml",
                                                                           "unlabeled_plus_pool = true\n")],
                                                "unlabeled_plus_pool needs an --unlabeled source"),
        "sweep per_budget with a bad value": (["sweep", "--config",
                                               _write(tmp_path, "pv.toml", "[sweep.per_budget.100]\niterations = 0\n")],
                                              "iterations must be positive"),
        "sweep with a negative seed": (["sweep", "--seeds", "-1"], "seeds must be >= 0, got -1"),
        "sweep with text budgets": (["sweep", "--config", _write(tmp_path, "b.toml", '[sweep]\nbudgets = "x"\n')],
                                    "config key 'budgets' must be list[int]"),
        "beta1 above 1": (["--beta1", "5"], "beta1 must be in [0, 1), got 5.0"),
        "learning rate nan": (["--lr", "nan"], "lr must be positive and finite, got nan"),
        "learning rate inf": (["--lr", "inf"], "lr must be positive and finite, got inf"),
        "negative threads": (["--threads", "-3"], "threads must be in [1, 1024], got -3"),
        "unknown device": (["--device", "foo"], "unknown device 'foo'"),
        "negative seed": (["--seed", "-1"], "seed must be >= 0, got -1"),
        "generator noise too large to allocate": (["--z-dim", "100000000"], "z_dim must be in [1, 4096]"),
        "output under a file": (["--out", str(tmp_path / "file2.txt" / "run")], "cannot create the run folder here"),
        "output is a device": (["--out", "/dev/null"], "output path is a file"),
        # accepted silently before
        "fewer labels than classes": (["--n-labeled", "5"], "label budget 5 leaves classes 5..9 without a labeled image"),
        "two channels": (["--channels", "2"], "unknown channels 2; choose from 1, 3"),
        "one class": (["--num-classes", "1"], "num_classes must be >= 2"),
        "negative unlabeled weight": (["--unlabeled-weight", "-1"], "unlabeled_weight must be >= 0"),
        "negative pseudo-label weight": (["--pseudo-label-weight", "-0.5"], "pseudo_label_weight must be >= 0"),
        "noise nan": (["--input-noise", "nan"], "input_noise must be >= 0 and finite, got nan"),
        "a thousand loader processes": (["--loader-workers", "1000"], "loader_workers must be in [0, 64]"),
        # usage errors: one line, not argparse's usage block
        "eval set without a file": (["--eval", "holdout"], "expected NAME=FILE, got 'holdout' (see sgan train --help)"),
        "not a number": (["--iterations", "many"], "invalid int value: 'many'"),
        "suggest with an unknown strategy": (["suggest-labels", "--budget", "5", "--strategy", "best"],
                                             "unknown strategy 'best'; choose from representative, typical, random"),
        # the other commands
        "suggest with no budget": (["suggest-labels", "--budget", "0", "--out", str(tmp_path / "sg")],
                                   "budget must be between 1 and"),
        "predict into a device": (["predict", str(tmp_path / "mine"), "--data", "sklearn-digits", "--out", "/dev/full"],
                                  "/dev/full: output path is not a regular file; not replaced"),
        "predict from a folder that is no run": (["predict", str(tmp_path / "mine"), "--data", "sklearn-digits", "--out",
                                                  str(tmp_path / "p.csv")], "not a run folder (no config.json)"),
        "eval of a folder that is no run": (["eval", str(tmp_path / "mine"), "--data", "sklearn-digits"],
                                            "not a run folder (no config.json)"),
        "export of a folder that is no run": (["export", str(tmp_path / "mine")], "not a run folder (no config.json)"),
        "resume of a folder that is no run": (["--resume", str(tmp_path / "mine")], "not a run folder (no config.json)"),
        "report of a folder that is no run": (["report", str(tmp_path / "mine")], "not a run or sweep folder"),
    }


def test_every_bad_input_is_one_line_and_exit_2(tmp_path, digits_csv, monkeypatch):
    cases = _cli_cases(tmp_path, digits_csv)
    monkeypatch.chdir(tmp_path)  # what a case writes by default lands here
    (tmp_path / "file2.txt").write_text("x")
    assert len(cases) >= 60

    def argv(i: int, args: list[str]) -> list[str]:
        if args[0] in COMMANDS:  # another command, as written
            return args
        if "--resume" in args:
            return ["train", *args]
        out = [] if "--out" in args else ["--out", str(tmp_path / f"out{i}")]
        return ["train", *FAST, *out, *args]  # the case's flags come last and win

    for i, (case, (args, message)) in enumerate(cases.items()):
        r = sgan(*argv(i, args))  # an exception escaping main() fails here, with its traceback
        code, err = r.returncode, r.stderr
        assert code == 2, (case, err)
        assert "Traceback" not in err, case
        assert message in err, (case, err)
        assert len(err.strip().splitlines()) == 1, (case, err)
        assert not (tmp_path / f"out{i}").exists(), case  # checked before anything is written
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.txt"]
    assert not list(tmp_path.rglob("*.tmp"))
    assert Path("/dev/full").is_char_device() and Path("/dev/null").is_char_device()


def test_sweep_source_table_joins_the_pool_to_a_transductive_source(digits_csv, tmp_path):
    holdout = write_kaggle_csv(tmp_path / "holdout.csv", *[a[:60] for a in (digits28()[0][:, 0], digits28()[1])])
    config = tmp_path / "sweep.toml"
    config.write_text(f'data = "{digits_csv}"\nmethods = ["sgan"]\niterations = 2\nbatch_size = 8\n'
                      f'eval = {{holdout = "{holdout}"}}\n[sweep]\nbudgets = [20]\nseeds = [0]\n'
                      'sources = ["holdout"]\n[sweep.per_source.holdout]\nunlabeled_plus_pool = true\n')
    r = sgan("sweep", "--config", str(config), "--no-progress", "--out", str(tmp_path / "sw"))
    assert r.returncode == 0, r.stderr
    assert "| 20 | sgan | pool+holdout (transductive), pseudo-labels x1 |" in r.stdout
    cell = json.loads((tmp_path / "sw" / "runs" / "n20_holdout_seed0" / "metrics.json").read_text())
    assert cell["protocol"]["counts"]["unlabeled"] == 60 + (len(digits28()[1]) - 20 - cell["protocol"]["counts"]["val"])


def test_sweep_through_the_cli_with_a_config_file(digits_csv, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(f'data = "{digits_csv}"\nmethods = ["supervised"]\niterations = 2\nbatch_size = 8\n'
                      "[sweep]\nbudgets = [20]\nseeds = [0, 1]\n")
    r = sgan("sweep", "--config", str(config), "--no-progress", "--out", str(tmp_path / "sw"))
    assert r.returncode == 0, r.stderr
    assert "| 20 | supervised | - |" in r.stdout
    assert sorted(p.name for p in (tmp_path / "sw" / "runs").iterdir()) == ["n20_pool_seed0", "n20_pool_seed1"]
    r = sgan("train", "--config", str(config), "--n-labeled", "20", "--no-progress", "--out", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr  # the same file trains one cell; its [sweep] table is left to sweep
    assert json.loads((tmp_path / "one" / "config.json").read_text())["iterations"] == 2
    one, cell = (json.loads((d / "metrics.json").read_text())["methods"]["supervised"]["val"]
                 for d in (tmp_path / "one", tmp_path / "sw" / "runs" / "n20_pool_seed0"))
    assert one == cell  # a cell, forked from the sweep's server process, trains as a run of its own does
    config.write_text('iterations = 2\n[sweep]\nbudget = [20]\n')
    r = sgan("sweep", "--config", str(config), "--out", str(tmp_path / "sw2"))
    assert r.returncode == 2 and "unknown [sweep] key 'budget'" in r.stderr and "Traceback" not in r.stderr


def test_help_and_usage_errors_come_without_torch():
    """`sgan --help` answers at once: nothing heavy is imported until a command runs."""
    code = ("import sys, sgan.cli; sgan.cli.build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'sklearn') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    r = sgan("--version")
    assert r.returncode == 0 and r.stdout.startswith("sgan ")


def test_each_command_lists_only_the_flags_it_uses():
    suggest = sgan("suggest-labels", "--help").stdout
    assert "--budget" in suggest and "--data" in suggest and "--image-size" in suggest
    assert "--iterations" not in suggest and "--lr" not in suggest and "--methods" not in suggest
    train = sgan("train", "--help").stdout
    assert "--iterations" in train and "--budget" not in train
    assert "Semi-Supervised GAN" in sgan("--help").stdout


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        r = sgan("train", *FAST, "--out", str(disk / "run"))
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "No space left on device" in r.stderr and f"continue it with: sgan train --resume {disk / 'run'}" in r.stderr
        assert not list(disk.rglob("*.tmp")) and not (disk / "run" / "metrics.json").exists()
    finally:
        subprocess.run(["umount", str(disk)])
