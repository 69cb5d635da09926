"""`sgan sweep --executor ray` against a real local Ray cluster (2 CPUs), started by the sweep or
by the test: the same summary as the local executor, a killed worker's cell retried and resumed,
a stopped driver leaving nothing behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_sgan, sweep_args, sweep_command

pytest.importorskip("ray")

SETTINGS = ('methods = ["sgan"]\niterations = 30\nbatch_size = 8\neval_every = 20\nlog_every = 10\n'
            'checkpoint_every = 5\nprogress = false\n\n[sweep]\nbudgets = [20]\nseeds = [0]\ncpus_per_cell = 1\n')


@pytest.fixture(scope="module")
def config(tmp_path_factory, digits_csv) -> Path:
    path = tmp_path_factory.mktemp("ray") / "sweep.toml"
    path.write_text(f'data = "{digits_csv}"\n' + SETTINGS)
    return path


@pytest.fixture(scope="module")
def local(config) -> Path:
    """The same sweep by the local executor, one thread per cell as on Ray."""
    out = config.parent / "local"
    r = run_sgan(*sweep_args(config, out))
    assert r.returncode == 0, r.stderr
    return out


def results(out: Path) -> str:
    return (out / "summary.json").read_text()


def ray_processes() -> list[str]:
    """Ray's own daemons on this machine (its GCS server and raylet)."""
    done = subprocess.run(["pgrep", "-af", "gcs_server|raylet"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


def wait_for(path: Path, p: subprocess.Popen, timeout: float = 180) -> bool:
    end = time.time() + timeout
    while time.time() < end and p.poll() is None:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def test_a_sweep_on_ray_gives_the_local_executors_summary(config, local, tmp_path):
    r = subprocess.run(sweep_command(config, tmp_path / "ray", "--executor", "ray"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert results(tmp_path / "ray") == results(local)  # bit for bit
    assert not ray_processes()  # the cluster the sweep started is gone


def test_a_killed_worker_is_retried_and_its_cell_resumes(config, local, tmp_path):
    out = tmp_path / "ray"
    p = subprocess.Popen(sweep_command(config, out, "--executor", "ray"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    cell = out / "runs" / "n20_pool_seed0"
    assert wait_for(cell / "checkpoint.safetensors", p)
    worker = int((cell / ".lock").read_text())  # the Ray worker training the cell holds its folder
    assert worker != p.pid
    os.kill(worker, signal.SIGKILL)
    out_text, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "sgan: resuming" in out_text + err, err  # the retried task continued the cell (Ray relays its log)
    assert results(out) == results(local)


def test_sigterm_of_the_driver_stops_the_cells_and_a_rerun_completes(config, local, tmp_path):
    out = tmp_path / "ray"
    p = subprocess.Popen(sweep_command(config, out, "--executor", "ray"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert wait_for(out / "runs" / "n20_pool_seed0" / "checkpoint.safetensors", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    end = time.time() + 30
    while ray_processes() and time.time() < end:
        time.sleep(0.5)
    assert not ray_processes()
    assert not (out / "summary.json").exists()
    r = subprocess.run(sweep_command(config, out, "--executor", "ray"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert results(out) == results(local)


def test_without_ray_the_executor_is_refused_in_one_line(config, tmp_path):
    code = ("import sys, runpy; sys.modules['ray'] = None; sys.argv = ['sgan'] + sys.argv[1:]; "
            "runpy.run_module('sgan', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code, *sweep_args(config, tmp_path / "s", "--executor", "ray")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'sgan[ray]'" in r.stderr and "Traceback" not in r.stderr
