"""What a sweep executor costs per cell on this machine: the same sweep of tiny cells (one
training step each, scikit-learn's digits) by the local executor and by Ray (a local cluster the
sweep starts), one after the other. Per executor: seconds from the `sgan sweep` command to the
first cell's first step (its run folder's config.json, written just before training starts:
interpreter, imports, for Ray the cluster start and the task submission), the seconds between
that and the last cell's end, and the whole command's wall time. Two cells at a time either way
(--workers 2 / a 2-CPU cluster, 1 CPU per cell). Writes <out>/executor_cost.json and .md.

    python benchmarks/executor_cost.py --cells 8 --out benchmarks/results/executor-cost
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py, beside this script

CONFIG = ('data = "sklearn-digits"\nmethods = ["supervised"]\niterations = 1\nbatch_size = 8\neval_every = 1\n'
          'progress = false\n\n[sweep]\nbudgets = [20]\nseeds = {seeds}\nworkers = 2\ncpus_per_cell = 1\n')


def measure(executor: str, cells: int, work: Path) -> dict[str, float]:
    config, out = work / f"{executor}.toml", work / executor
    config.write_text(CONFIG.format(seeds=list(range(cells))))
    start = time.time()
    subprocess.run([sys.executable, "-m", "sgan", "sweep", "--config", str(config), "--out", str(out),
                    "--executor", executor], check=True, capture_output=True, text=True)
    wall = time.time() - start
    runs = sorted((out / "runs").iterdir())
    first = min((r / "config.json").stat().st_mtime for r in runs)
    last = max((r / "metrics.json").stat().st_mtime for r in runs)
    return {"cells": cells, "to_first_step_s": round(first - start, 2),
            "first_step_to_last_end_s": round(last - first, 2), "per_cell_s": round((last - first) / cells, 2),
            "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--out", default="benchmarks/results/executor-cost")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sgan-executor-cost-"))
    try:
        results = {e: measure(e, args.cells, work) for e in args.executors}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "executor_cost.json").write_text(json.dumps({"machine": machine.describe(), "results": results},
                                                       indent=2) + "\n")
    rows = ["| executor | cells | command to first step s | first step to last end s | per cell s | wall s |",
            "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {e} | {r['cells']} | {r['to_first_step_s']} | {r['first_step_to_last_end_s']} | {r['per_cell_s']} "
             f"| {r['wall_s']} |" for e, r in results.items()]
    (out / "executor_cost.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
