"""The sweep's cells: label budgets x unlabeled sources x seeds, each one `train` run with every
method into its own folder; which of them are done, which changed, and how one is trained."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from ..config import check_keys, check_types, check_values, option, resolve
from ..errors import SganError
from ..registry import REGISTRY
from ..run import RunFolder, SweepFolder

POOL = "pool"  # the unlabeled rest of the labeled pool: inductive


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

    from ..trainer import train

    torch.set_num_threads(threads)
    folder = RunFolder(values["out"])
    if folder.checkpoint.is_file() and not folder.is_complete() and changed_key(values, folder) is None:
        train(resume=folder.path)
    else:
        train(overwrite=True, **values)


