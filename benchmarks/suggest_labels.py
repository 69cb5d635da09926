"""Does `sgan suggest-labels` pick better images to label than chance? Per seed: the SGAN trained
on 100 suggested picks, on 100 uniformly random picks (no class balancing) and on the protocol's
class-balanced draw (which knows the classes); the true labels play the person who labels.
Resumable (finished runs are skipped, a stopped one continues from its checkpoint); writes
<out>/suggest_labels.json and .md.

    python benchmarks/suggest_labels.py --config benchmarks/kannada10k.toml --out benchmarks/results/suggest-kannada
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from sgan.config import Suggestion, resolve, run_config_file
from sgan.data.prepare import candidate_pool
from sgan.plan import make_plan
from sgan.run import RunFolder, SuggestFolder
from sgan.suggest import suggest_labels
from sgan.sweep.cells import train_cell

ARMS = ("suggested", "random", "balanced")
SCORED = ("holdout", "holdout+adabn", "test")  # reported beside validation where the protocol has them


def filled_picks(cfg, folder: Path, strategy: str, features: str, budget: int,
                 pretext_iterations: int) -> tuple[Path, list[int]]:
    """picks.csv with the true labels written in (filled.csv); returns its path and the picks'
    class counts. A filled.csv kept from an earlier run is used as it is."""
    filled, kept = folder / "filled.csv", SuggestFolder(folder)
    if kept.summary.is_file():  # picks kept from an earlier run must be the ones asked for now
        made = json.loads(kept.summary.read_text())
        wanted = {"strategy": strategy, "features": features if strategy != "random" else None}
        if any(made.get(k) != v for k, v in wanted.items()):
            raise SystemExit(f"{folder} holds picks made with {made.get('strategy')}/{made.get('features')}, not "
                             f"{wanted['strategy']}/{wanted['features']}; use another --out")
    if not filled.is_file():
        picks = kept.picks
        if not picks.is_file():
            suggest_labels(cfg, budget=budget, out=folder, strategy=strategy, features=features,
                           pretext_iterations=pretext_iterations)
        plan = make_plan(cfg, labeled=False)
        pool, _ = candidate_pool(plan.config, plan.pool)
        with open(picks, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(filled, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "path", "label"])
            writer.writerows([r["index"], r["path"], int(pool.labels[int(r["index"])])] for r in rows)
    with open(filled, newline="") as f:
        labels = [int(r["label"]) for r in csv.DictReader(f)]
    return filled, np.bincount(labels, minlength=cfg.num_classes or max(labels) + 1).tolist()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="benchmarks/kannada10k.toml")
    ap.add_argument("--method", default="sgan")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--pretext-iterations", type=int, default=1500)
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(Suggestion)}
    ap.add_argument("--strategy", choices=[s for s in choices["strategy"] if s != "random"], default="representative",
                    help="how the suggested arm picks (the random arm always picks at random)")
    ap.add_argument("--features", choices=choices["features"], default="contrastive", help="what the suggested arm clusters")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--out", default="benchmarks/results/suggest-kannada")
    args = ap.parse_args(argv)
    values = run_config_file(args.config)
    out = Path(args.out)
    results = []
    for seed in args.seeds:
        cfg = resolve(values, {"seed": seed, "methods": [args.method], "n_labeled": args.budget, "progress": False})
        for arm in args.arms:
            run = RunFolder(out / f"{arm}_seed{seed}")
            extra, counts = {}, None
            if arm != "balanced":
                strategy = args.strategy if arm == "suggested" else "random"
                picks, counts = filled_picks(cfg, out / f"picks_{arm}_seed{seed}", strategy, args.features,
                                             args.budget, args.pretext_iterations)
                extra = {"labels_csv": str(picks)}
            if not run.is_complete():  # a stopped run resumes as a sweep's cell does
                train_cell({**cfg.to_dict(), **extra, "out": str(run.path)}, torch.get_num_threads())
            metrics = run.read_metrics()
            counts = counts or metrics.protocol.sets["labeled"]["per_class"]
            results.append({"seed": seed, "arm": arm, "per_class": counts, **{
                k: v for k, v in metrics.methods[args.method].accuracy.items() if k in ("val", *SCORED)}})
            print(json.dumps(results[-1]), flush=True)
            write_tables(out, args, results)  # after every run: a stopped benchmark keeps what it measured


def write_tables(out: Path, args: argparse.Namespace, results: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "suggest_labels.json").write_text(json.dumps({"config": args.config, "method": args.method,
                                                         "strategy": args.strategy, "features": args.features,
                                                         "budget": args.budget, "results": results}, indent=2))
    scored = [k for k in ("holdout", "test") if any(k in r for r in results)]
    lines = [f"| picks ({args.budget} labels) | val % mean +- std | "
             + "".join(f"{k} % mean +- std | " for k in scored)
             + "per seed (val) | classes covered / smallest class (per seed) |",
             "|---|---:|" + "---:|" * len(scored) + "---|---|"]
    for arm in ARMS:
        mine = [r for r in results if r["arm"] == arm]
        if not mine:
            continue

        def stat(key: str) -> str:
            xs = [100 * r[key] for r in mine if key in r]
            return f"{statistics.mean(xs):.2f} +- {statistics.stdev(xs) if len(xs) > 1 else 0:.2f}" if xs else "-"

        balance = ", ".join(f"{sum(c > 0 for c in r['per_class'])} / {min(r['per_class'])}" for r in mine)
        per_seed = ", ".join(f"{100 * r['val']:.2f}" for r in mine)
        lines.append(f"| {arm} | {stat('val')} | " + "".join(f"{stat(k)} | " for k in scored) + f"{per_seed} | {balance} |")
    (out / "suggest_labels.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
