"""Label budgets x unlabeled sources x seeds, each cell one `train` run with every method.

Cells run in worker processes, one GPU each where there are GPUs. A rerun skips a finished cell
(its metrics.json exists) and resumes a stopped one from its checkpoint; a cell saved with another
config than the sweep's now is refused (or, with redo_changed, trained again). Then one table per
evaluation set (Markdown and CSV, mean +- std over seeds) and a plot of accuracy against label budget.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import re
import statistics
import sys
from dataclasses import dataclass, fields
from typing import Any

from .files import atomic_write_text, csv_text
from .config import Config, check_keys, check_types, check_values, option, resolve
from .errors import Interrupted, SganError, on_signals
from .registry import REGISTRY
from .run import Metrics, RunFolder, SweepFolder

POOL = "pool"  # the unlabeled rest of the labeled pool: inductive
STOP_SECONDS = 20  # how long a stopped cell may take to finish its step before it is killed


@dataclass
class Sweep:
    base: dict[str, Any]  # config values shared by every cell (preset, iterations, methods, ...)
    budgets: list[int] = option([100, 1000, 4000], "label budgets", within="[1, inf)")
    seeds: list[int] = option([0, 1, 2], "seeds", within="[0, inf)")
    sources: list[str] = option([POOL], "unlabeled sources: pool (the config's own: the rest of the pool, or what "
                                "the config or its preset names, as Pets-25k's), an --eval name or a file")
    workers: int = option(1, "cells trained at once, in worker processes", within="[1, 64]")
    out: str = option("sweeps/latest", "sweep folder")
    # e.g. {"holdout": {"pseudo_label_weight": 3}}
    per_source: dict[str, dict[str, Any]] = option({}, "config values for the cells of one unlabeled source only "
                                                   "([sweep.per_source.SOURCE] tables of a config file)")
    # e.g. {"100": {"iterations": 4000}} (a Python caller may key by int); where both set a key, per_source wins
    per_budget: dict[str, dict[str, Any]] = option({}, "config values for the cells of one label budget only "
                                                   "([sweep.per_budget.N] tables of a config file)")
    # e.g. {"n1000_holdout": {"iterations": 8000}}: one budget with one source; it wins over both tables above
    per_cell: dict[str, dict[str, Any]] = option({}, "config values for the cells of one label budget and unlabeled "
                                                 "source, named as their folders less the seed "
                                                 "([sweep.per_cell.n1000_holdout] tables of a config file)")
    redo_changed: bool = option(False, "train again, from scratch, the cells whose saved config differs from what "
                                "the sweep would run now (without it they are refused)")
    executor: str = option("local", "local: worker processes on this machine; ray: one Ray task per cell (pip "
                           "install 'sgan[ray]'), on the cluster at --address", choices=("local", "ray"))
    address: str | None = option(None, "ray: the cluster to join, auto or HOST:PORT (default: start a local one for "
                                 "the sweep)")
    cpus_per_cell: int | None = option(None, "CPUs each cell asks for and its torch threads (default: the machine's "
                                       "cores / workers; ray: 1)", within="[1, 1024]")
    gpus_per_cell: float | None = option(None, "ray: GPUs each cell asks for (default: 1 where the cluster has GPUs "
                                         "and the cells may use one, else 0); the local executor gives each "
                                         "running cell one visible GPU", within="[0, 64]")

    @classmethod
    def from_config(cls, values: dict[str, Any], *, where: str, flags: dict[str, Any] | None = None,
                    overrides: dict[str, Any] | None = None) -> "Sweep":
        """A sweep from a config file's keys, its [sweep] table under values["sweep"] (the
        per_budget, per_source and per_cell tables come from there only), then `flags` ([sweep] keys) and
        `overrides` (config keys) from a command line; checked as `check` does."""
        values = dict(values)
        table = values.pop("sweep", {})
        unknown = set(table) - set(SWEEP_FIELDS)
        if unknown:
            raise SganError(f"{where}: unknown [sweep] key {sorted(unknown)[0]!r}; expected {', '.join(SWEEP_FIELDS)}")
        check_types(table, f"{where} [sweep]", SWEEP_FIELDS)
        sweep = cls(base={**values, **(overrides or {})}, **{**table, **(flags or {})})
        sweep.check(where)
        return sweep

    def check(self, where: str = "sweep") -> None:
        """Every value and every cell's config as it will run (its source set), before any cell
        starts: what the CLI and a Python caller of run_sweep are refused alike."""
        check_values(self, "sweep")
        if self.executor == "local" and (self.address is not None or self.gpus_per_cell is not None):
            raise SganError(f"{where}: {'address' if self.address is not None else 'gpus_per_cell'} is for "
                            "executor ray (the local executor gives each running cell one visible GPU)")
        check_keys(self.base, where)
        check_types(self.base, where)
        resolve(self.base)
        for budget in self.per_budget:
            if not str(budget).isdigit():
                raise SganError(f"{where}: [sweep.per_budget.{budget}] must name a label budget, e.g. "
                                "[sweep.per_budget.100]")
        groups = [cell_group(n, source) for source in self.sources for n in self.budgets]
        for group in self.per_cell:
            if group not in groups:
                raise SganError(f"{where}: [sweep.per_cell.{group}] names no cells of this sweep; its cells are "
                                f"{', '.join(groups)}")
        labels: dict[str, str] = {}
        for source in self.sources:
            if (other := labels.setdefault(cell_label(source), source)) != source:
                raise SganError(f"{where}: unlabeled sources {other!r} and {source!r} would share the cell folders "
                                f"'*_{cell_label(source)}_*'; rename one")
        for cell in self.cells():
            resolve(cell)

    def cells(self) -> list[dict[str, Any]]:
        """One config per cell; methods that ignore unlabeled images run with the pool source only."""
        methods = self.base.get("methods") or list(REGISTRY)
        folder = SweepFolder(self.out)
        budget_values = {str(k): v for k, v in self.per_budget.items()}
        cells = []
        for source in self.sources:
            cell_methods = methods if source == POOL else [m for m in methods if REGISTRY[m].uses_unlabeled]
            if not cell_methods:
                continue
            for n in self.budgets:
                group = cell_group(n, source)
                # the pool source leaves the config's own unlabeled source (a preset's, or none: the pool's rest)
                named = {} if source == POOL else {"unlabeled": source}
                for seed in self.seeds:
                    cells.append({**self.base, **budget_values.get(str(n), {}), **self.per_source.get(source, {}),
                                  **self.per_cell.get(group, {}), "methods": cell_methods, "n_labeled": n, "seed": seed,
                                  **named, "progress": False, "out": str(folder.cell(f"{group}_seed{seed}"))})
        return cells


# what a run fills in or a machine chooses, not what the sweep asked for: never a change of the cell
UNCOMPARED = ("out", "progress", "threads", "device", "loader_workers")


def changed_key(cell: dict[str, Any], folder: RunFolder) -> tuple[str, Any, Any] | None:
    """The first config key (in Config's order) whose value in the cell folder's config.json
    differs from what the sweep would run there now, with the saved value and the new; None if
    none does. Keys the run fits to its data (model "auto", an unset image size) are compared
    only where the sweep sets them."""
    saved, wanted = folder.read_config().to_dict(), resolve(cell).to_dict()
    for key, new in wanted.items():
        if key in UNCOMPARED or new is None or (key == "model" and new == "auto"):
            continue
        if json.dumps(saved.get(key), sort_keys=True) != json.dumps(new, sort_keys=True):
            return key, saved.get(key), new
    return None


def cell_label(source: str) -> str:
    """An unlabeled source as part of a cell folder's name: the whole path, its separators and
    other characters a name cannot hold as "-", so that a/train.csv and b/train.csv differ."""
    return re.sub(r"[^A-Za-z0-9._+]+", "-", source).strip("-") or "-"


def cell_group(n: int, source: str) -> str:
    """The cells of one budget and source, e.g. n1000_holdout: their folders' names less the seed."""
    return f"n{n}_{cell_label(source)}"


SWEEP_FIELDS = {f.name: f for f in fields(Sweep) if f.name not in ("base", "out")}  # the keys of a [sweep] table


def train_cell(values: dict[str, Any], threads: int) -> None:
    """One cell, in whichever process an executor gives it: a stopped one (a checkpoint, no
    metrics.json, the config the sweep runs now) resumes as `train --resume` would, any other
    starts over."""
    import torch

    from .trainer import train

    torch.set_num_threads(threads)
    folder = RunFolder(values["out"])
    if folder.checkpoint.is_file() and not folder.is_complete() and changed_key(values, folder) is None:
        train(resume=folder.path)
    else:
        train(overwrite=True, **values)


def _run_cell(values: dict[str, Any], threads: int, gpu: str | None, errors: Any) -> None:
    """The local executor's cell process: its one-line error goes to the pipe `errors`, a signal
    ends it quietly."""
    if gpu is not None:  # before CUDA starts in this process: the cell sees its GPU only, as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        train_cell(values, threads)
    except SganError as e:
        errors.send(f"{values['out']}: {e}")
        sys.exit(1)
    except Interrupted as e:  # Ctrl-C reaches the whole process group; the parent says it
        sys.exit(128 + e.signum)


def visible_gpus() -> list[str]:
    """The CUDA devices cells may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    count = torch.cuda.device_count()
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(count)]


def wants_gpu(cell: dict[str, Any]) -> bool:
    return cell.get("device", Config.device) in ("auto", "cuda")


def run_cells(cells: list[dict[str, Any]], *, workers: int, progress: bool, cpus_per_cell: int | None = None) -> None:
    """Each cell in a spawned process (no forked torch state), `workers` at a time; where there
    are GPUs and the cells may use one, one cell per GPU at a time, each seeing only its own
    (CUDA_VISIBLE_DEVICES). A failed cell or a signal to this process stops the running cells
    within STOP_SECONDS; each checkpoints, and the next run resumes it."""
    from tqdm import tqdm

    ctx = multiprocessing.get_context("spawn")
    gpus = visible_gpus() if any(wants_gpu(c) for c in cells) else []
    workers = min(workers, len(gpus)) if gpus else workers
    threads = cpus_per_cell or max(1, (os.cpu_count() or 1) // workers)
    free = list(gpus)  # the GPUs no running cell holds
    waiting, running, errors, held = list(cells), [], {}, {}  # errors: each process's end of its pipe
    bar = tqdm(total=len(cells), desc=f"sweep ({len(cells)} cells to run)", disable=not progress)
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                cell = waiting.pop(0)
                gpu = free.pop(0) if gpus and wants_gpu(cell) else None
                errors_out, errors_in = ctx.Pipe(duplex=False)  # a pipe, not a queue: no semaphore to leak on kill
                running.append(ctx.Process(target=_run_cell, args=(cell, threads, gpu, errors_in)))
                errors[running[-1]], held[running[-1]] = errors_out, gpu
                running[-1].start()
            multiprocessing.connection.wait([p.sentinel for p in running])
            for p in [p for p in running if p.exitcode is not None]:
                running.remove(p)
                if held[p] is not None:
                    free.append(held[p])
                bar.update()
                if p.exitcode:
                    error = errors[p].recv() if errors[p].poll() else f"a cell ended with exit code {p.exitcode}"
                    raise SganError(error)
    finally:  # SIGTERM: a cell in training finishes its step and exits cleanly; one that lingers is killed
        for p in running:
            p.terminate()
        for p in running:
            p.join(timeout=STOP_SECONDS)
            p.kill()
            p.join()
        bar.close()


def _ray_cell(values: dict[str, Any], threads: int) -> str | None:
    """A cell as a Ray task: None when it finished, else its one-line error."""
    try:
        train_cell(values, threads)
    except SganError as e:
        return f"{values['out']}: {e}"
    return None


def run_cells_on_ray(cells: list[dict[str, Any]], *, address: str | None, cpus_per_cell: int | None,
                     gpus_per_cell: float | None, progress: bool) -> None:
    """Each cell one Ray task asking for its CPUs (its torch threads) and GPUs; Ray places them
    on the cluster and retries a task whose worker died, and the retried cell resumes from its
    checkpoint. Every node must see the sweep folder (a shared filesystem). A failed cell or a
    signal to this process cancels the running cells (each keeps its last checkpoint) and shuts
    down a local cluster this sweep started."""
    try:
        import ray
    except ImportError:
        raise SganError("--executor ray needs Ray: pip install 'sgan[ray]'") from None
    from tqdm import tqdm

    ray.init(address=address, include_dashboard=False, log_to_driver=True)
    cpus = cpus_per_cell or 1
    if gpus_per_cell is None:
        gpus_per_cell = 1 if any(wants_gpu(c) for c in cells) and ray.cluster_resources().get("GPU", 0) else 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus_per_cell, max_retries=3)(_ray_cell)
    pending = [task.remote(cell, cpus) for cell in cells]
    bar = tqdm(total=len(cells), desc=f"sweep on Ray ({len(cells)} cells to run)", disable=not progress)
    caught: list[int] = []  # a signal is only noted inside Ray's calls (an exception raised there breaks them)
    try:
        with on_signals(lambda signum, frame: caught.append(signum)):  # in place of Ray's, which abort the driver
            while pending and not caught:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    bar.update()
                    if error := ray.get(ref):
                        raise SganError(error)
        if caught:
            raise Interrupted(caught[0], "with the cells checkpointed; rerun the sweep to continue them")
    except ray.exceptions.RayError as e:
        raise SganError(f"a cell failed on Ray: {str(e).strip().splitlines()[-1]}") from None
    finally:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the cell: its last checkpoint is what the next run resumes
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=STOP_SECONDS)
        ray.shutdown()  # a cluster ray.init started here stops with it; a joined one keeps running
        bar.close()


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


def summarize(results: list[Metrics]) -> list[dict[str, Any]]:
    """Rows of (eval set, budget, source, method) with per-seed values, mean and std."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for r in results:
        p = r.protocol
        for method, m in r.methods.items():
            uses_unlabeled = REGISTRY[method].uses_unlabeled
            source = p.unlabeled if uses_unlabeled else "-"
            pseudo = p.pseudo_label_weight if uses_unlabeled else 0.0
            for key, value in m.accuracy.items():
                groups.setdefault((key, p.n_labeled, source, p.transductive and uses_unlabeled,
                                   method, p.iterations, pseudo), []).append((p.seed, value))
    rows = []
    for (eval_set, n, source, transductive, method, iterations, pseudo), values in sorted(groups.items()):
        accs = [v for _, v in values]
        rows.append({"eval_set": eval_set, "n_labeled": n, "unlabeled": source, "transductive": transductive,
                     "pseudo_label_weight": pseudo,
                     "method": method, "iterations": iterations, "seeds": [s for s, _ in values],
                     "values": accs, "mean": statistics.fmean(accs),
                     "std": statistics.stdev(accs) if len(accs) > 1 else 0.0})
    return rows


def source_text(row: dict[str, Any]) -> str:
    """The unlabeled column: the source, whether it was an evaluation set, and any pseudo-label term."""
    return (row["unlabeled"] + (" (transductive)" if row["transductive"] else "")
            + (f", pseudo-labels x{row['pseudo_label_weight']:g}" if row.get("pseudo_label_weight") else ""))


def fmt(row: dict[str, Any]) -> str:
    """Mean +- std in percent; a single seed has no spread to show."""
    if len(row["values"]) < 2:
        return f"{100 * row['mean']:.2f} (1 seed)"
    return f"{100 * row['mean']:.2f} +- {100 * row['std']:.2f}"


def write_report(results: list[Metrics], out: SweepFolder) -> None:
    rows = summarize(results)
    out.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.summary, json.dumps(rows, indent=2))
    for eval_set in sorted({r["eval_set"] for r in rows}):
        sel = [r for r in rows if r["eval_set"] == eval_set]
        lines = [f"| n labeled | method | unlabeled | {eval_set} acc % (mean +- std) | seeds | iterations |",
                 "|---:|---|---|---:|---|---:|"]
        for r in sel:
            lines.append(f"| {r['n_labeled']} | {r['method']} | {source_text(r)} | {fmt(r)} | "
                         f"{','.join(map(str, r['seeds']))} | {r['iterations']} |")
        csv_rows = [[r["n_labeled"], r["method"], r["unlabeled"], r["transductive"], f"{r['mean']:.4f}",
                     f"{r['std']:.4f}", " ".join(map(str, r["seeds"])), " ".join(f"{v:.4f}" for v in r["values"])]
                    for r in sel]
        atomic_write_text(out.table(eval_set), "\n".join(lines) + "\n")
        atomic_write_text(out.table(eval_set, ".csv"), csv_text(
            ["n_labeled", "method", "unlabeled", "transductive", "mean", "std", "seeds", "values"], csv_rows))
    atomic_write_text(out.verdict, verdict(rows))
    from .report import plot_budget_curves, write_html_report  # matplotlib and torch, once the cells are done

    plot_budget_curves(rows, out.budget_plot)
    write_html_report(out.path)


def verdict(rows: list[dict[str, Any]]) -> str:
    """For each budget and unlabeled source: the SGAN variant and the method without a generator
    that are best on validation (mean over seeds; the non-GAN methods include those that learn
    from the same unlabeled images through pseudo-labels alone), side by side on every
    evaluation set; and the generator's share: the SGAN variant minus the best of the non-GAN
    methods on that source's unlabeled images. Differences are per seed (the seeds share their
    split), mean +- std. Chosen on validation, so that a holdout is reported, never chosen on."""
    def best_on_val(n: int, sources: tuple[str, ...], has_generator: bool) -> dict[str, Any] | None:
        val = [r for r in rows if r["eval_set"] == "val" and r["n_labeled"] == n and r["unlabeled"] in sources
               and REGISTRY[r["method"]].has_generator == has_generator]
        return max(val, key=lambda r: r["mean"]) if val else None

    lines = ["| eval set | n labeled | unlabeled | best SGAN variant | best non-GAN method | difference (points) "
             "| best non-GAN method on these unlabeled images | generator's share (points) |",
             "|---|---:|---|---|---|---:|---|---:|"]
    for eval_set in sorted({r["eval_set"] for r in rows}):
        for n in sorted({r["n_labeled"] for r in rows}):
            cell = {(r["method"], r["unlabeled"]): r for r in rows if r["eval_set"] == eval_set and r["n_labeled"] == n}
            for source in sorted({source for _, source in cell} - {"-"}):
                chosen = [best_on_val(n, (source,), True), best_on_val(n, ("-", source), False),
                          best_on_val(n, (source,), False)]
                g, p, u = (cell.get((c["method"], c["unlabeled"])) if c else None for c in chosen)
                if g is None or p is None:
                    continue
                share = f"{u['method']} {fmt(u)} | {paired(g, u)}" if u is not None else "- | -"
                lines.append(f"| {eval_set} | {n} | {source_text(g)} | {g['method']} {fmt(g)} | {p['method']} {fmt(p)} | "
                             f"{paired(g, p)} | {share} |")
    seeds = sorted({s for r in rows for s in r["seeds"]})
    return ("\n".join(lines) + f"\n\nSeeds: {', '.join(map(str, seeds))}; +- is the sample std over seeds; a "
            "difference is the mean +- std of the per-seed differences (each seed's methods share its split). "
            "Each method chosen by its mean validation accuracy at that budget and source, then reported on "
            "every set.\n")


def paired(a: dict[str, Any], b: dict[str, Any]) -> str:
    """a minus b in points, seed by seed over the seeds both have: mean +- std (std with 2+ seeds)."""
    theirs = dict(zip(b["seeds"], b["values"]))
    diffs = [100 * (v - theirs[s]) for s, v in zip(a["seeds"], a["values"]) if s in theirs]
    if not diffs:
        return "-"
    return f"{statistics.fmean(diffs):+.2f}" + (f" +- {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "")
