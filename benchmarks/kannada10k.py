"""Kannada-10k accuracy protocol (../shared/BENCHMARK.md): methods x label budgets x seeds.

Every cell is an ordinary `sgan train` run with the built-in `kannada-10k` preset, so the tool
and the benchmark agree by construction. Finished runs are skipped, so a rerun resumes.
Writes <out>/kannada10k.json and <out>/kannada10k.md (mean +- std over seeds).

    python benchmarks/kannada10k.py --n-labeled 100 --seeds 0 1 2 --iterations 4000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from sgan import train


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["supervised", "sgan"])
    ap.add_argument("--n-labeled", nargs="+", type=int, default=[100])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--unlabeled", default=None, help="None (pool) or 'holdout' (transductive)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                    help="extra config values, e.g. ema=0.999 generator_loss='\"feature_matching\"'")
    ap.add_argument("--out", default="benchmarks/results/kannada10k")
    args = ap.parse_args(argv)
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    out = Path(args.out)
    cells = []
    for n in args.n_labeled:
        for seed in args.seeds:
            run = out / "runs" / f"n{n}_seed{seed}"
            if not (run / "metrics.json").is_file():
                print(f"running n={n} seed={seed} -> {run}", file=sys.stderr, flush=True)
                train(preset="kannada-10k", n_labeled=n, seed=seed, iterations=args.iterations,
                      methods=args.methods, unlabeled=args.unlabeled, out=str(run), overwrite=True,
                      progress=False, **extra)
            cells.append(json.loads((run / "metrics.json").read_text()))
    write_tables(cells, out, extra)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_tables(cells: list[dict], out: Path, extra: dict) -> None:
    summary = []
    for n in sorted({c["protocol"]["n_labeled"] for c in cells}):
        group = [c for c in cells if c["protocol"]["n_labeled"] == n]
        for method in group[0]["methods"]:
            runs = [c["methods"][method] for c in group]
            row = {"n_labeled": n, "method": method, "seeds": [c["protocol"]["seed"] for c in group],
                   "iterations": runs[0]["iterations"], "unlabeled": group[0]["protocol"]["unlabeled"],
                   "transductive": group[0]["protocol"]["transductive"],
                   "selection": group[0]["protocol"]["selection"]}
            for key in ("val", "holdout", "train_seconds"):
                row[key] = [r[key] for r in runs]
                row[f"{key}_mean"], row[f"{key}_std"] = mean_std(row[key])
            summary.append(row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kannada10k.json").write_text(json.dumps({"config": extra, "rows": summary}, indent=2))
    lines = ["| n labeled | method | unlabeled | val acc % | Dig acc % | seeds | iterations | train s |",
             "|---:|---|---|---:|---:|---|---:|---:|"]
    for r in summary:
        unl = r["unlabeled"] + (" (transductive)" if r["transductive"] else "")
        lines.append(f"| {r['n_labeled']} | {r['method']} | {unl} | {100 * r['val_mean']:.2f} +- "
                     f"{100 * r['val_std']:.2f} | {100 * r['holdout_mean']:.2f} +- {100 * r['holdout_std']:.2f} | "
                     f"{','.join(map(str, r['seeds']))} | {r['iterations']} | {r['train_seconds_mean']:.0f} |")
    (out / "kannada10k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
