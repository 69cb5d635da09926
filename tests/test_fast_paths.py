"""The optional fast paths (bf16 autocast, torch.compile, CUDA) match the plain float32 path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import benchmark, planned
from sgan.config import Config
from sgan import plan
from sgan.methods import build_method
from sgan.plan import bf16_is_fast
from sgan.trainer import train

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def sgan_steps(device: torch.device, steps: int = 5, **settings) -> tuple[list[dict[str, float]], list[torch.dtype]]:
    """Losses of the first SGAN steps from one seed on one fixed batch, and the classifier's output dtypes."""
    torch.manual_seed(0)
    # the pseudo-label branch runs too; at the default threshold no untrained prediction passes, so
    # its loss is 0 on both paths (a lower one would compare argmaxes of near-uniform logits)
    cfg = Config(pseudo_label_weight=1.0, **settings)
    method = build_method("sgan", planned(cfg, channels=1, num_classes=10), device=device, augment=lambda x: x.flip(-1))
    dtypes: list[torch.dtype] = []
    # the logits' dtype, also where the forward returns (logits, features)
    method.classifier.register_forward_hook(
        lambda module, args, out: dtypes.append((out[0] if isinstance(out, tuple) else out).dtype))
    g = torch.Generator().manual_seed(1)
    x_lb = (torch.rand(16, 1, 28, 28, generator=g) * 2 - 1).to(device)
    y_lb = torch.randint(0, 10, (16,), generator=g).to(device)
    x_ulb = (torch.rand(16, 1, 28, 28, generator=g) * 2 - 1).to(device)
    history = []
    for i in range(steps):
        torch.manual_seed(100 + i)  # the same noise and dropout draws for both paths
        history.append(method.train_step(x_lb, y_lb, x_ulb))
    return history, dtypes


def assert_close_losses(fast: list[dict[str, float]], plain: list[dict[str, float]], rel: float) -> None:
    for step, (f, p) in enumerate(zip(fast, plain)):
        assert f.keys() == p.keys()
        for key in p:
            assert math.isfinite(f[key])
            assert f[key] == pytest.approx(p[key], rel=rel, abs=5e-3), (step, key, f[key], p[key])


def test_bf16_autocast_matches_float32_on_cpu():
    plain, plain_dtypes = sgan_steps(torch.device("cpu"), amp=False)
    fast, fast_dtypes = sgan_steps(torch.device("cpu"), amp=True)
    assert set(plain_dtypes) == {torch.float32}
    assert set(fast_dtypes) == {torch.bfloat16}  # autocast really ran the classifier in bf16
    assert fast != plain
    assert_close_losses(fast, plain, rel=0.03)


@pytest.mark.parametrize("fast", [True, False])
def test_amp_by_default_where_bf16_is_fast(monkeypatch, fast):
    monkeypatch.setattr(plan, "bf16_is_fast", lambda device: fast)
    for name in ("supervised", "sgan"):
        assert build_method(name, planned(Config(), channels=1, num_classes=10), device=torch.device("cpu")).amp is fast
        for amp in (True, False):  # a setting the user gave wins
            assert build_method(name, planned(Config(amp=amp), channels=1, num_classes=10), device=torch.device("cpu")).amp is amp


def test_bf16_is_fast_on_a_cpu_only_with_amx(monkeypatch):
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        assert bf16_is_fast(torch.device("cpu")) is amx


@CUDA
def test_cuda_plain_matches_cpu():
    assert_close_losses(sgan_steps(torch.device("cuda"), amp=False)[0], sgan_steps(torch.device("cpu"), amp=False)[0],
                        rel=1e-3)


@CUDA
def test_cuda_bf16_and_compile_match_plain():
    plain, _ = sgan_steps(torch.device("cuda"), amp=False)
    fast, dtypes = sgan_steps(torch.device("cuda"), amp=True, compile=True)
    assert torch.bfloat16 in dtypes
    assert_close_losses(fast, plain, rel=0.03)


@CUDA
def test_cuda_training_end_to_end(tmp_path):
    metrics = train(data="sklearn-digits", methods=["supervised", "sgan"], iterations=60, eval_every=30,
                    lr=2e-3, device="cuda", amp=True, compile=True, progress=False, out=str(tmp_path / "run"))
    for result in metrics.methods.values():
        assert result.accuracy["val"] > 0.5


def test_speed_benchmark_writes_json_and_table(tmp_path):
    """benchmarks/speed.py end to end at a toy size: float32 then bf16 in one run (the 28 px pair:
    bf16 ResNet18 steps take a minute on CPUs without bf16 units), then both network pairs."""
    speed = benchmark("speed")
    toy = ["--device", "cpu", "--batch", "4", "--iterations", "2", "--warmup", "1", "--repeats", "2"]
    speed.main([*toy, "--amp", "both", "--out", str(tmp_path / "amp")])
    rows = json.loads((tmp_path / "amp" / "speed.json").read_text())["rows"]
    assert [(r["impl"], r["dtype"]) for r in rows] == [("sgan (PyTorch) 28 px", d) for d in ("float32", "bf16 autocast")]
    speed.main([*toy, "--photos", "--photo-sizes", "32", "64", "--photo-batch", "4", "--photo-iterations", "1",
                "--photo-warmup", "1", "--out", str(tmp_path / "photos")])
    rows += json.loads((tmp_path / "photos" / "speed.json").read_text())["rows"]
    assert [(r["impl"], r["batch"], r["dtype"]) for r in rows[2:]] == [
        (name, 4, "float32") for name in ("sgan (PyTorch) 28 px", "sgan ResNet18 32 px", "sgan ResNet18 64 px")]
    assert all(len(r["iters_per_s"]) == 2 and r["median_iters_per_s"] > 0 for r in rows)
    table = (tmp_path / "photos" / "speed.md").read_text()
    assert "ResNet18 64 px" in table and "ResNet18 32 px" in table and table.count("\n") == 5


def test_machine_names_the_cpu():
    import re

    info = benchmark("machine").describe()
    assert info["cores"] >= 1 and info["torch"] == torch.__version__
    cpuinfo = Path("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else None
    if model:  # Linux: the model's name, not just "x86_64"
        assert info["cpu"] == model.group(1).strip()
    else:
        assert info["cpu"]


def test_time_to_accuracy_benchmark_reads_both_clocks(tmp_path):
    """benchmarks/time_to_accuracy.py at a toy size, the Keras peer replaced by a script that prints
    the peer's log lines: each target's first crossing, on our clock and on the peer's."""
    bench = benchmark("time_to_accuracy")
    config = tmp_path / "tiny.toml"
    config.write_text('data = "sklearn-digits"\nbatch_size = 8\nlog_every = 3\nthreads = 1\n\n[sweep]\nseeds = [0]\n')
    fake_peer = tmp_path / "peer.py"  # the peer's --log line format, then its JSON result
    fake_peer.write_text(
        "import sys\n"
        "for it, val, s in [(2, 40.0, 3), (4, 91.5, 7), (6, 88.0, 9)]:\n"
        "    print(f'[{it}] D_sup loss 1.0000 acc 50.0% | D_unsup loss 0.5000 | G loss 0.7000 | val {val:.2f}% | {s:.0f}s',"
        " file=sys.stderr)\n"
        "print('{}')\n")
    bench.PEER = fake_peer
    bench.main(["--config", str(config), "--set", "iterations=6", "--eval-every", "3", "--peer", sys.executable,
                "--peer-iterations", "6", "--targets", "0.5", "0.95", "--out", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "time_to_accuracy.json").read_text())
    ours, peer = report["results"]["sgan sgan+aug"], report["results"]["keras peer (notebook SGAN)"]
    assert [p["step"] for p in ours["curve"]] == [3, 6] and 0 < ours["curve"][0]["seconds"] < ours["curve"][1]["seconds"]
    assert peer["reached"]["0.5"] == {"step": 4, "seconds": 7.0, "val": 0.915}
    assert peer["reached"]["0.95"] is None and peer["best"]["step"] == 4
    table = (tmp_path / "out" / "time_to_accuracy.md").read_text()
    assert report["machine"]["cpu"] and report["machine"]["cores"] >= 1
    assert "7 s (step 4, 91.50%)" in table and "not reached (best 91.50% at 7 s, step 4)" in table


def test_time_to_accuracy_benchmark_reads_the_photo_peers_curve(tmp_path):
    """--peer-kind photos: the article's SGAN's printed curve is read (its clock, not ours), and its
    own summary (steps/s, test) is kept beside it."""
    bench = benchmark("time_to_accuracy")
    config = tmp_path / "tiny.toml"
    config.write_text('data = "sklearn-digits"\nbatch_size = 8\nlog_every = 3\nthreads = 1\n')
    fake_peer = tmp_path / "peer.py"  # seed_torch_sgan.py's one JSON line
    fake_peer.write_text(
        "import json, sys\n"
        "assert '--size' in sys.argv and sys.argv[sys.argv.index('--iterations') + 1] == '6'\n"
        "print(json.dumps({'steps_per_s': 2.5, 'best_val': 0.62, 'test': 0.6, 'curve': [\n"
        "    {'step': 3, 'val': 0.55, 'seconds': 1.5}, {'step': 6, 'val': 0.62, 'seconds': 3.0}]}))\n")
    bench.PHOTO_PEER = fake_peer
    bench.main(["--config", str(config), "--set", "iterations=6", "--eval-every", "3", "--peer", sys.executable,
                "--peer-kind", "photos", "--peer-iterations", "6", "--targets", "0.6", "--out", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "time_to_accuracy.json").read_text())
    peer = report["results"]["photo peer (article's PyTorch SGAN)"]
    assert peer["reached"]["0.6"] == {"step": 6, "val": 0.62, "seconds": 3.0}
    assert report["peer_summary"] == {"steps_per_s": 2.5, "best_val": 0.62, "test": 0.6}
    assert report["protocol"].startswith("Pets-12k-32")
    assert "3 s (step 6, 62.00%)" in (tmp_path / "out" / "time_to_accuracy.md").read_text()


def test_profile_benchmark_times_every_labelled_part_of_the_photo_step(tmp_path):
    """benchmarks/profile_step.py at a toy size: every labelled part of the SGAN step is found by
    the profiler (a label renamed in methods/sgan.py would show as 0 here) and the parts, which do
    not overlap, fit in the profiled step (not the unprofiled median: load on the machine would
    make that comparison fail for the wrong reason)."""
    prof = benchmark("profile_step")
    cfg = tmp_path / "toy.toml"
    cfg.write_text('model = "resnet9"\nimage_size = 32\nwidth = 8\nbatch_size = 4\nnum_classes = 2\n'
                   'generator_loss = "feature_matching"\n')
    prof.main(["--config", str(cfg), "--warmup", "1", "--steps", "2", "--amp", "off", "--out", str(tmp_path / "p")])
    (result,) = json.loads((tmp_path / "p" / "profile.json").read_text())["results"]
    parts = result["sgan"]["parts_s"]
    assert set(parts) == set(prof.PARTS) and all(seconds > 0 for seconds in parts.values()), parts
    assert sum(parts.values()) <= result["sgan"]["profiled_step_s"] and result["ratio"] > 0
    assert "| D backward |" in (tmp_path / "p" / "profile.md").read_text()
