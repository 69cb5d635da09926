"""Training speed of the 28 px SGAN (and, with --photos, the ResNet18 SGAN at 32 and 64 px, batch 64):
iterations/s and classifier images/s, median of repeats after a warm-up, optionally beside the
Keras peer (../shared/peers/seed_keras_sgan.py) measured in the same run, one after the other.
--amp / --compile time the bf16 and torch.compile paths; --amp both also times float32 first, in the same
run (the ratio is the measure). Writes <out>/speed.json and <out>/speed.md.

    python benchmarks/speed.py --batch 32 64 --peer /tmp/tfenv/bin/python
    python benchmarks/speed.py --device cuda --batch 64 --photos --amp --compile
    python benchmarks/speed.py --batch 32 --photos --amp both     # float32 and bf16 in one run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch

import machine  # benchmarks/machine.py, beside this script
from sgan.config import Config
from sgan.methods import build_method

PEER = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "seed_keras_sgan.py"


def time_sgan(cfg: Config, device: torch.device, *, channels: int, iterations: int, warmup: int,
              repeats: int) -> list[float]:
    """Iterations/s of SGAN.train_step on in-memory tensors, one value per repeat."""
    torch.manual_seed(0)
    method = build_method("sgan", cfg, device=device)
    shape = (cfg.batch_size, channels, cfg.image_size, cfg.image_size)
    x_lb = torch.rand(shape, device=device) * 2 - 1
    y_lb = torch.randint(0, 10, (cfg.batch_size,), device=device)
    x_ulb = torch.rand(shape, device=device) * 2 - 1
    for _ in range(warmup):
        method.train_step(x_lb, y_lb, x_ulb)
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            method.train_step(x_lb, y_lb, x_ulb)  # returns floats: each step ends synchronised
        rates.append(iterations / (time.perf_counter() - start))
    return rates


def time_peer(python: str, *, iterations: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        out = subprocess.run([python, str(PEER), "--mode", "sgan", "--n-labeled", "100", "--iterations",
                              str(iterations), "--gen-call", "predict_on_batch"],
                             capture_output=True, text=True, check=True)
        rates.append(json.loads(out.stdout.strip().splitlines()[-1])["iters_per_s"])
    return rates


def summary(name: str, batch: int, rates: list[float], device: str, dtype: str, threads: int | str) -> dict:
    # classifier images per iteration: labeled + unlabeled + fake (D step) + fake (G step)
    return {"impl": name, "batch": batch, "device": device, "dtype": dtype, "threads": threads,
            "iters_per_s": rates, "median_iters_per_s": statistics.median(rates),
            "median_images_per_s": statistics.median(rates) * 4 * batch}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iterations", type=int, default=100, help="iterations per repeat")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer", help="python of a venv with TensorFlow: also time the Keras peer (batch 32)")
    ap.add_argument("--peer-iterations", type=int, default=300)
    ap.add_argument("--photos", action="store_true", help="also the ResNet18 SGAN on RGB photos")
    ap.add_argument("--photo-sizes", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--photo-batch", type=int, default=64)
    ap.add_argument("--photo-iterations", type=int, default=20, help="iterations per repeat for --photos")
    ap.add_argument("--photo-warmup", type=int, default=5)
    ap.add_argument("--amp", nargs="?", const="on", choices=("on", "both"),
                    help="bf16 autocast; 'both': float32 then bf16, each cell one after the other")
    ap.add_argument("--compile", action="store_true", help="torch.compile both networks")
    ap.add_argument("--out", default="benchmarks/results/speed")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    amps = {None: [False], "on": [True], "both": [False, True]}[args.amp]
    cells = [("sgan (PyTorch) 28 px", Config(model="digits", image_size=28, batch_size=b, amp=amp,
                                             compile=args.compile, channels=1, num_classes=10), 1, args.iterations, args.warmup)
             for b in args.batch for amp in amps]
    if args.photos:
        cells += [(f"sgan ResNet18 {size} px", Config(batch_size=args.photo_batch, model="resnet18", image_size=size,
                                                      amp=amp, compile=args.compile, channels=3, num_classes=10), 3, args.photo_iterations,
                   args.photo_warmup) for size in args.photo_sizes for amp in amps]
    rows = [summary(name + (" compiled" if args.compile else ""), cfg.batch_size,
                    time_sgan(cfg, device, channels=channels, iterations=iterations, warmup=warmup,
                              repeats=args.repeats), args.device, "bf16 autocast" if cfg.amp else "float32",
                    torch.get_num_threads())
            for name, cfg, channels, iterations, warmup in cells]
    if args.peer:
        rows.append(summary("Keras peer", 32, time_peer(args.peer, iterations=args.peer_iterations, repeats=3),
                            "cpu", "float32", "TF default"))
    env = {**machine.describe(), "cuda": torch.cuda.get_device_name() if device.type == "cuda" else None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    lines = ["| implementation | device | batch | threads | dtype | median it/s (all repeats) | images/s |",
             "|---|---|---:|---:|---|---:|---:|"]
    lines += [f"| {r['impl']} | {r['device']} | {r['batch']} | {r['threads']} | {r['dtype']} | "
              f"{r['median_iters_per_s']:.2f} ({', '.join(f'{v:.2f}' for v in r['iters_per_s'])}) | "
              f"{r['median_images_per_s']:.0f} |" for r in rows]
    (out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
