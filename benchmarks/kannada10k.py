"""Kannada-10k accuracy protocol (../shared/BENCHMARK.md): budgets x sources x seeds, all methods.

A thin wrapper over `sgan sweep --preset kannada-10k`, so the benchmark and the tool agree by
construction. Finished cells are skipped, so a rerun resumes. Writes, under --out, summary.json,
table_<set>.{md,csv} (mean +- std over seeds), accuracy_vs_budget.png, and kannada10k.md
(the validation and Dig-MNIST tables together).

    python benchmarks/kannada10k.py --budgets 100 --seeds 0 1 2 --iterations 3000 --methods supervised sgan
"""

from __future__ import annotations

import argparse
import json

from sgan.run import SweepFolder
from sgan.sweep import Sweep, run_sweep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["supervised", "conventional", "sgan", "sgan+aug"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[100, 1000, 4000])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--sources", nargs="+", default=["pool"], help="pool and/or holdout (transductive)")
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="more config, e.g. adabn=true")
    ap.add_argument("--out", default="benchmarks/results/kannada10k")
    args = ap.parse_args(argv)
    base = {"preset": "kannada-10k", "iterations": args.iterations, "methods": args.methods, "progress": False,
            **{k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}}
    sweep = Sweep(base=base, budgets=args.budgets, seeds=args.seeds, sources=args.sources, workers=args.workers,
                  out=args.out)
    run_sweep(sweep)
    out = SweepFolder(args.out)
    tables = [f"### {name}\n\n" + out.table(name).read_text() for name in ("val", "holdout")]
    (out.path / "kannada10k.md").write_text("\n".join(tables))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
