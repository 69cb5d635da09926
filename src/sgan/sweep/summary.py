"""The sweep's summary: every cell's metrics as the rows of summary.json, then every file made
from those rows alone (the tables, the verdict, the plot, the report: report/)."""

from __future__ import annotations

import json
import statistics

from typing import Any

from ..files import atomic_write_text
from ..registry import REGISTRY
from ..run import Metrics, SweepFolder


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


def write_report(results: list[Metrics], out: SweepFolder) -> None:
    """summary.json's rows from the cells' metrics, then every table, the plot and the report
    from those rows."""
    # torch and matplotlib (the report, the plot): imported once the cells are done, not when a sweep is read
    from ..report import plot_budget_curves, write_html_report
    from ..report.tables import (EVAL_NUMBERS, VERDICT_NUMBERS, csv_table, eval_sets, eval_table, markdown,
                                 verdict_note, verdict_table)

    rows = summarize(results)
    out.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.summary, json.dumps(rows, indent=2))
    for eval_set in eval_sets(rows):
        atomic_write_text(out.table(eval_set), markdown(eval_table(rows, eval_set), numbers=EVAL_NUMBERS))
        atomic_write_text(out.table(eval_set, ".csv"), csv_table(rows, eval_set))
    atomic_write_text(out.verdict, markdown(verdict_table(rows), numbers=VERDICT_NUMBERS) + "\n" + verdict_note(rows)
                      + "\n")
    plot_budget_curves(rows, out.budget_plot)
    write_html_report(out.path)
