"""Ctrl-C and SIGTERM stop a command at any point with one line: each test stops the command at a
known moment (a pause point, sgan.errors.pause_point) and checks what happened."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgan.errors import PAUSE_AT


def start(*args: str, pause_at: str, paused: Path) -> subprocess.Popen:
    """`sgan ARGS` in a process group of its own."""
    return subprocess.Popen([sys.executable, "-m", "sgan", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                            PAUSE_AT: f"{pause_at}:{paused}"}, start_new_session=True)


def wait_until(condition, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll `condition` (while `process` runs): a minute at most, so that a hang fails; never timed."""
    deadline = time.monotonic() + 60
    while not condition():
        assert process is None or process.poll() is None, f"{what}: the process ended first: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"{what}: not within a minute"
        time.sleep(0.05)


def stop(process: subprocess.Popen, signum: int, sent: bool = False) -> str:
    """Send the signal (unless `sent`); the process must end by it, with one stderr line."""
    if not sent:
        process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()  # a process that did not stop must not outlive its test
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    return err


# started: torch imported, nothing read; prepared: the data read and split; training: after a step
@pytest.mark.parametrize("point", ["started", "prepared", "training"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stops_at_any_point(digits_csv, tmp_path, signum, point):
    out, paused = tmp_path / "run", tmp_path / "paused"
    process = start("train", "--data", str(digits_csv), "--iterations", "100000", "--out", str(out),
                    "--no-progress", pause_at=point, paused=paused)
    wait_until(paused.exists, f"pause point {point}", process)
    err = stop(process, signum)
    if point == "training":  # stopped in the loop: the step finished, a checkpoint was written, the run can go on
        assert f"checkpoint written, continue with: sgan train --resume {out}" in err
        assert (out / "checkpoint.safetensors").is_file() and not (out / "metrics.json").exists()
    else:
        assert "checkpoint" not in err and not (out / "checkpoint.safetensors").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def _descendants(pid: int) -> list[int]:
    """Children, theirs, and so on (a sweep's cells are its fork server's children)."""
    try:
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    except FileNotFoundError:  # it ended meanwhile
        return []
    return children + [d for c in children for d in _descendants(c)]


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text().lower()
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("group", [False, True], ids=["the sweep", "its process group"])
def test_a_sweep_stops_with_its_worker_processes(digits_csv, tmp_path, group):
    """SIGTERM to the sweep, or to its whole process group (timeout, scancel, kill -- -PGID): the
    sweep ends only after its cells, each with its checkpoint."""
    paused = tmp_path / "paused"
    process = start("sweep", "--data", str(digits_csv), "--budgets", "20", "--seeds", "0", "1", "--workers", "2",
                    "--iterations", "100000", "--no-progress", "--out", str(tmp_path / "sw"),
                    pause_at="training", paused=paused)
    wait_until(paused.exists, "a cell training", process)  # a cell's process wrote it
    descendants = _descendants(process.pid)
    cells = {int(lock.read_text()) for lock in (tmp_path / "sw" / "runs").glob("*/.lock") if lock.read_text()}
    assert cells and cells <= set(descendants)  # each cell's process holds its folder
    if group:
        os.killpg(process.pid, signal.SIGTERM)  # the cells and any helper process get it too
    stop(process, signal.SIGTERM, sent=group)
    assert not any(map(_running, cells))  # none outlived the sweep
    wait_until(lambda: not any(map(_running, descendants)), "the worker processes gone")
    checkpoints = list((tmp_path / "sw" / "runs").rglob("checkpoint.safetensors"))
    assert checkpoints and not list((tmp_path / "sw").rglob("metrics.json"))  # each stopped cell kept its step


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
