"""Data-parallel training: torchrun with 2 CPU processes over gloo, and the pieces it rests on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from conftest import run_sgan
from sgan.distributed import Ranks, agree, check_in_step, shard
from sgan.errors import SganError


def test_shards_are_disjoint_equal_and_cover_all_but_the_remainder():
    parts = [shard(103, Ranks(rank=r, world=4)) for r in range(4)]
    assert [len(p) for p in parts] == [25] * 4
    joined = torch.cat(parts)
    assert len(set(joined.tolist())) == 100 and joined.max() < 103
    assert torch.equal(shard(7, Ranks()), torch.arange(7))  # one process: everything
    with pytest.raises(SganError, match="cannot be shared"):
        shard(1, Ranks(rank=0, world=2))


def test_single_process_agree_is_identity():
    losses = {"loss_d": 1.5, "loss_g": 0.25}
    assert agree(losses, False, Ranks(), torch.device("cpu")) == (losses, False)


def _ranks_worker(rank: int, init_file: str, perturb: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    ranks = Ranks(rank=rank, world=2)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    if perturb and rank == 1:
        with torch.no_grad():
            model.weight[0, 0] += 1e-3
    losses, stop = agree({"loss": float(rank + 1)}, rank == 1, ranks, torch.device("cpu"))
    try:
        check_in_step(model, ranks)
        verdict = "same"
    except SganError:
        verdict = "differ"
    Path(out, f"{rank}.json").write_text(json.dumps({"loss": losses["loss"], "stop": stop, "verdict": verdict}))
    dist.destroy_process_group()


@pytest.mark.parametrize("perturb", [False, True])
def test_agree_averages_and_check_in_step_catches_diverged_ranks(tmp_path, perturb):
    mp.spawn(_ranks_worker, args=(str(tmp_path / "init"), perturb, str(tmp_path)), nprocs=2)
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert all(r["loss"] == 1.5 and r["stop"] is True for r in results)  # mean of 1 and 2; rank 1 asked to stop
    assert all(r["verdict"] == ("differ" if perturb else "same") for r in results)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "sgan", "train"]
SETTINGS = ["--n-labeled", "200", "--methods", "supervised", "sgan", "--iterations", "60", "--eval-every", "30",
            "--log-every", "15", "--lr", "2e-3", "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits_csv) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted torchrun run with 2 CPU processes."""
    out = tmp_path_factory.mktemp("torchrun") / "run"
    proc = subprocess.run([*TORCHRUN, "--data", str(digits_csv), *SETTINGS, "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    return out, proc


def test_torchrun_two_cpu_processes_with_gloo(reference):
    """The real entry point: 2 processes, each on its own shard; rank 0 alone writes; the result is sane."""
    out, proc = reference
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # rank 0 reports, once
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("supervised", "sgan"):
        assert metrics["methods"][name]["val"] > 0.8, metrics["methods"][name]  # chance is 0.1
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["method"], r["step"], "val" in r) for r in lines]
    assert len(keys) == len(set(keys)) == 2 * (4 + 2)  # each line once: one writer
    config = json.loads((out / "config.json").read_text())
    assert config["out"] == str(out)
    weights = load_file(out / "sgan_classifier.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_torchrun_stopped_by_sigterm_resumes_exactly(reference, digits_csv, tmp_path):
    """SIGTERM to torchrun inside the SGAN: both ranks stop at the same step, rank 0 checkpoints
    every rank's generators and batch order, and the resumed run ends bit-identical to the
    uninterrupted one; resuming with another number of processes is refused in one line."""
    ref, _ = reference
    out = tmp_path / "run"
    p = subprocess.Popen([*TORCHRUN, "--data", str(digits_csv), *SETTINGS, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    log, deadline = out / "metrics.jsonl", time.time() + 300
    while p.poll() is None and time.time() < deadline:
        if log.exists() and '"method": "sgan", "step": 30,' in log.read_text():
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    _, err = p.communicate(timeout=300)
    assert err.count("sgan: stopped by SIGTERM") == 1, err[-3000:]  # rank 0 says it, once
    assert not (out / "metrics.json").exists()

    alone = run_sgan("train", "--resume", str(out))  # one process: refused before anything is read
    assert alone.returncode == 2 and "written by 2 process(es)" in alone.stderr and "Traceback" not in alone.stderr

    resumed = subprocess.run([*TORCHRUN, "--resume", str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ours, theirs = (json.loads((d / "metrics.json").read_text())["methods"] for d in (out, ref))
    assert {m: r["val"] for m, r in ours.items()} == {m: r["val"] for m, r in theirs.items()}
    for part in ("classifier", "generator"):
        a, b = load_file(out / f"sgan_{part}.safetensors"), load_file(ref / f"sgan_{part}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
