import json

from pathlib import Path

import numpy as np
import pytest

from conftest import benchmark, digits28, write_kaggle_csv
from fake_cells import fake_cell
from sgan import SganError
from sgan.config import resolve
from sgan.sweep import Sweep, run_sweep


def test_sweep_tables_and_resume(digits_csv, tmp_path):
    images, labels = digits28()
    holdout = write_kaggle_csv(tmp_path / "holdout.csv", images[::7, 0], labels[::7])
    base = {"data": str(digits_csv), "eval": {"holdout": str(holdout)}, "iterations": 3, "batch_size": 8,
            "eval_every": 3, "log_every": 3, "progress": False}
    sweep = Sweep(base=base, budgets=[20, 40], seeds=[0, 1], sources=["pool", "holdout"], workers=2,
                  out=str(tmp_path / "sweep"), per_source={"holdout": {"pseudo_label_weight": 2.0}},
                  per_budget={"40": {"iterations": 4}},
                  per_cell={"n40_holdout": {"iterations": 5, "pseudo_label_weight": 3.0}})
    run_sweep(sweep)
    out = tmp_path / "sweep"
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 2 * 2 * 2
    # methods that ignore unlabeled images are trained once per budget and seed, with the pool
    holdout_cell = json.loads((out / "runs" / "n20_holdout_seed0" / "metrics.json").read_text())
    assert list(holdout_cell["methods"]) == ["fixmatch", "sgan", "sgan+aug"]
    assert holdout_cell["protocol"]["transductive"] is True
    # settings for one source's cells only
    assert holdout_cell["protocol"]["pseudo_label_weight"] == 2.0
    pool_cell = json.loads((out / "runs" / "n20_pool_seed0" / "metrics.json").read_text())
    assert pool_cell["protocol"]["pseudo_label_weight"] == 1.0
    # and for one budget's cells only
    assert pool_cell["protocol"]["iterations"] == 3
    assert json.loads((out / "runs" / "n40_pool_seed1" / "metrics.json").read_text())["protocol"]["iterations"] == 4
    # and for one budget with one source: over both tables above
    one_cell = json.loads((out / "runs" / "n40_holdout_seed1" / "metrics.json").read_text())["protocol"]
    assert one_cell["iterations"] == 5 and one_cell["pseudo_label_weight"] == 3.0
    rows = json.loads((out / "summary.json").read_text())
    val = [r for r in rows if r["eval_set"] == "val"]
    assert len(val) == 2 * (5 + 3)  # budgets x (5 methods with the pool + the 3 that use unlabeled images, holdout)
    for r in val:
        assert r["seeds"] == [0, 1] and np.isclose(r["mean"], np.mean(r["values"]))
    md = (out / "table_holdout.md").read_text()
    assert "| 40 | sgan | holdout (transductive), pseudo-labels x3 |" in md and "| 40 | conventional | - |" in md
    assert "| 20 | sgan | holdout (transductive), pseudo-labels x2 |" in md
    assert "| 40 | fixmatch | pool, pseudo-labels x1 |" in md and md.count("| 4 |") == 5 and md.count("| 3 |") == 8
    assert md.count("| 5 |") == 3
    assert (out / "table_holdout.csv").read_text().startswith("n_labeled,method,unlabeled")
    assert (out / "accuracy_vs_budget.png").stat().st_size > 0
    report = (out / "report.html").read_text()  # the verdict, the plot and one table per evaluation set
    assert report.count("<img src=\"data:image/png;base64,") == 1 and "best SGAN variant" in report
    assert report.count("<table>") == 1 + len(list(out.glob("table_*.md"))) and "holdout (transductive)" in report

    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    (out / "runs" / "n40_pool_seed1" / "metrics.json").unlink()  # as if that cell had been killed
    run_sweep(sweep)
    for p, t in mtimes.items():
        if p.parent.name != "n40_pool_seed1":
            assert p.stat().st_mtime_ns == t, f"{p} was retrained"
    assert (out / "runs" / "n40_pool_seed1" / "metrics.json").is_file()


def test_kaggle_folder_roles_and_submission(digits_csv, test_csv, tmp_path):
    from sgan import train
    from sgan.config import resolve

    folder = tmp_path / "kannada"
    folder.mkdir()
    images, labels = digits28()
    (folder / "train.csv").write_bytes(digits_csv.read_bytes())
    (folder / "test.csv").write_bytes(test_csv.read_bytes())
    write_kaggle_csv(folder / "Dig-MNIST.csv", images[:100, 0], labels[:100])
    cfg = resolve(overrides={"data": str(folder)})
    assert cfg.data == str(folder / "train.csv")
    assert cfg.eval == {"holdout": str(folder / "Dig-MNIST.csv")}
    assert cfg.test_data == str(folder / "test.csv")
    for source in ("test", "holdout", None):
        out = tmp_path / f"run_{source}"
        m = train(data=str(folder), unlabeled=source, submit=True, n_labeled=20, iterations=2, batch_size=8,
                  progress=False, out=str(out))
        assert set(m.methods["sgan"].accuracy) >= {"val", "holdout"}
        assert m.protocol.transductive is (source == "holdout")
        assert set(m.methods) == {"supervised", "fixmatch", "sgan"}  # the default methods
        assert m.protocol.submission_method == max(m.methods, key=lambda k: m.methods[k].accuracy["val"])
        rows = (out / "submission.csv").read_text().splitlines()
        assert rows[0] == "id,label" and [int(r.split(",")[0]) for r in rows[1:]] == list(range(1000, 1050))
        expected_unlabeled = {"test": 50, "holdout": 100, None: 1797 - 20 - 359}[source]
        assert m.protocol.counts["unlabeled"] == expected_unlabeled


def test_verdict_compares_best_sgan_with_best_plain_method_chosen_on_validation():
    from sgan.report.tables import VERDICT_NUMBERS, markdown, verdict_note, verdict_table

    def verdict(rows):
        return markdown(verdict_table(rows), numbers=VERDICT_NUMBERS) + "\n" + verdict_note(rows)

    def row(method, source, values, eval_set="val"):
        return {"eval_set": eval_set, "n_labeled": 100, "unlabeled": source, "transductive": source == "holdout",
                "method": method, "mean": np.mean(values), "std": np.std(values, ddof=1), "seeds": [0, 1],
                "values": values}

    text = verdict([row("supervised", "-", [0.80, 0.80]), row("conventional", "-", [0.89, 0.91]),
                    row("fixmatch", "pool", [0.91, 0.93]), row("fixmatch", "holdout", [0.60, 0.60]),
                    row("sgan", "pool", [0.85, 0.85]), row("sgan+aug", "pool", [0.92, 0.94]),
                    row("sgan", "holdout", [0.70, 0.70]),
                    # on the holdout the other methods of each kind score higher: they are not the ones chosen
                    row("supervised", "-", [0.70, 0.70], "holdout"), row("conventional", "-", [0.60, 0.60], "holdout"),
                    row("fixmatch", "pool", [0.64, 0.66], "holdout"), row("fixmatch", "holdout", [0.9, 0.9], "holdout"),
                    row("sgan", "pool", [0.80, 0.80], "holdout"), row("sgan+aug", "pool", [0.75, 0.75], "holdout"),
                    row("sgan", "holdout", [0.72, 0.72], "holdout")])
    # the pool: fixmatch is the best non-GAN method on validation, and the generator's share is the SGAN minus it,
    # seed by seed: (0.92 - 0.91, 0.94 - 0.93) = +1.00 +- 0.00
    assert ("| val | 100 | pool | sgan+aug 93.00 +- 1.41 | fixmatch 92.00 +- 1.41 | +1.00 +- 0.00 | "
            "fixmatch 92.00 +- 1.41 | +1.00 +- 0.00 |") in text
    assert ("| holdout | 100 | pool | sgan+aug 75.00 +- 0.00 | fixmatch 65.00 +- 1.41 | +10.00 +- 1.41 | "
            "fixmatch 65.00 +- 1.41 | +10.00 +- 1.41 |") in text
    # transductive: conventional beats fixmatch on validation; the share compares with fixmatch on the same images
    assert ("| val | 100 | holdout (transductive) | sgan 70.00 +- 0.00 | conventional 90.00 +- 1.41 | -20.00 +- 1.41 | "
            "fixmatch 60.00 +- 0.00 | +10.00 +- 0.00 |") in text
    assert ("| holdout | 100 | holdout (transductive) | sgan 72.00 +- 0.00 | conventional 60.00 +- 0.00 | "
            "+12.00 +- 0.00 | fixmatch 90.00 +- 0.00 | -18.00 +- 0.00 |") in text
    assert text.count("\n| ") == 4  # two sources x two evaluation sets


def test_cell_folders_of_two_sources_with_one_file_name_differ(tmp_path):
    sweep = Sweep(base={"methods": ["sgan"]}, budgets=[20], seeds=[0], sources=["a/train.csv", "b/train.csv"],
                  out=str(tmp_path / "sw"))
    names = [Path(c["out"]).name for c in sweep.cells()]
    assert names == ["n20_a-train.csv_seed0", "n20_b-train.csv_seed0"]
    clash = Sweep(base={"methods": ["sgan"]}, sources=["a/train.csv", "a-train.csv"], out=str(tmp_path / "sw2"))
    with pytest.raises(SganError, match="would share the cell folders"):
        clash.check()


def test_the_pool_source_keeps_the_unlabeled_source_a_preset_names(tmp_path):
    """Pets-25k's preset names its unlabeled folder (beside the pool's rest): the sweep's pool
    cells keep it, where a named source replaces it."""
    sweep = Sweep(base={"preset": "pets-25k-64", "methods": ["supervised", "sgan"]}, budgets=[100], seeds=[0],
                  sources=["pool", "other/folder"], out=str(tmp_path / "sw"))
    pool_cell, other_cell = (resolve(c) for c in sweep.cells())
    assert Path(pool_cell.unlabeled).name == "pets64-extra" and pool_cell.unlabeled_plus_pool
    assert pool_cell.methods == ["supervised", "sgan"] and other_cell.methods == ["sgan"]
    assert other_cell.unlabeled == "other/folder"
    plain = Sweep(base={"methods": ["sgan"]}, budgets=[100], seeds=[0], out=str(tmp_path / "sw2"))
    assert resolve(plain.cells()[0]).unlabeled is None


@pytest.mark.parametrize("sweep, message", [
    (dict(budgets=[0]), "budgets must be positive, got 0"),
    (dict(per_budget={"few": {"iterations": 9}}), r"\[sweep.per_budget.few\] must name a label budget"),
    (dict(per_budget={"100": {"iterations": 0}}), "iterations must be positive, got 0"),
    (dict(per_cell={"n1000_holdout": {"iterations": 9}}),
     r"\[sweep.per_cell.n1000_holdout\] names no cells of this sweep; its cells are n100_pool, n1000_pool, n4000_pool"),
    (dict(per_cell={"n100_pool": {"iterations": 0}}), "iterations must be positive, got 0"),
    (dict(base={"nonsense": 1}), "unknown config key 'nonsense'"),
    (dict(sources=["pool"], per_source={"pool": {"unlabeled_plus_pool": True}}), "unlabeled_plus_pool needs"),
    (dict(executor="slurm"), "unknown executor 'slurm'; choose from local, ray"),
    (dict(cpus_per_cell=0), "cpus_per_cell must be"),
    (dict(address="auto"), "address is for executor ray"),
    (dict(executor="ray", gpus_per_cell=-1.0), "gpus_per_cell must be"),
])
def test_run_sweep_from_python_refuses_what_the_cli_refuses(tmp_path, sweep, message):
    values = {"base": {"methods": ["supervised"]}, "out": str(tmp_path / "sw"), **sweep}
    with pytest.raises(SganError, match=message):
        run_sweep(Sweep(**values))
    assert not (tmp_path / "sw").exists()  # refused before any cell started


def test_the_gpu_study_script_runs_every_method_at_a_tiny_size_on_the_cpu(tmp_path):
    """benchmarks/gpu_pets12k.sh, as a lent GPU would run it, but on the CPU at a tiny size: the
    study config's every method in cells that run at once, the sweep's summary written."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from sgan.registry import METHODS

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "pets" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "pets" / c / f"{i}.png")
    root = Path(__file__).resolve().parents[1]
    tiny = ["--device", "cpu", "--image-size", "32", "--iterations", "2", "--batch-size", "4", "--eval-every", "1",
            "--val-per-class", "2", "--test-per-class", "2", "--budgets", "4", "--loader-workers", "0",
            "--seeds", "0", "1", "--workers", "2"]
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu_pets12k.sh"), str(tmp_path / "pets"),
                           str(tmp_path / "out"), *tiny], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cuda False" in done.stdout and "minutes:" in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = summary if isinstance(summary, list) else summary["rows"]
    assert {r["method"] for r in rows} == set(METHODS)
    cells = sorted(p for p in (tmp_path / "out" / "runs").iterdir() if (p / "metrics.json").is_file())
    assert len(cells) == 2
    config = json.loads((cells[0] / "config.json").read_text())
    assert (config["model"], config["resnet_stem"], config["iterations"]) == ("resnet18", "imagenet", 2)


def test_the_local_executor_gives_each_running_cell_its_own_gpu(tmp_path, monkeypatch):
    from sgan.sweep import executors as sweep

    monkeypatch.setattr(sweep, "visible_gpus", lambda: ["3", "5"])  # two GPUs, stubbed
    monkeypatch.setattr(sweep, "_run_cell", fake_cell)  # its processes import that small module, not this one
    cells = [{"out": str(tmp_path / f"cell{i}")} for i in range(5)] + [{"out": str(tmp_path / "cpu"), "device": "cpu"}]
    sweep.run_cells(cells, workers=4, progress=False)
    ran = {c["out"]: json.loads((Path(c["out"]) / "ran.json").read_text()) for c in cells}
    assert ran[str(tmp_path / "cpu")]["gpu"] is None  # a CPU cell takes no GPU
    gpu_cells = [ran[c["out"]] for c in cells[:5]]
    assert {r["gpu"] for r in gpu_cells} == {"3", "5"}
    for a in gpu_cells:  # two cells that ran at the same time never shared a GPU
        overlapping = [b for b in gpu_cells if b is not a and b["start"] < a["end"] and a["start"] < b["end"]]
        assert all(b["gpu"] != a["gpu"] for b in overlapping)
    assert max(len([b for b in ran.values() if b["start"] < a["end"] and a["start"] < b["end"]])
               for a in ran.values()) <= 2  # one cell per GPU at a time: at most two at once


def test_the_executor_cost_benchmark_times_a_sweep_of_tiny_cells(tmp_path):
    bench = benchmark("executor_cost")
    bench.main(["--cells", "2", "--executors", "local", "--out", str(tmp_path / "out")])
    local = json.loads((tmp_path / "out" / "executor_cost.json").read_text())["results"]["local"]
    assert local["cells"] == 2 and 0 < local["to_first_step_s"] < local["wall_s"]
    assert local["per_cell_s"] * 2 == pytest.approx(local["first_step_to_last_end_s"], abs=0.02)
    assert "| local | 2 |" in (tmp_path / "out" / "executor_cost.md").read_text()


def test_each_cell_runs_in_the_environment_the_sweep_has_when_it_starts(digits_csv, tmp_path, monkeypatch):
    """A fork server copies the environment once, when it starts; a cell takes the sweep's as it
    is at the cell's start. Here a variable set after the server started makes the cell pause
    (sgan.errors.pause_point), where it is stopped."""
    import os
    import signal
    import threading
    import time

    from sgan.errors import PAUSE_AT
    from sgan.sweep.executors import cell_processes, run_cells

    cell_processes(cuda=False)  # this process's fork server runs, started without the variable
    paused = tmp_path / "paused"
    monkeypatch.setenv(PAUSE_AT, f"prepared:{paused}")

    def stop_the_cell() -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end and not (paused.exists() and paused.read_text()):
            time.sleep(0.05)
        if paused.exists():
            os.kill(int(paused.read_text()), signal.SIGTERM)

    threading.Thread(target=stop_the_cell, daemon=True).start()
    cells = Sweep(base={"data": str(digits_csv), "methods": ["supervised"], "iterations": 2, "batch_size": 8},
                  budgets=[20], seeds=[0], out=str(tmp_path / "sw")).cells()
    with pytest.raises(SganError, match="exit code -15"):  # stopped at the pause point by SIGTERM, not finished
        run_cells(cells, workers=1, progress=False)
    assert paused.is_file()


def test_cells_start_afresh_where_they_may_use_cuda_or_no_fork_server_starts(monkeypatch):
    import multiprocessing.forkserver

    from sgan.sweep.executors import cell_processes

    assert cell_processes(cuda=True).get_start_method() == "spawn"  # CUDA must not be touched before a fork

    def no_socket() -> None:
        raise OSError("AF_UNIX path too long")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", no_socket)
    assert cell_processes(cuda=False).get_start_method() == "spawn"
    monkeypatch.undo()
    assert cell_processes(cuda=False).get_start_method() == "forkserver"


def test_the_fork_server_ignores_the_signals_its_process_group_gets():
    """Ctrl-C, timeout or scancel signal the whole process group: the server must live on to
    report its cells' exits to the sweep, which stops them (tests/test_signals.py)."""
    import signal

    from sgan.sweep.executors import cell_processes

    handlers = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    cell_processes(cuda=False)
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == handlers  # this process's own
    children = [int(c) for t in Path("/proc/self/task").iterdir() for c in (t / "children").read_text().split()]
    servers = [pid for pid in children if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(servers) == 1
    status = dict(line.split(":\t") for line in Path(f"/proc/{servers[0]}/status").read_text().splitlines())
    ignored = int(status["SigIgn"], 16)
    assert all(ignored >> (sig - 1) & 1 for sig in (signal.SIGINT, signal.SIGTERM))
