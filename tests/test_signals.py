"""Ctrl-C and SIGTERM stop a command at any point, within seconds, with one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sgan", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def stop(process: subprocess.Popen, signum: int, *, within: float) -> str:
    """Send the signal; the process must end within `within` seconds, with one stderr line."""
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()  # a process that did not stop must not outlive its test
    took = time.monotonic() - sent
    assert took < within, (took, err)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    return err


# 1 s: torch being imported; 2 s: the data being read and split; 5 s: the training loop. (In the
# interpreter's first ~0.1 s, before sgan's handler exists, a signal's default action ends the
# process without the line; on a loaded machine that start-up took over 0.5 s once.)
@pytest.mark.parametrize("delay", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stops_at_any_point_within_seconds(digits_csv, tmp_path, signum, delay):
    out = tmp_path / "run"
    process = start("train", "--data", str(digits_csv), "--iterations", "100000", "--out", str(out), "--no-progress")
    time.sleep(delay)
    err = stop(process, signum, within=5)
    if "checkpoint written" in err:  # stopped in the loop: the run can go on
        assert f"sgan train --resume {out}" in err and (out / "checkpoint.safetensors").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_a_sweep_stops_with_its_worker_processes(digits_csv, tmp_path):
    process = start("sweep", "--data", str(digits_csv), "--budgets", "20", "--seeds", "0", "1", "--workers", "2",
                    "--iterations", "100000", "--no-progress", "--out", str(tmp_path / "sw"))
    deadline = time.monotonic() + 60
    while not list((tmp_path / "sw").rglob("metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.5)  # until the cells train
    children = _children(process.pid)
    assert children
    stop(process, signal.SIGTERM, within=15)
    time.sleep(3)
    assert not [c for c in children if Path(f"/proc/{c}").exists() and "zombie" not in
                Path(f"/proc/{c}/status").read_text().lower()], "worker processes left running"


def test_a_signal_in_a_deferred_block_stops_the_command_after_the_block():
    from sgan.errors import Interrupted, signals_deferred

    finished = []
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode: inside the block
            time.sleep(0.01)
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler before it is back
