"""Data-parallel training: torchrun with 2 CPU processes over gloo, and the pieces it rests on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

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


def test_torchrun_two_cpu_processes_with_gloo(tmp_path, digits_csv):
    """The real entry point: 2 processes, each on its own shard; rank 0 alone writes; the result is sane."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "-m", "sgan", "train", "--data", str(digits_csv), "--n-labeled", "200", "--methods", "supervised", "sgan",
         "--iterations", "150", "--eval-every", "75", "--log-every", "25", "--lr", "2e-3", "--device", "cpu",
         "--no-progress", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # rank 0 reports, once
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("supervised", "sgan"):
        assert metrics["methods"][name]["val"] > 0.8, metrics["methods"][name]  # chance is 0.1
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["method"], r["step"], "val" in r) for r in lines]
    assert len(keys) == len(set(keys)) == 2 * (6 + 2)  # each line once: one writer
    config = json.loads((out / "config.json").read_text())
    assert config["out"] == str(out)
    weights = load_file(out / "sgan_classifier.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
