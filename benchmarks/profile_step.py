"""Where one photo SGAN step's time goes, part by part, beside the supervised step of the same
network and batch: torch.profiler over the `record_function` labels of methods/sgan.py (each
classifier pass, the generator's forward, the augmentation, each backward and optimizer), the
median per step over several profiled steps after a warm-up, float32 and (where the CPU has
AMX) bf16 autocast, one after the other in the same run. Writes <out>/profile.json and
<out>/profile.md.

    python benchmarks/profile_step.py --config benchmarks/pets12k32.toml --out benchmarks/results/profile-photos
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tomllib
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import machine  # benchmarks/machine.py, beside this script
from sgan.config import resolve
from sgan.data.readers import Source
from sgan.methods import build_method
from sgan.plan import make_plan
from sgan.plan import bf16_is_fast

PARTS = ("augment", "generator forward", "D: labeled + unlabeled pass", "D: generated pass", "strong view",
         "D: strong view pass", "D backward", "D optimizer",
         "G: generated pass through D", "G backward (through D, then G)", "G optimizer")


def batches(cfg, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    shape = (cfg.batch_size, channels, cfg.image_size, cfg.image_size)
    g = torch.Generator().manual_seed(0)
    x_lb, x_ulb = (torch.rand(shape, generator=g) * 2 - 1 for _ in range(2))
    return x_lb.to(device), torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=g).to(device), x_ulb.to(device)


def step_seconds(method, x_lb, y_lb, x_ulb, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        method.train_step(x_lb, y_lb, x_ulb)  # returns floats: each step ends synchronised
        times.append(time.perf_counter() - start)
    return times


def profile_parts(method, x_lb, y_lb, x_ulb, steps: int) -> tuple[dict[str, float], float]:
    """Median seconds per step of each labelled part (a part's time includes what it calls), and
    the median wall time of the profiled steps themselves (the profiler's overhead included)."""
    per_step: dict[str, list[float]] = {part: [] for part in PARTS}
    walls = []
    for _ in range(steps):
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            method.train_step(x_lb, y_lb, x_ulb)
        walls.append(time.perf_counter() - start)
        totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
        for part in PARTS:
            per_step[part].append(totals.get(part, 0.0))
    return {part: statistics.median(v) for part, v in per_step.items()}, statistics.median(walls)


def measure(cfg, *, method_name: str, channels: int, device: torch.device, warmup: int, steps: int,
            parts: bool) -> dict:
    torch.manual_seed(0)
    method = build_method(method_name, cfg, device=device)
    x_lb, y_lb, x_ulb = batches(cfg, channels, device)
    step_seconds(method, x_lb, y_lb, x_ulb, warmup)
    out = {"method": method_name, "median_step_s": statistics.median(step_seconds(method, x_lb, y_lb, x_ulb, steps))}
    if parts:
        out["parts_s"], out["profiled_step_s"] = profile_parts(method, x_lb, y_lb, x_ulb, steps)
    return out


def table(results: list[dict]) -> str:
    lines = []
    for r in results:
        head = f"### {r['dtype']}: {r['sgan']['method']} step {r['sgan']['median_step_s'] * 1000:.0f} ms, " \
               f"{r['supervised']['method']} step {r['supervised']['median_step_s'] * 1000:.0f} ms " \
               f"(ratio {r['ratio']:.2f}x)"
        lines += [head, "", "| part | ms per step | share of the step |", "|---|---:|---:|"]
        step = r["sgan"]["median_step_s"]
        for part, seconds in r["sgan"]["parts_s"].items():
            lines.append(f"| {part} | {seconds * 1000:.1f} | {seconds / step:.0%} |")
        rest = step - sum(r["sgan"]["parts_s"].values())
        lines += [f"| rest (noise draw, losses, .item(), profiler) | {rest * 1000:.1f} | {rest / step:.0%} |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="benchmarks/pets12k32.toml", help="a study config (its training settings)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="config overrides, e.g. fake_batch_size=32")
    ap.add_argument("--method", default="sgan+aug")
    ap.add_argument("--baseline", default="conventional", help="the non-GAN step the ratio is taken against")
    ap.add_argument("--channels", type=int, choices=(1, 3), help="image channels (default: the config's, else 3; "
                    "1 with model auto: the 28 px digit pair)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--amp", choices=("off", "on", "both"), default="both" if bf16_is_fast(torch.device("cpu")) else "off")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/profile-photos")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    file_values = tomllib.loads(Path(args.config).read_text())
    file_values.pop("sweep", None)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    device = torch.device("cpu")
    results = []
    for amp in {"off": [False], "on": [True], "both": [False, True]}[args.amp]:
        cfg = resolve(file_values, {**overrides, "amp": amp, "progress": False})
        channels = args.channels or cfg.channels or 3
        # model "auto": the network for these channels; no data is read (the batches are random)
        cfg = make_plan(cfg, Source("random batches", channels, None, cfg.num_classes or 10)).config
        sgan = measure(cfg, method_name=args.method, channels=channels, device=device, warmup=args.warmup,
                       steps=args.steps, parts=True)
        base = measure(cfg, method_name=args.baseline, channels=channels, device=device, warmup=args.warmup,
                       steps=args.steps, parts=False)
        results.append({"dtype": "bf16 autocast" if amp else "float32", "sgan": sgan, "supervised": base,
                        "ratio": sgan["median_step_s"] / base["median_step_s"]})
        print(table(results[-1:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": args.config, "overrides": overrides, "batch_size": cfg.batch_size, "image_size": cfg.image_size,
            "model": cfg.model, "threads": args.threads, **machine.describe(),
            "amx": bf16_is_fast(device), "steps": args.steps, "warmup": args.warmup}
    (out / "profile.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (out / "profile.md").write_text(f"{json.dumps(meta)}\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
