"""Label budgets x unlabeled sources x seeds, each cell one `train` run with every method.

Three rooms: cells.py plans the cells and trains one; executors.py runs them (worker processes on
this machine, one GPU each where there are GPUs, or Ray tasks on a cluster); summary.py turns
their metrics into summary.json's rows and every table. A rerun skips a finished cell (its
metrics.json exists) and resumes a stopped one from its checkpoint; a cell saved with another
config than the sweep's now is refused (or, with redo_changed, trained again). Then one table per
evaluation set (Markdown and CSV, mean +- std over seeds), the verdict and a plot of accuracy
against label budget.
"""

from __future__ import annotations

from ..config import Config
from ..errors import SganError
from ..run import Metrics, RunFolder, SweepFolder
from .cells import POOL, Sweep, changed_key
from .executors import run_cells, run_cells_on_ray
from .summary import summarize, write_report


def run_sweep(sweep: Sweep) -> list[Metrics]:
    """Every cell not yet complete, then the tables, the verdict and the plot from all cells."""
    sweep.check()
    with SweepFolder(sweep.out).in_use():
        todo = []
        for cell in sweep.cells():
            folder = RunFolder(cell["out"])
            change = changed_key(cell, folder) if folder.config.is_file() else None
            if change and not sweep.redo_changed:
                key, old, new = change
                raise SganError(f"{folder.path}: made with {key} = {old!r}, the sweep now runs {new!r}; train the "
                                "changed cells again with --redo-changed (or choose another --out)")
            if change or not folder.is_complete():
                todo.append(cell)
        todo.sort(key=lambda c: -c.get("iterations", Config.iterations))  # longest first: the workers finish together
        progress = sweep.base.get("progress", True)
        if todo and sweep.executor == "ray":
            run_cells_on_ray(todo, address=sweep.address, cpus_per_cell=sweep.cpus_per_cell,
                             gpus_per_cell=sweep.gpus_per_cell, progress=progress)
        elif todo:
            run_cells(todo, workers=sweep.workers, progress=progress, cpus_per_cell=sweep.cpus_per_cell)
        results = [RunFolder(c["out"]).read_metrics() for c in sweep.cells()]
        write_report(results, SweepFolder(sweep.out))
    return results


__all__ = ["POOL", "Sweep", "run_sweep", "summarize", "write_report"]
