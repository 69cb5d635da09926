"""`sgan sweep` as a command: a sweep folder in use by another process, a stopped cell that
resumes, a cell made with another config. (Apart from tests/test_sweep.py so that the two files,
each long, run on the suite's two workers at once.)"""

import json

from conftest import run_sgan, sweep_args, sweep_command


def test_a_sweep_folder_in_use_is_refused_in_one_line(digits_csv, tmp_path):
    import subprocess

    from sgan.run import SweepFolder

    config = tmp_path / "sweep.toml"
    config.write_text(f'data = "{digits_csv}"\niterations = 2\nbatch_size = 8\nprogress = false\n\n'
                      '[sweep]\nbudgets = [20]\nseeds = [0]\n')
    with SweepFolder(tmp_path / "sweep").in_use():  # this process holds it, as a running sweep would
        r = subprocess.run(sweep_command(config, tmp_path / "sweep"), capture_output=True, text=True)
    assert r.returncode == 2 and "in use by another sgan process" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sweep" / "runs").exists()
    r = run_sgan(*sweep_args(config, tmp_path / "sweep"))  # released: it runs
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sweep" / "summary.json").is_file()


def cell_results(out) -> dict:
    metrics = json.loads((out / "runs" / "n20_pool_seed0" / "metrics.json").read_text())["methods"]
    return {m: {k: v for k, v in r.items() if k != "train_seconds"} for m, r in metrics.items()}


def test_a_stopped_cell_resumes_and_equals_an_uninterrupted_one(digits_csv, tmp_path):
    import signal
    import subprocess
    import time

    config = tmp_path / "sweep.toml"
    config.write_text(f'data = "{digits_csv}"\nmethods = ["supervised", "sgan"]\niterations = 60\nbatch_size = 8\n'
                      'eval_every = 20\nlog_every = 10\ncheckpoint_every = 5\nthreads = 1\nprogress = false\n\n'
                      '[sweep]\nbudgets = [20]\nseeds = [0]\n')
    assert run_sgan(*sweep_args(config, tmp_path / "reference")).returncode == 0
    out = tmp_path / "sweep"
    p = subprocess.Popen(sweep_command(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "runs" / "n20_pool_seed0" / "metrics.jsonl"
    end = time.time() + 120  # until the sgan method is under way
    while time.time() < end and p.poll() is None and '"sgan"' not in (log.read_text() if log.exists() else ""):
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode != 0 and not (out / "runs" / "n20_pool_seed0" / "metrics.json").exists()
    r = subprocess.run(sweep_command(config, out), capture_output=True, text=True)  # the cell's own stderr
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "sgan from step" in r.stderr, r.stderr
    assert cell_results(out) == cell_results(tmp_path / "reference")


def test_a_cell_made_with_another_config_is_refused_unless_redone(digits_csv, tmp_path):
    config = tmp_path / "sweep.toml"
    text = (f'data = "{digits_csv}"\nmethods = ["supervised"]\niterations = 2\nbatch_size = 8\nprogress = false\n\n'
            '[sweep]\nbudgets = [20]\nseeds = [0]\n')
    config.write_text(text)
    out = tmp_path / "sweep"
    assert run_sgan(*sweep_args(config, out)).returncode == 0
    config.write_text(text.replace("iterations = 2", "iterations = 3"))
    r = run_sgan(*sweep_args(config, out))
    assert r.returncode == 2 and "made with iterations = 2, the sweep now runs 3" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = run_sgan(*sweep_args(config, out), "--redo-changed")
    assert r.returncode == 0, r.stderr
    assert cell_results(out)["supervised"]["iterations"] == 3
