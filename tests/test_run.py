"""The run folder module: metrics.json as a typed record, old runs still readable, folders made
safely, and a report rebuilt from what a study keeps (config.json and metrics.json alone)."""

import json
from pathlib import Path

import pytest

from sgan import SganError
from sgan.cli import main
from sgan.run import Metrics, MethodResult, RunFolder

ENTRY = {
    "protocol": {"data": "d.csv", "preset": None, "n_labeled": 100, "labels_csv": None, "seed": 2, "iterations": 30,
                 "batch_size": 8, "unlabeled": "holdout", "transductive": True, "selection": "final weights",
                 "adabn": True, "pseudo_label_weight": 3.0, "counts": {"labeled": 100, "unlabeled": 50, "val": 20},
                 "sets": {}, "classes": ["a", "b"]},
    "methods": {"sgan": {"val": 0.75, "holdout": 0.5, "holdout+adabn": 0.55, "train_seconds": 1.5, "iterations": 30,
                         "selected_step": 20}},
}


def test_metrics_round_trip_keeps_the_json_as_it_was():
    metrics = Metrics.from_json(ENTRY)
    assert metrics.methods["sgan"] == MethodResult({"val": 0.75, "holdout": 0.5, "holdout+adabn": 0.55}, 1.5, 30, 20)
    assert metrics.protocol.transductive is True and metrics.protocol.pseudo_label_weight == 3.0
    assert json.dumps(metrics.to_json()) == json.dumps(ENTRY)  # same keys, same order, no submission_method
    metrics.protocol.submission_method = "sgan"
    assert metrics.to_json()["protocol"]["submission_method"] == "sgan"


def test_a_run_from_before_newer_keys_reads_with_what_they_meant_then():
    old = json.loads(json.dumps(ENTRY))
    for key in ("labels_csv", "adabn", "pseudo_label_weight", "sets", "classes"):
        del old["protocol"][key]
    del old["methods"]["sgan"]["selected_step"]
    metrics = Metrics.from_json(old)
    assert (metrics.protocol.adabn, metrics.protocol.pseudo_label_weight, metrics.protocol.sets) == (False, 0.0, {})
    assert metrics.methods["sgan"].selected_step == 30  # the last step was kept then


def test_create_refuses_a_file_and_a_non_empty_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SganError, match="output path is a file"):
        RunFolder.create(tmp_path / "file", overwrite=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(SganError, match="use --overwrite"):
        RunFolder.create(tmp_path / "full", overwrite=False)
    run = RunFolder.create(tmp_path / "new" / "run", overwrite=False)
    assert run.path.is_dir() and not run.is_complete()
    assert run.weights("sgan+aug", "generator").name == "sgan+aug_generator.safetensors"


def test_overwrite_removes_what_sgan_wrote_and_nothing_else(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.path / "samples" / "sgan").mkdir(parents=True)
    for path in (run.config, run.log, run.checkpoint, run.weights("sgan", "generator"), run.final_samples("sgan"),
                 run.sample_grid("sgan", 10), run.path / "metrics.json.tmp"):
        path.write_text("x")
    assert RunFolder.create(run.path, overwrite=True).path == run.path
    assert list(run.path.iterdir()) == []
    # one file of the user's among sgan's: the whole folder stays as it was
    run.config.write_text("x")
    (run.path / "notes.txt").write_text("mine")
    with pytest.raises(SganError, match="it holds notes.txt, which sgan did not write"):
        RunFolder.create(run.path, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "notes.txt"]
    # sgan's file names but no config.json: not a run folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.html").write_text("someone else's")
    with pytest.raises(SganError, match="it has no config.json"):
        RunFolder.create(other, overwrite=True)
    assert (other / "report.html").read_text() == "someone else's"


def test_report_from_a_kept_study_cell(tmp_path, capsys):
    """A study keeps each cell's config.json and metrics.json only; the report is rebuilt from them."""
    from sgan.config import Config

    run = RunFolder(tmp_path / "cell")
    run.path.mkdir()
    run.write_config(Config(methods=["sgan"], num_classes=2))
    run.metrics.write_text(json.dumps(ENTRY))
    assert main(["report", str(run.path)]) == 0
    html = run.report.read_text()
    assert "Not kept in this folder" in html and "holdout+adabn accuracy %" in html and "75.00" in html
    assert "training time (s)" in html and "train_seconds" not in html


def test_output_files_are_whole_or_absent_and_only_replace_regular_files(tmp_path):
    from sgan.files import atomic, atomic_write_text

    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    with pytest.raises(SganError, match="a.txt: cannot write: No space left on device"):
        with atomic(target) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(SganError, match="cannot write: No such file or directory"):
        atomic_write_text(tmp_path / "nowhere" / "b.txt", "x")
    with pytest.raises(SganError, match="output path is not a regular file; not replaced"):
        atomic_write_text(Path("/dev/null"), "x")
    with pytest.raises(SganError, match="output path is a folder"):
        atomic_write_text(tmp_path, "x")
    assert Path("/dev/null").is_char_device() and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_diagnostics_read_back_per_set_even_where_a_set_name_holds_a_dot(tmp_path):
    import torch

    run = RunFolder(tmp_path)
    written = {"test": {"confusion": torch.eye(2, dtype=torch.int64)},
               "test.x": {"confusion": torch.ones(2, 2, dtype=torch.int64), "wrong_index": torch.tensor([3])}}
    run.write_diagnostics("sgan", written)
    read = run.read_diagnostics("sgan")
    assert list(read) == ["test", "test.x"] and {k: set(v) for k, v in read.items()} == {k: set(v) for k, v in written.items()}
    assert all(torch.equal(read[s][p], written[s][p]) for s in written for p in written[s])
