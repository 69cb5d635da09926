"""Time to accuracy at 100 labels (seed 0): seconds of training on this machine until validation
accuracy first reaches each target, ours beside a peer from ../shared/peers, one after the other in
one run: on Kannada-10k the Keras notebook's SGAN (seed_keras_sgan.py), on Pets-12k-32 the
cats-vs-dogs article's PyTorch SGAN (seed_torch_sgan.py, `--peer-kind photos`).

Both clocks count training only: ours is the run's `seconds` on each validation line of
metrics.jsonl (checked every --eval-every steps); the Keras peer's the seconds it prints every tenth
of its iterations (its own --log), the photo peer's the curve it prints (evaluations excluded). A
target never reached is reported as such, with the best accuracy seen and when. Writes
<out>/time_to_accuracy.json and .md.

    python benchmarks/time_to_accuracy.py --set iterations=3000 --peer /tmp/tfenv/bin/python \
        --out benchmarks/results/time-to-accuracy
    python benchmarks/time_to_accuracy.py --config benchmarks/pets12k32-resnet9.toml --peer-kind photos \
        --peer .venv/bin/python --peer-iterations 1000 --targets 0.6 0.65 --eval-every 100 \
        --out benchmarks/results/time-to-accuracy-pets12k32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py, beside this script
from sgan.config import run_config_file
from sgan.presets import shared_data_root
from sgan.trainer import train

PEER = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "seed_keras_sgan.py"
PHOTO_PEER = PEER.with_name("seed_torch_sgan.py")
PEER_LINE = re.compile(r"^\[(\d+)\] .* val ([\d.]+)% \| (\d+)s")  # "[600] D_sup loss ... | val 81.20% | 97s"


def first_reaching(curve: list[dict[str, float]], targets: list[float]) -> dict[str, Any]:
    """For each target, the first point of the curve (step, seconds, val) at or above it, else None;
    and the best point."""
    best = max(curve, key=lambda p: p["val"])
    reached = {f"{t:g}": next((p for p in curve if p["val"] >= t), None) for t in targets}
    return {"reached": reached, "best": best, "curve": curve}


def ours(config: str, extra: dict[str, Any], *, method: str, eval_every: int, out: Path) -> list[dict[str, float]]:
    train(**{**run_config_file(config), **extra, "methods": [method], "n_labeled": 100, "seed": 0, "eval_every": eval_every,
             "out": str(out), "progress": False}, overwrite=True)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "seconds": r["seconds"], "val": r["val"]} for r in lines if "val" in r]


def peer(python: str, *, iterations: int) -> list[dict[str, float]]:
    env = {**os.environ, "KANNADA_DIR": str(shared_data_root() / "kannada-mnist")}
    done = subprocess.run([python, str(PEER), "--mode", "sgan", "--n-labeled", "100", "--iterations", str(iterations),
                           "--gen-call", "predict_on_batch", "--frozen-bn", "batch", "--log"],
                          capture_output=True, text=True, check=True, env=env)
    points = [PEER_LINE.match(line) for line in done.stderr.splitlines()]
    return [{"step": int(m[1]), "seconds": float(m[3]), "val": float(m[2]) / 100} for m in points if m]


def photo_peer(python: str, *, iterations: int, eval_every: int) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """The article's SGAN on Pets-12k-32, seed 0: its validation curve, and its own summary."""
    done = subprocess.run([python, str(PHOTO_PEER), "--data", str(shared_data_root() / "pets64"), "--size", "32",
                           "--iterations", str(iterations), "--eval-every", str(eval_every), "--seed", "0"],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result.pop("curve"), result


def cell(result: dict[str, Any], target: str) -> str:
    point = result["reached"][target]
    if point is None:
        best = result["best"]
        return f"not reached (best {100 * best['val']:.2f}% at {best['seconds']:.0f} s, step {best['step']})"
    return f"{point['seconds']:.0f} s (step {point['step']}, {100 * point['val']:.2f}%)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).with_name("kannada10k.toml")),
                    help="our settings (a sweep config's [sweep] table is ignored)")
    ap.add_argument("--method", default="sgan+aug")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                    help="our settings beyond --config's, e.g. iterations=3000 pseudo_label_weight=1.0")
    ap.add_argument("--eval-every", type=int, default=50, help="ours: steps between validation checks")
    ap.add_argument("--peer", default=None, help="the python that runs the peer: one with TensorFlow for the Keras "
                    "peer, sgan's own for the photo peer (omit to skip it)")
    ap.add_argument("--peer-kind", choices=("keras", "photos"), default="keras",
                    help="keras: the notebook's SGAN on Kannada-10k; photos: the article's on Pets-12k-32")
    ap.add_argument("--peer-iterations", type=int, default=5000,
                    help="the Keras peer logs every tenth of these; the photo peer validates every --eval-every")
    ap.add_argument("--targets", nargs="+", type=float, default=[0.90, 0.95])
    ap.add_argument("--out", default="benchmarks/results/time-to-accuracy")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    results = {f"sgan {args.method}": first_reaching(
        ours(args.config, extra, method=args.method, eval_every=args.eval_every, out=out / "ours"), args.targets)}
    peer_summary = None
    if args.peer and args.peer_kind == "keras":
        results["keras peer (notebook SGAN)"] = first_reaching(peer(args.peer, iterations=args.peer_iterations),
                                                               args.targets)
    elif args.peer:
        curve, peer_summary = photo_peer(args.peer, iterations=args.peer_iterations, eval_every=args.eval_every)
        results["photo peer (article's PyTorch SGAN)"] = first_reaching(curve, args.targets)
    protocol = "Kannada-10k" if args.peer_kind == "keras" else "Pets-12k-32"
    report = {"protocol": f"{protocol}, 100 labels, pool unlabeled, seed 0", "config": args.config, "set": extra,
              "machine": machine.describe(),
              "ours_resolved_config": json.loads((out / "ours" / "config.json").read_text()),
              "peer_iterations": args.peer_iterations if args.peer else None,
              "peer_summary": peer_summary,
              "results": results}
    (out / "time_to_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    targets = [f"{t:g}" for t in args.targets]
    rows = ["| trainer | " + " | ".join(f"to {100 * float(t):g}% val" for t in targets) + " | best val |",
            "|---|" + "---|" * len(targets) + "---:|"]
    for name, result in results.items():
        best = result["best"]
        rows.append(f"| {name} | " + " | ".join(cell(result, t) for t in targets)
                    + f" | {100 * best['val']:.2f}% ({best['seconds']:.0f} s) |")
    table = "\n".join(rows) + "\n"
    (out / "time_to_accuracy.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
