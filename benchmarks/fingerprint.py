"""Behaviour fingerprint: short runs of every method and path, hashed, so that a refactor can
show it changed nothing.

    python benchmarks/fingerprint.py --out /tmp/fp-before      # at the old commit
    python benchmarks/fingerprint.py --out /tmp/fp-after       # at the new one
    python benchmarks/fingerprint.py --compare /tmp/fp-before /tmp/fp-after

Each scenario is the real CLI in a subprocess: the digits with all five methods (EMA, best-val
selection, cosine schedule, pseudo-labels, AdaBN, a holdout, a held-out test set, a submission),
feature matching with split BatchNorm on a transductive source, a 32 px photo folder (ResNet18),
a torchrun pair over gloo, a streamed unlabeled folder, a tiny sweep, suggest-labels, eval and
predict. The fingerprint holds a SHA-256 of every tensor of every safetensors file (weights,
diagnostics, the checkpoint), of metrics.jsonl, split.json and each sample grid, and
metrics.json and the checkpoint's JSON without timings and unseeded host generators, the only
things allowed to differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PETS = ROOT.parent / "shared" / "data" / "pets64"
# wall-clock figures, the log offset that follows from them, and Python's and numpy's global
# generators, which nothing seeds (a checkpoint carries them so that a resumed process continues them)
VARYING = {"train_seconds", "seconds", "log_bytes", "rng_host"}


def sgan(*args: str, torchrun: bool = False) -> None:
    head = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"] if torchrun
            else [sys.executable])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([*head, "-m", "sgan", *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"failed: sgan {' '.join(args)}\n{r.stderr[-3000:]}")


def make_data(data: Path) -> dict[str, str]:
    """A holdout and a submission CSV from the bundled digits, PNG folders, a small photo folder."""
    from PIL import Image

    from sgan.data.readers import read_sklearn_digits
    from sgan.data.transforms import resize

    digits = read_sklearn_digits()
    images, labels = resize(digits.images, 28)[:, 0], digits.labels
    data.mkdir(parents=True, exist_ok=True)
    flat = images.reshape(len(images), -1)
    pixels = ",".join(f"pixel{i}" for i in range(flat.shape[1]))
    np.savetxt(data / "holdout.csv", np.column_stack([labels[:300], 255 - flat[:300]]), fmt="%d", delimiter=",",
               header="label," + pixels, comments="")  # inverted: a shifted set
    np.savetxt(data / "test.csv", np.column_stack([np.arange(500, 560), flat[:60]]), fmt="%d", delimiter=",",
               header="id," + pixels, comments="")
    folder = data / "unlabeled_png"
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(images[:80]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    pets = data / "pets"
    for cls in ("cat", "dog"):
        (pets / cls).mkdir(parents=True, exist_ok=True)
        for src in sorted((PETS / cls).iterdir())[:40]:
            shutil.copyfile(src, pets / cls / src.name)
    return {"holdout": str(data / "holdout.csv"), "test": str(data / "test.csv"), "png": str(folder),
            "pets": str(pets)}


SHORT = ["--iterations", "24", "--batch-size", "16", "--eval-every", "8", "--log-every", "4", "--checkpoint-every", "10",
         "--no-progress", "--threads", "1"]


def run_all(out: Path) -> None:
    d = make_data(out / "data")
    runs = out / "runs"
    sgan("train", "--data", "sklearn-digits", "--methods", "supervised", "conventional", "fixmatch", "sgan", "sgan+aug",
         "--set-std", "--n-labeled", "50", "--ema", "0.9", "--select", "best_val", "--lr-schedule", "cosine",
         "--pseudo-label-weight", "1", "--pseudo-label-threshold", "0.5", "--adabn", "--eval", f"holdout={d['holdout']}",
         "--test-per-class", "5", "--test-data", d["test"], "--submit", "--out", str(runs / "digits"), *SHORT)
    sgan("train", "--data", "sklearn-digits", "--methods", "sgan", "sgan+aug", "--generator-loss", "feature_matching",
         "--split-bn", "--eval", f"holdout={d['holdout']}", "--unlabeled", "holdout", "--val-per-class", "10",
         "--seed", "3", "--out", str(runs / "digits-fm"), *SHORT)
    sgan("train", "--data", d["pets"], "--model", "resnet18", "--image-size", "32", "--methods", "supervised", "sgan+aug",
         "--n-labeled", "10", "--val-per-class", "5", "--test-per-class", "5", "--select", "best_val",
         "--iterations", "6", "--batch-size", "8", "--eval-every", "3", "--log-every", "2", "--no-progress",
         "--threads", "1", "--out", str(runs / "photos"))
    sgan("train", "--data", "sklearn-digits", "--methods", "supervised", "sgan", "--n-labeled", "40", "--ema", "0.5",
         "--device", "cpu", "--out", str(runs / "torchrun"), *SHORT[:-2], torchrun=True)
    sgan("train", "--data", "sklearn-digits", "--unlabeled", d["png"], "--stream", "--loader-workers", "2",
         "--methods", "supervised", "sgan+aug", "--n-labeled", "30", "--out", str(runs / "stream"), *SHORT)
    sgan("sweep", "--data", "sklearn-digits", "--eval", f"holdout={d['holdout']}", "--budgets", "20", "--seeds", "0", "1",
         "--sources", "pool", "holdout", "--methods", "supervised", "sgan", "--iterations", "6", "--batch-size", "8",
         "--eval-every", "3", "--log-every", "3", "--no-progress", "--threads", "1", "--out", str(runs / "sweep"))
    sgan("suggest-labels", "--data", "sklearn-digits", "--budget", "12", "--pretext-iterations", "4", "--no-progress",
         "--threads", "1", "--out", str(runs / "suggest"))
    sgan("predict", str(runs / "digits"), "--data", d["test"], "--out", str(runs / "predict.csv"), "--method", "sgan+aug")
    sgan("predict", str(runs / "photos"), "--data", d["pets"], "--out", str(runs / "predict_photos.csv"),
         "--method", "sgan+aug")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def drop_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_varying(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [drop_varying(v) for v in value]
    return value


def fingerprint(out: Path) -> dict[str, Any]:
    """Paths under `out` (configs and CSVs name their files) are written as "@"."""
    from safetensors import safe_open

    def text(path: Path) -> str:
        return path.read_text().replace(str(out), "@")

    runs, prints = out / "runs", {}
    for path in sorted(p for p in runs.rglob("*") if p.is_file()):
        rel = str(path.relative_to(runs))
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                entry: dict[str, Any] = {k: sha(f.get_tensor(k).numpy().tobytes()) for k in sorted(f.keys())}
            if "state" in meta:  # a checkpoint or diagnostics: its JSON, timings aside
                entry["state"] = drop_varying(json.loads(meta["state"].replace(str(out), "@")))
            prints[rel] = entry
        elif path.name in ("metrics.json", "summary.json", "config.json"):
            prints[rel] = drop_varying(json.loads(text(path)))
        elif path.suffix == ".jsonl":  # each line's values, its timing aside
            prints[rel] = sha(json.dumps([drop_varying(json.loads(line)) for line in text(path).splitlines()]).encode())
        elif path.suffix in (".csv", ".md") or path.name == "split.json":
            prints[rel] = sha(text(path).encode())
        elif "samples" in path.parts:
            prints[rel] = sha(path.read_bytes())
    return prints


def compare(a: Path, b: Path) -> int:
    fa, fb = (json.loads((p / "fingerprint.json").read_text()) for p in (a, b))
    differ = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    tensors = sum(len(v) for v in fa.values() if isinstance(v, dict))
    print(f"{len(fa)} files, {tensors} entries in safetensors/JSON files compared")
    for k in differ:
        x, y = fa.get(k), fb.get(k)
        keys = sorted(i for i in {*x, *y} if x.get(i) != y.get(i)) if isinstance(x, dict) and isinstance(y, dict) else []
        print(f"DIFFERS: {k}" + (f" ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})" if keys else ""))
    print("identical (timings and unseeded host generators aside)" if not differ else f"{len(differ)} files differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the runs and fingerprint.json")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out.exists():
        shutil.rmtree(args.out)
    run_all(args.out)
    prints = fingerprint(args.out)
    (args.out / "fingerprint.json").write_text(json.dumps(prints, indent=1, sort_keys=True))
    print(f"{len(prints)} files fingerprinted in {args.out / 'fingerprint.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
