"""A sweep's tables, each made from summary.json's rows (sgan/sweep/summary.py writes them), never
parsed back: one per evaluation set (Markdown, CSV, HTML) and the verdict (best SGAN variant
against the best method without a generator, and the generator's share)."""

from __future__ import annotations

import statistics
from typing import Any

from ..files import csv_text
from ..registry import REGISTRY

Row = dict[str, Any]  # one row of summary.json: eval set, budget, source, method, per-seed values, mean, std
Table = tuple[list[str], list[list[str]]]  # a header and its rows, each cell as text


def source_text(row: Row) -> str:
    """The unlabeled column: the source, whether it was an evaluation set, and any pseudo-label term."""
    return (row["unlabeled"] + (" (transductive)" if row["transductive"] else "")
            + (f", pseudo-labels x{row['pseudo_label_weight']:g}" if row.get("pseudo_label_weight") else ""))


def fmt(row: Row) -> str:
    """Mean +- std in percent; a single seed has no spread to show."""
    if len(row["values"]) < 2:
        return f"{100 * row['mean']:.2f} (1 seed)"
    return f"{100 * row['mean']:.2f} +- {100 * row['std']:.2f}"


def eval_sets(rows: list[Row]) -> list[str]:
    return sorted({r["eval_set"] for r in rows})


def eval_table(rows: list[Row], eval_set: str) -> Table:
    """One evaluation set's results: a line per budget, method and source, mean +- std over seeds."""
    header = ["n labeled", "method", "unlabeled", f"{eval_set} acc % (mean +- std)", "seeds", "iterations"]
    return header, [[str(r["n_labeled"]), r["method"], source_text(r), fmt(r), ",".join(map(str, r["seeds"])),
                     str(r["iterations"])] for r in rows if r["eval_set"] == eval_set]


def csv_table(rows: list[Row], eval_set: str) -> str:
    """One evaluation set's rows with every seed's value, for other tools."""
    return csv_text(["n_labeled", "method", "unlabeled", "transductive", "mean", "std", "seeds", "values"],
                    [[r["n_labeled"], r["method"], r["unlabeled"], r["transductive"], f"{r['mean']:.4f}",
                      f"{r['std']:.4f}", " ".join(map(str, r["seeds"])), " ".join(f"{v:.4f}" for v in r["values"])]
                     for r in rows if r["eval_set"] == eval_set])


def verdict_table(rows: list[Row]) -> Table:
    """For each budget and unlabeled source: the SGAN variant and the method without a generator
    that are best on validation (mean over seeds; the non-GAN methods include those that learn
    from the same unlabeled images through pseudo-labels alone), side by side on every
    evaluation set; and the generator's share: the SGAN variant minus the best of the non-GAN
    methods on that source's unlabeled images. Differences are per seed (the seeds share their
    split), mean +- std. Chosen on validation, so that a holdout is reported, never chosen on."""
    def best_on_val(n: int, sources: tuple[str, ...], has_generator: bool) -> Row | None:
        val = [r for r in rows if r["eval_set"] == "val" and r["n_labeled"] == n and r["unlabeled"] in sources
               and REGISTRY[r["method"]].has_generator == has_generator]
        return max(val, key=lambda r: r["mean"]) if val else None

    header = ["eval set", "n labeled", "unlabeled", "best SGAN variant", "best non-GAN method", "difference (points)",
              "best non-GAN method on these unlabeled images", "generator's share (points)"]
    lines = []
    for eval_set in eval_sets(rows):
        for n in sorted({r["n_labeled"] for r in rows}):
            cell = {(r["method"], r["unlabeled"]): r for r in rows if r["eval_set"] == eval_set and r["n_labeled"] == n}
            for source in sorted({source for _, source in cell} - {"-"}):
                chosen = [best_on_val(n, (source,), True), best_on_val(n, ("-", source), False),
                          best_on_val(n, (source,), False)]
                g, b, u = (cell.get((c["method"], c["unlabeled"])) if c else None for c in chosen)
                if g is None or b is None:
                    continue
                lines.append([eval_set, str(n), source_text(g), f"{g['method']} {fmt(g)}", f"{b['method']} {fmt(b)}",
                              paired(g, b), *([f"{u['method']} {fmt(u)}", paired(g, u)] if u else ["-", "-"])])
    return header, lines


def verdict_note(rows: list[Row]) -> str:
    seeds = sorted({s for r in rows for s in r["seeds"]})
    return (f"Seeds: {', '.join(map(str, seeds))}; +- is the sample std over seeds; a difference is the mean +- std "
            "of the per-seed differences (each seed's methods share its split). Each method chosen by its mean "
            "validation accuracy at that budget and source, then reported on every set.")


EVAL_NUMBERS = (0, 3, 5)  # eval_table's columns of numbers, right-aligned in Markdown
VERDICT_NUMBERS = (1, 5, 7)


def markdown(table: Table, *, numbers: tuple[int, ...]) -> str:
    """A pipe table, the columns `numbers` right-aligned."""
    header, lines = table
    align = "|" + "|".join("---:" if i in numbers else "---" for i in range(len(header))) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", align, *("| " + " | ".join(cells) + " |" for cells in lines)]) \
        + "\n"


def paired(a: Row, b: Row) -> str:
    """a minus b in points, seed by seed over the seeds both have: mean +- std (std with 2+ seeds)."""
    theirs = dict(zip(b["seeds"], b["values"]))
    diffs = [100 * (v - theirs[s]) for s, v in zip(a["seeds"], a["values"]) if s in theirs]
    if not diffs:
        return "-"
    return f"{statistics.fmean(diffs):+.2f}" + (f" +- {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "")
