"""Runs survive kills: exact resume, signals, non-finite losses, and checkpoints that never unpickle."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sgan import SganError
from sgan.run import RunFolder
from conftest import run_sgan

SETTINGS = ["--n-labeled", "20", "--iterations", "40", "--batch-size", "8", "--eval-every", "10", "--log-every", "5",
            "--checkpoint-every", "5", "--ema", "0.9", "--lr-schedule", "cosine", "--methods", "supervised", "sgan",
            "--threads", "1", "--no-progress"]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "sgan", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def accuracies(run: Path) -> dict:
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    return {m: {k: v for k, v in r.items() if k != "train_seconds"} for m, r in methods.items()}


def log_without_timings(run: Path) -> list[dict]:
    """metrics.jsonl's lines without the training-seconds field, which no two runs share."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits_csv) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    code, err = finish(start("--data", str(digits_csv), "--out", str(out), *SETTINGS))
    assert code == 0, err
    return out


def wait_for(path: Path, p: subprocess.Popen, timeout: float = 120) -> bool:
    """Until this process has written `path` (a checkpoint newer than when we started waiting)."""
    before = path.stat().st_mtime_ns if path.exists() else -1
    end = time.time() + timeout
    while time.time() < end and p.poll() is None:
        if path.exists() and path.stat().st_mtime_ns != before:
            return True
        time.sleep(0.005)
    return False


def wait_for_write(tmp: Path, p: subprocess.Popen, timeout: float = 120) -> bool:
    """Until this process is writing a checkpoint (its temporary file exists)."""
    end = time.time() + timeout
    while time.time() < end and p.poll() is None:
        if tmp.exists():
            return True
        time.sleep(0.001)
    return False


def test_sigkill_at_random_moments_then_resume_is_exact(reference, digits_csv, tmp_path):
    out = tmp_path / "run"
    ckpt, tmp = out / "checkpoint.safetensors", out / "checkpoint.safetensors.tmp"
    rng = np.random.default_rng(0)
    p = start("--data", str(digits_csv), "--out", str(out), *SETTINGS, "--checkpoint-every", "1")  # many to land in
    kills, mid_write = 0, 0
    while kills < 15 and (kills < 4 or mid_write == 0):  # 3 random kills, then at least one mid-write
        if kills < 3:  # at a random moment a little after a checkpoint
            if not wait_for(ckpt, p):
                break  # finished before this kill
            time.sleep(rng.uniform(0, 0.3))
        elif not wait_for_write(tmp, p):  # then while a checkpoint is being written
            break
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        mid_write += tmp.exists()  # the killed process left its half-written checkpoint behind
        assert not (out / "metrics.json").exists()
        tmp.unlink(missing_ok=True)  # so that the next one seen is the next process's
        p = start("--resume", str(out))
    code, err = finish(p)
    assert code == 0, err
    assert kills >= 4 and mid_write >= 1, (kills, mid_write)
    assert accuracies(out) == accuracies(reference)
    assert log_without_timings(out) == log_without_timings(reference)
    for name in ("sgan_classifier.safetensors", "sgan_generator.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(reference / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_step_checkpoints_and_exits(reference, digits_csv, tmp_path, sig):
    out = tmp_path / "run"
    p = start("--data", str(digits_csv), "--out", str(out), *SETTINGS)
    assert wait_for(out / "checkpoint.safetensors", p)
    p.send_signal(sig)
    code, err = finish(p)
    assert code == 128 + sig, err
    assert f"stopped by {sig.name}" in err and f"--resume {out}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "metrics.json").exists() and (out / "checkpoint.safetensors").exists()
    r = run_sgan("train", "--resume", str(out))
    assert r.returncode == 0, r.stderr
    assert accuracies(out) == accuracies(reference)


class Payload:
    """Unpickling this writes the marker file: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_posing_as_a_checkpoint_is_refused_and_never_runs(reference, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = pickle.dumps({"weights": Payload(marker)})
    pickle.loads(evil)  # the payload is real: unpickled, it writes the marker
    assert marker.exists()
    marker.unlink()

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((reference / "config.json").read_bytes())
    (run / "checkpoint.safetensors").write_bytes(evil)
    r = run_sgan("train", "--resume", str(run))
    assert r.returncode == 2 and "not an sgan checkpoint, refused" in r.stderr and "Traceback" not in r.stderr

    # the file eval reads: the moving average's when the run kept one (--ema)
    folder = RunFolder(run)
    folder.evaluated_weights("sgan", folder.read_config()).write_bytes(evil)
    r = run_sgan("eval", str(run), "--data", "sklearn-digits", "--method", "sgan")
    assert r.returncode == 2 and "not an sgan weights file" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()


def flip_a_data_byte(path: Path) -> None:
    """One byte of the tensor data (past safetensors' 8-byte length and its JSON header) inverted:
    a damaged copy, every structure of the file intact."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    at = start + (len(data) - start) // 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_checkpoint_or_weights_file_with_one_byte_flipped_is_refused(reference, digits_csv, tmp_path):
    from sgan.checkpoint import load_state

    run = tmp_path / "run"
    p = start("--data", str(digits_csv), "--out", str(run), *SETTINGS)
    assert wait_for(run / "checkpoint.safetensors", p)
    p.send_signal(signal.SIGTERM)
    finish(p)
    tensors, _ = load_state(run / "checkpoint.safetensors")  # the intact one loads, with the networks in it
    assert tensors
    flip_a_data_byte(run / "checkpoint.safetensors")
    r = run_sgan("train", "--resume", str(run))
    assert r.returncode == 2 and "damaged checkpoint" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    shutil.copytree(reference, run, dirs_exist_ok=True)  # a finished run, for eval
    folder = RunFolder(run)
    flip_a_data_byte(folder.evaluated_weights("sgan", folder.read_config()))
    r = run_sgan("eval", str(run), "--data", "sklearn-digits", "--method", "sgan")
    assert r.returncode == 2 and "damaged weights file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_second_process_on_a_run_in_use_is_refused_until_the_first_is_killed(digits_csv, tmp_path):
    run = tmp_path / "run"
    p = start("--data", str(digits_csv), "--out", str(run), *SETTINGS, "--iterations", "100000")
    assert wait_for(run / "checkpoint.safetensors", p)
    for second in (["--resume", str(run)], ["--data", str(digits_csv), "--out", str(run), "--overwrite"]):
        r = run_sgan("train", *second)  # this process is the second: the lock is the kernel's, across processes
        assert r.returncode == 2 and f"{run}: in use by another sgan process (pid {p.pid})" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert p.poll() is None  # the first went on undisturbed
    p.send_signal(signal.SIGKILL)
    p.wait()
    resumed = start("--resume", str(run))  # the kernel dropped the killed process's lock
    assert wait_for(run / "checkpoint.safetensors", resumed)
    resumed.send_signal(signal.SIGTERM)
    code, err = finish(resumed)
    assert code == 128 + signal.SIGTERM, err


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    code, err = finish(start("--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "new" / "run")))
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_non_finite_loss_stops_without_final_weights(digits_csv, tmp_path, monkeypatch):
    from sgan import SganError, train
    from sgan.methods import SGAN

    real_step = SGAN.train_step
    calls = []

    def step(self, x_lb, y_lb, x_ulb):
        out = real_step(self, x_lb, y_lb, x_ulb)
        calls.append(1)
        return {**out, "loss_d": float("nan")} if len(calls) == 7 else out

    monkeypatch.setattr(SGAN, "train_step", step)
    out = tmp_path / "run"
    with pytest.raises(SganError, match="loss_d is nan at step 7"):
        train(data=str(digits_csv), n_labeled=20, iterations=20, batch_size=8, checkpoint_every=5,
              methods=["sgan"], progress=False, out=str(out))
    assert not (out / "sgan_classifier.safetensors").exists() and not (out / "metrics.json").exists()
    assert (out / "checkpoint.safetensors").exists()  # the good one from step 5


def test_checkpoint_carries_config_and_every_rng(reference):
    from sgan.checkpoint import load_state

    tensors, state = load_state(reference / "checkpoint.safetensors")
    assert state["config"] == json.loads((reference / "config.json").read_text())
    assert state["done"].keys() == {"supervised", "sgan"}
    assert state["rng_host"].keys() == {"python", "numpy"}


def test_resume_refuses_a_checkpoint_of_another_config_or_other_data(reference, digits_csv, tmp_path):
    """A checkpoint copied from another run, or data files that changed since: one line, nothing trained."""
    from sgan.checkpoint import load_state, save_state

    tensors, state = load_state(reference / "checkpoint.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    config = json.loads((reference / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "out": str(run)}))

    save_state(run / "checkpoint.safetensors", tensors, {**state, "config": {**state["config"], "out": str(run), "seed": 1}})
    r = run_sgan("train", "--resume", str(run))
    assert r.returncode == 2 and "written by a run of another config (seed: 1, this run's: 0)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1

    changed = tmp_path / "changed.csv"  # the same file name in the config, other pixels in it
    changed.write_text(digits_csv.read_text().replace("\n0,", "\n0,1", 1))
    moved = {**config, "out": str(run), "data": str(changed)}
    (run / "config.json").write_text(json.dumps(moved))
    save_state(run / "checkpoint.safetensors", tensors, {**state, "config": moved})
    r = run_sgan("train", "--resume", str(run))
    assert r.returncode == 2 and "written on other data" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.json"]  # nothing written


def test_a_stopped_run_is_pointed_to_resume(reference, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((reference / "config.json").read_bytes())
    r = run_sgan("train", "--out", str(run))
    assert r.returncode == 2 and f"continue it with: sgan train --resume {run}" in r.stderr


def test_a_checkpoint_from_before_a_config_key_existed_resumes(reference, tmp_path):
    """A key added since the checkpoint was written stands for its default, as in config.json."""
    from sgan.checkpoint import load_state, save_state
    from sgan.distributed import ranks_from_env
    from sgan.run import RunFolder
    from sgan.state import read_checkpoint

    tensors, state = load_state(reference / "checkpoint.safetensors")
    older = {k: v for k, v in state["config"].items() if k not in ("aug_policy", "aug_jitter")}
    cfg = RunFolder(reference).read_config()
    save_state(tmp_path / "old.safetensors", tensors, {**state, "config": older})
    saved = read_checkpoint(tmp_path / "old.safetensors", ranks_from_env(), cfg, state["data"])
    assert saved is not None and saved.done.keys() == state["done"].keys()
    save_state(tmp_path / "other.safetensors", tensors, {**state, "config": {**older, "aug_jitter": 0.3}})
    with pytest.raises(SganError, match="another config .aug_jitter: 0.3, this run's: 0.1"):
        read_checkpoint(tmp_path / "other.safetensors", ranks_from_env(), cfg, state["data"])


def test_a_checkpoint_from_before_the_plan_filled_in_channels_and_amp_resumes(reference, tmp_path):
    """Runs checkpointed before the plan existed saved channels and amp unset; they ran with what
    the plan now chooses, so they resume; a value that differs is still refused."""
    from sgan.checkpoint import load_state, save_state
    from sgan.distributed import ranks_from_env
    from sgan.run import RunFolder
    from sgan.state import read_checkpoint

    tensors, state = load_state(reference / "checkpoint.safetensors")
    cfg = RunFolder(reference).read_config()
    assert (cfg.channels, cfg.amp) == (1, state["config"]["amp"]) and cfg.amp is not None
    save_state(tmp_path / "old.safetensors", tensors, {**state, "config": {**state["config"], "channels": None,
                                                                            "amp": None}})
    assert read_checkpoint(tmp_path / "old.safetensors", ranks_from_env(), cfg, state["data"]) is not None
    save_state(tmp_path / "other.safetensors", tensors, {**state, "config": {**state["config"], "channels": 3}})
    with pytest.raises(SganError, match="another config .channels: 3, this run's: 1"):
        read_checkpoint(tmp_path / "other.safetensors", ranks_from_env(), cfg, state["data"])
