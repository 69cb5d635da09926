"""The one training loop: every method in the config, on the same data, into one run folder."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import make_grid
from tqdm import tqdm

from .checkpoint import atomic_write_text, csv_text, load_state, save_state, save_weights
from .config import Config, load_run_config, resolve
from .data import Prepared, prepare
from .data.stream import InMemoryBatches, IndexStream, StreamedBatches, StreamedFolder
from .errors import SganError
from .data.transforms import random_affine
from .distributed import (Ranks, agree, broadcast, check_in_step, data_parallel, process_group, rank_device,
                          gather, rank_seed, ranks_from_env, shard)
from .evaluate import TrainedClassifier, accuracy, adapt_batchnorm, confusion_accuracy, diagnose, write_submission
from .methods import METHOD_SPECS, Method, build_method
from .report import plot_losses, save_sample_grid, write_html_report


SHOWN_LOSSES = ("loss_d", "loss_g", "loss_sup")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SganError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def make_run_dir(out: str | None, *, overwrite: bool) -> Path:
    path = Path(out) if out else default_run_dir()
    if path.exists() and not path.is_dir():
        raise SganError(f"{path}: output path is a file")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise SganError(f"{path}: run folder already exists and is not empty (use --overwrite)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lr_schedules(method: Method, cfg: Config) -> list[torch.optim.lr_scheduler.LRScheduler]:
    """One per optimizer, stepped once per iteration; "constant" needs none."""
    if cfg.lr_schedule == "constant":
        return []
    return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations) for opt in method.optimizers()]


def protocol_of(cfg: Config, data: Prepared) -> dict[str, Any]:
    return {
        "data": cfg.data, "preset": cfg.preset, "n_labeled": len(data.split.labeled), "labels_csv": cfg.labels_csv,
        "seed": cfg.seed,
        "iterations": cfg.iterations, "batch_size": cfg.batch_size,
        "unlabeled": cfg.unlabeled or "pool", "transductive": cfg.unlabeled in cfg.eval,
        "selection": ("best validation accuracy" if cfg.select == "best_val" else "final weights")
                     + (f", EMA {cfg.ema}" if cfg.ema else ""),
        "adabn": cfg.adabn, "pseudo_label_weight": cfg.pseudo_label_weight, "counts": data.summary, "sets": data.describe(),
        "classes": data.classes,
    }


class Interrupted(Exception):
    """SIGINT/SIGTERM: the step finished and a checkpoint was written."""

    def __init__(self, signum: int, step: int, run_dir: Path, *, quiet: bool = False) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint written, "
                         f"continue with: sgan train --resume {run_dir}")
        self.signum = signum
        self.quiet = quiet  # data-parallel ranks other than 0: rank 0 says it


def host_rng_state() -> dict[str, Any]:
    """Python's and numpy's global generators, as JSON. Training does not use them; a resumed
    process continues them anyway."""
    kind, key, *rest = np.random.get_state()  # ("MT19937", key array, pos, has_gauss, cached_gaussian)
    return {"python": random.getstate(), "numpy": [kind, key.tolist(), *rest]}


def set_host_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), *rest))


class Checkpointer:
    """The run's one checkpoint file: finished methods' results, and the running method's
    networks, optimizers, schedules, EMA, best weights, RNG states and batch order."""

    def __init__(self, run_dir: Path, log: TextIO, cfg: Config, ranks: Ranks) -> None:
        self.path, self.log, self.cfg, self.ranks = run_dir / "checkpoint.safetensors", log, cfg, ranks
        self.done: dict[str, Any] = {}
        self.stop_signal: int | None = None  # set by the signal handler, acted on between steps

    def save(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if not self.ranks.main:  # the ranks hold the same weights; one copy is written
            return
        self.log.flush()
        save_state(self.path, tensors, {**state, "done": self.done, "log_bytes": self.log.tell(),
                                        "config": self.cfg.to_dict(), "rng_host": host_rng_state()})


def rank_prefix(rank: int) -> str:
    """Checkpoint names of a data-parallel rank's own state: rank 0's keep the single-process names."""
    return "" if rank == 0 else f"rank{rank}."


def tensorboard_writer(run_dir: Path, method: str) -> Any:
    """torch's SummaryWriter for one method's event files, under tensorboard/<method>."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SganError("tensorboard logs need the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard" / method))


def write_skipped(run_dir: Path, skipped: list[tuple[str, str]]) -> None:
    """skipped_files.csv (file, reason) and one warning line."""
    skipped = sorted(set(skipped))
    atomic_write_text(run_dir / "skipped_files.csv", csv_text(["file", "reason"], skipped))
    print(f"sgan: warning: skipped {len(skipped)} image files that could not be decoded "
          f"(listed in {run_dir / 'skipped_files.csv'})", file=sys.stderr)


def train_method(name: str, cfg: Config, data: Prepared, device: torch.device, run_dir: Path,
                 log: TextIO, ckpt: Checkpointer, resume: tuple[dict, dict] | None = None,
                 ranks: Ranks = Ranks()) -> dict[str, Any]:
    """One method's training loop; under torchrun every rank runs it on its shard and rank 0
    evaluates, checkpoints and saves (the other ranks return an empty result)."""
    spec = METHOD_SPECS[name]
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def affine(x: torch.Tensor) -> torch.Tensor:  # training batches only, never evaluation sets
        return random_affine(x, degrees=cfg.aug_degrees, translate=cfg.aug_translate, scale=cfg.aug_scale,
                             generator=aug_gen)

    def augment(x: torch.Tensor) -> torch.Tensor:
        return affine(x) if spec.conventional else x

    torch.manual_seed(cfg.seed)
    # the pseudo-label view is one more draw of the augmentation (twice its ranges was too strong:
    # 87.0 vs 89.0% on Dig-MNIST at n = 1,000, seed 0, see the README)
    method = build_method(name, cfg, channels=data.channels, num_classes=data.num_classes, device=device,
                          strong_augment=affine, wrap=partial(data_parallel, ranks=ranks))
    gen = torch.Generator().manual_seed(cfg.seed)
    x_lb, y_lb, x_ulb = data.labeled.x, data.labeled.y, data.x_ulb
    if ranks.parallel:  # every rank trains on its own shard
        lb_shard, ulb_shard = shard(len(x_lb), ranks), shard(len(x_ulb), ranks)
        x_lb, y_lb = x_lb[lb_shard], y_lb[lb_shard]
        x_ulb = x_ulb[ulb_shard] if isinstance(x_ulb, torch.Tensor) else x_ulb.subset(ulb_shard)
    streamed = isinstance(x_ulb, StreamedFolder)
    # a streamed folder's batches are drawn ahead of use, so they get a generator of their own
    ulb_gen = torch.Generator().manual_seed(cfg.seed + 2) if streamed else gen
    lb_stream = IndexStream(len(x_lb), cfg.batch_size, gen)
    ulb_stream = IndexStream(len(x_ulb), cfg.batch_size, ulb_gen)
    schedules = lr_schedules(method, cfg)
    x_lb, y_lb = x_lb.to(device), y_lb.to(device)
    x_val, y_val = data.evals["val"].x, data.evals["val"].y
    # the network that is evaluated and saved: the classifier itself or its moving average
    scored = method.classifier
    if cfg.ema > 0:
        scored = AveragedModel(method.classifier, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    generator = getattr(method, "generator", None)
    fixed_noise = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    samples_dir = run_dir / "samples" / name

    best: dict[str, Any] = {"val": -1.0, "step": 0, "state": None}  # for select = "best_val"
    tb = tensorboard_writer(run_dir, name) if cfg.tensorboard and ranks.main else None

    def snapshot(step: int) -> dict[str, float]:
        row = {"method": name, "step": step, "val": accuracy(scored, x_val, y_val)}
        if cfg.select == "best_val" and row["val"] > best["val"]:
            best.update(val=row["val"], step=step,
                        state={k: v.detach().clone() for k, v in scored.state_dict().items()})
        if generator is not None:
            samples_dir.mkdir(parents=True, exist_ok=True)
            with torch.no_grad():
                generator.eval()
                fake = generator(fixed_noise)  # (64, C, H, W)
                generator.train()
            save_sample_grid(fake, samples_dir / f"step_{step:07d}.png")
            if tb is not None:
                tb.add_image("samples", make_grid(fake.float().cpu(), nrow=8, normalize=True, value_range=(-1, 1)), step)
        if tb is not None:
            tb.add_scalar("val_accuracy", row["val"], step)
        log.write(json.dumps(row) + "\n")
        return row

    parts = {**method.modules(), **({"ema": scored} if scored is not method.classifier else {})}

    def capture(step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"{part}.{k}": v for part, m in parts.items() for k, v in m.state_dict().items()}
        opt_states = [opt.state_dict() for opt in method.optimizers()]
        for i, sd in enumerate(opt_states):
            tensors.update({f"opt{i}.{p}.{k}": v for p, st in sd["state"].items() for k, v in st.items()})
        if best["state"] is not None:
            tensors.update({f"best.{k}": v for k, v in best["state"].items()})
        state = {"method": name, "step": step, "train_seconds": train_seconds,
                 "param_groups": [sd["param_groups"] for sd in opt_states],
                 "schedules": [sch.state_dict() for sch in schedules],
                 "best": {"val": best["val"], "step": best["step"]}, "world": ranks.world}
        everyone = gather(rank_state(), ranks)  # so that a data-parallel run resumes exactly too
        if everyone is not None:  # rank 0, the one that writes
            for rank, (rng, _) in enumerate(everyone):
                tensors.update({rank_prefix(rank) + k: v for k, v in rng.items()})
            state["order"], state["rank_orders"] = everyone[0][1], [order for _, order in everyone[1:]]
        return tensors, state

    def rank_state() -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
        """What differs between data-parallel ranks: random generators and the batches to come."""
        rng = {"rng.torch": torch.get_rng_state(), "rng.batches": gen.get_state(), "rng.aug": aug_gen.get_state(),
               "rng.ulb_batches": ulb_gen.get_state()}
        if device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(device)
        return rng, {"lb": lb_stream.buffer.tolist(), "ulb": ulb_batches.to_come().tolist()}

    def restore(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> int:
        def under(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

        for part, m in parts.items():
            m.load_state_dict(under(part))
        for i, opt in enumerate(method.optimizers()):
            params = [p for group in opt.param_groups for p in group["params"]]
            per_param: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in under(f"opt{i}").items():
                p, key = k.split(".", 1)
                if v.shape == params[int(p)].shape:  # moments keep the parameter's layout (channels_last)
                    v = torch.empty_like(params[int(p)]).copy_(v)
                per_param.setdefault(int(p), {})[key] = v
            opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"][i]})
        for sch, sd in zip(schedules, state["schedules"]):
            sch.load_state_dict(sd)
        if under("best"):
            best.update(state["best"], state=under("best"))
        world = state.get("world", 1)  # checkpoints from before data-parallel resume: one process
        if world != ranks.world:  # the shards, and so the saved batch orders, depend on it
            raise SganError(f"{ckpt.path} was written by {world} process(es); resume it with as many "
                            f"(torchrun --nproc_per_node={world}, or none for 1)")
        mine = rank_prefix(ranks.rank)
        torch.set_rng_state(tensors[mine + "rng.torch"])
        set_host_rng_state(state["rng_host"])
        gen.set_state(tensors[mine + "rng.batches"])
        if mine + "rng.ulb_batches" in tensors:
            ulb_gen.set_state(tensors[mine + "rng.ulb_batches"])
        aug_gen.set_state(tensors[mine + "rng.aug"])
        if mine + "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors[mine + "rng.cuda"], device)
        order = state["order"] if ranks.main else state["rank_orders"][ranks.rank - 1]
        lb_stream.buffer = torch.tensor(order["lb"], dtype=torch.long)
        ulb_stream.buffer = torch.tensor(order["ulb"], dtype=torch.long)
        return state["step"]

    train_seconds, first = 0.0, 1
    if resume is not None:
        first = restore(*resume) + 1
        train_seconds = resume[1]["train_seconds"]
    if ranks.parallel and resume is None:  # same initial weights everywhere, but each rank its own noise,
        torch.manual_seed(rank_seed(cfg.seed, ranks))  # augmentation and batches
        gen.manual_seed(rank_seed(cfg.seed, ranks))
        aug_gen.manual_seed(rank_seed(cfg.seed + 1, ranks))
        if streamed:
            ulb_gen.manual_seed(rank_seed(cfg.seed + 2, ranks))
    # made after any restore: a streamed loader starts drawing batches as soon as it exists
    if not streamed:
        ulb_batches: InMemoryBatches | StreamedBatches = InMemoryBatches(x_ulb.to(device), ulb_stream)
    elif spec.base == "sgan":
        ulb_batches = StreamedBatches(x_ulb, ulb_stream, workers=cfg.loader_workers, device=device)
    else:  # the supervised twin never looks at unlabeled images: nothing to decode
        ulb_batches = InMemoryBatches(torch.empty(len(x_ulb), 0, device=device), ulb_stream)
    shown: dict[str, str] = {}  # the progress bar's short summary
    bar = tqdm(range(first, cfg.iterations + 1), desc=name, disable=not (cfg.progress and ranks.main), leave=False,
               mininterval=0.5, dynamic_ncols=True, initial=first - 1, total=cfg.iterations)
    for step in bar:
        start = time.perf_counter()
        i_lb, x_ulb_batch = lb_stream.next(), ulb_batches.next()
        if spec.base == "sgan":  # the supervised twin ignores unlabeled images
            x_ulb_batch = augment(x_ulb_batch)
        losses = method.train_step(augment(x_lb[i_lb]), y_lb[i_lb], x_ulb_batch)
        # the ranks stop together, at the step they agree on: a signal that lands after this is
        # acted on at the next step
        losses, stop = agree(losses, ckpt.stop_signal is not None, ranks, device)
        if bad := [k for k, v in losses.items() if not math.isfinite(v)]:
            raise SganError(f"{name}: {bad[0]} is {losses[bad[0]]} at step {step}; stopped, nothing written as "
                            f"final (the last good checkpoint is {ckpt.path})")
        if scored is not method.classifier:
            scored.update_parameters(method.classifier)
        for schedule in schedules:
            schedule.step()
        train_seconds += time.perf_counter() - start
        if step % cfg.log_every == 0:
            log.write(json.dumps({"method": name, "step": step, **losses}) + "\n")
            shown.update({k.removeprefix("loss_"): f"{losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses})
            if tb is not None:
                for key, value in losses.items():
                    tb.add_scalar(key, value, step)
            bar.set_postfix(shown, refresh=False)
        if ranks.main and (step % cfg.eval_every == 0 or step == cfg.iterations):
            shown["val"] = f"{snapshot(step)['val']:.3f}"
            bar.set_postfix(shown, refresh=False)
        log.flush()
        if step % cfg.checkpoint_every == 0 or stop:
            ckpt.save(*capture(step))
        if stop:  # another rank may have got the signal
            raise Interrupted(ckpt.stop_signal or signal.SIGTERM, step, run_dir, quiet=not ranks.main)
    bar.close()
    ulb_batches.close()
    if ulb_batches.skipped and ranks.main:
        write_skipped(run_dir, data.skipped + ulb_batches.skipped)
    if tb is not None:
        tb.close()
    check_in_step(method.classifier, ranks)
    if not ranks.main:
        return {}

    if best["state"] is not None:  # chosen on validation; test sets are scored once, below
        scored.load_state_dict(best["state"])
    diagnostics = {k: diagnose(scored, v.x, v.y) for k, v in data.evals.items()}
    save_state(run_dir / f"{name}_diagnostics.safetensors",
               {f"{k}.{part}": t for k, d in diagnostics.items() for part, t in d.items()}, {"sets": list(diagnostics)})
    result: dict[str, Any] = {k: confusion_accuracy(d["confusion"]) for k, d in diagnostics.items()}
    if cfg.adabn:  # reported under its own key: it looks at the evaluation images
        result.update({f"{k}+adabn": accuracy(adapt_batchnorm(scored, v.x), v.x, v.y) for k, v in data.evals.items()})
    result.update(train_seconds=round(train_seconds, 3), iterations=cfg.iterations,
                  selected_step=best["step"] if best["state"] is not None else cfg.iterations)
    modules = {**method.modules(), "classifier": getattr(scored, "module", scored)}
    for part, module in modules.items():
        save_weights(module, run_dir / f"{name}_{part}.safetensors", config=cfg.to_dict(),
                     shapes={"channels": data.channels, "num_classes": data.num_classes, "classes": data.classes,
                             "standardize": list(data.pool_stats) if spec.conventional else None})
    if generator is not None:  # the last step always took a snapshot
        shutil.copyfile(samples_dir / f"step_{cfg.iterations:07d}.png", run_dir / f"{name}_samples.png")
    return result


def train(cfg: Config | None = None, *, overwrite: bool = False, resume: str | Path | None = None,
          **overrides: Any) -> dict[str, Any]:
    """Train every configured method on the same split; returns (and writes) metrics.json's content.

    `train(data="train.csv", n_labeled=100)` or `train(cfg)`; keyword overrides win over `cfg`.
    `train(resume="runs/a")` continues a stopped or killed run from its last checkpoint.
    Under torchrun (RANK / WORLD_SIZE set) every process calls this; see distributed.py.
    """
    if resume is not None:
        cfg = load_run_config(resume)
        if (Path(resume) / "metrics.json").is_file():
            raise SganError(f"{resume}: run is complete (metrics.json exists); nothing to resume")
    else:
        cfg = resolve(overrides={**(cfg.to_dict() if cfg else {}), **overrides})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ranks = ranks_from_env()  # under torchrun: one process per device, data parallel
    device = rank_device(pick_device(cfg.device), ranks)
    data = prepare(cfg)
    with process_group(ranks, device):
        return train_all(cfg, data, device, ranks, overwrite=overwrite, resume=resume)


def create_run_dir(cfg: Config, data: Prepared, ranks: Ranks, *, overwrite: bool) -> Config:
    """Rank 0 makes the run folder and writes the resolved config and the split; every rank
    gets that config (its `out` the folder), or the same one-line error."""
    made: Config | str = ""
    if ranks.main:
        try:
            run_dir = make_run_dir(cfg.out, overwrite=overwrite)
            made = dataclasses.replace(cfg, out=str(run_dir), num_classes=data.num_classes)
            atomic_write_text(run_dir / "config.json", json.dumps(made.to_dict(), indent=2))
            atomic_write_text(run_dir / "split.json", json.dumps(data.split.to_dict()))
        except SganError as error:
            made = str(error)
    made = broadcast(made, ranks)
    if isinstance(made, str):
        raise SganError(made)
    return made


def train_all(cfg: Config, data: Prepared, device: torch.device, ranks: Ranks, *, overwrite: bool,
              resume: str | Path | None) -> dict[str, Any]:
    if resume is None:
        cfg = create_run_dir(cfg, data, ranks, overwrite=overwrite)
    run_dir = Path(resume if resume is not None else cfg.out)
    if data.skipped and ranks.main:
        write_skipped(run_dir, data.skipped)
    saved = load_state(run_dir / "checkpoint.safetensors") if resume and (run_dir / "checkpoint.safetensors").is_file() else None
    metrics: dict[str, Any] = {"protocol": protocol_of(cfg, data), "methods": {}}
    standardized = data.standardized() if any(METHOD_SPECS[m].conventional for m in cfg.methods) else None
    # only rank 0 writes the log; the others keep theirs in memory
    log_file = open(run_dir / "metrics.jsonl", "a+") if ranks.main else io.StringIO()
    with log_file as log, stop_on_signals() as ckpt_signal:
        log.truncate(saved[1]["log_bytes"] if saved else 0)  # lines after the checkpoint are redone
        log.seek(0, os.SEEK_END)
        ckpt = Checkpointer(run_dir, log, cfg, ranks)
        ckpt_signal.append(ckpt)
        ckpt.done = dict(saved[1]["done"]) if saved else {}
        for name in cfg.methods:
            if name not in ckpt.done:
                method_data = standardized if METHOD_SPECS[name].conventional else data
                here = saved if saved and saved[1].get("method") == name else None
                ckpt.done[name] = train_method(name, cfg, method_data, device, run_dir, log, ckpt, here, ranks)
                ckpt.save({}, {"method": None})
            metrics["methods"][name] = ckpt.done[name]
    if not ranks.main:
        return metrics
    plot_losses(run_dir / "metrics.jsonl", run_dir / "losses.png")
    if cfg.submit:
        best = max(metrics["methods"], key=lambda m: metrics["methods"][m]["val"])
        classifier = TrainedClassifier(run_dir, best)
        test = classifier.read(cfg.test_data)
        write_submission(run_dir / "submission.csv", test, classifier.predict(test).tolist())
        metrics["protocol"]["submission_method"] = best
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))  # marks completion
    write_html_report(run_dir)  # from the folder's files alone, as `sgan report` rebuilds it
    return metrics


@contextmanager
def stop_on_signals() -> Iterator[list[Checkpointer]]:
    """SIGINT and SIGTERM ask the running method to finish its step, checkpoint and stop
    (only where handlers can be set: the main thread)."""
    holder: list[Checkpointer] = []

    def handler(signum: int, frame: Any) -> None:
        for ckpt in holder:
            ckpt.stop_signal = signum

    if threading.current_thread() is not threading.main_thread():
        yield holder
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield holder
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
