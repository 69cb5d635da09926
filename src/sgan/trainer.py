"""The one training loop: every method in the config, on the same data, into one run folder."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, TextIO

import torch
from torch import nn
from tqdm import tqdm

from .files import atomic
from .config import Config, resolve
from .data import Prepared, prepare
from .data.batches import StreamedFolder, TrainingBatches
from .distributed import (Ranks, agree, broadcast, check_in_step, data_parallel, process_group, rank_device,
                          ranks_from_env, shard)
from .errors import Interrupted, SganError, WriteError, on_signals, pause_point
from .evaluate import accuracy, evaluate, load, write_submission
from .methods import Method, augmentation, build_method
from .methods.base import moving_average
from .models import evaluated
from .registry import REGISTRY
from .report import plot_losses, sample_grid, save_sample_grid, write_html_report
from .plan import Plan, make_plan
from .run import MethodResult, Metrics, RunFolder, RunProtocol, WeightsInfo
from .state import Checkpoint, RandomStreams, Saved, TrainingState, read_checkpoint

SHOWN_LOSSES = ("loss_d", "loss_g", "loss_sup")


def lr_schedules(method: Method, cfg: Config) -> list[torch.optim.lr_scheduler.LRScheduler]:
    """One per optimizer, stepped once per iteration; "constant" needs none."""
    if cfg.lr_schedule == "constant":
        return []
    return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations) for opt in method.optimizers()]


def protocol_of(cfg: Config, data: Prepared) -> RunProtocol:
    return RunProtocol(
        data=cfg.data, preset=cfg.preset, n_labeled=len(data.split.labeled), labels_csv=cfg.labels_csv,
        seed=cfg.seed, iterations=cfg.iterations, batch_size=cfg.batch_size,
        unlabeled=("pool+" if cfg.unlabeled_plus_pool else "") + (cfg.unlabeled or "pool"),
        transductive=cfg.unlabeled in cfg.eval,
        selection=("best validation accuracy" if cfg.select == "best_val" else "final weights")
        + (f", EMA {cfg.ema}" if cfg.ema else ""),
        adabn=cfg.adabn, pseudo_label_weight=cfg.pseudo_label_weight, counts=data.summary, sets=data.describe(cfg.num_classes),
        classes=data.classes)


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM, acted on between steps."""

    signum: int | None = None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask the running method to finish its step, checkpoint and stop."""
    stop = StopRequest()
    with on_signals(lambda signum, frame: setattr(stop, "signum", signum)):
        yield stop


def warn_skipped(run: RunFolder, skipped: list[tuple[str, str]]) -> None:
    count = run.write_skipped(skipped)
    print(f"sgan: warning: skipped {count} image files that could not be decoded "
          f"(listed in {run.skipped})", file=sys.stderr)


@dataclass
class Context:
    """One run in progress, what every method's training reads: the plan, its data, the run
    folder, this process's device and rank, the log, the checkpoint and the stop flag."""

    plan: Plan
    data: Prepared
    run: RunFolder
    device: torch.device
    ranks: Ranks
    log: TextIO  # metrics.jsonl on rank 0, memory on the others
    ckpt: Checkpoint
    stop: StopRequest

    @property
    def cfg(self) -> Config:
        return self.plan.config


class Monitor:
    """What a method's training shows and keeps on rank 0: loss lines and validation checks in
    metrics.jsonl, the best weights so far, sample grids of a fixed noise batch, TensorBoard."""

    def __init__(self, ctx: Context, training: TrainingState) -> None:
        self.ctx, self.training, self.cfg, self.name = ctx, training, ctx.cfg, training.name
        self.fixed_noise = torch.randn(64, self.cfg.z_dim,
                                       generator=torch.Generator().manual_seed(self.cfg.seed)).to(training.device)
        self.tb = self.tensorboard() if self.cfg.tensorboard and ctx.ranks.main else None

    def tensorboard(self) -> Any:
        """torch's SummaryWriter for this method's event files."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SganError("tensorboard logs need the tensorboard package: pip install tensorboard") from None
        return SummaryWriter(log_dir=str(self.ctx.run.tensorboard(self.name)))

    def losses(self, step: int, losses: dict[str, float]) -> None:
        self.ctx.log.write(json.dumps({"method": self.name, "step": step, **losses}) + "\n")
        if self.tb is not None:
            for key, value in losses.items():
                self.tb.add_scalar(key, value, step)

    def validate(self, step: int) -> float:
        """Validation accuracy now; the best weights so far and a sample grid kept."""
        training, val_set = self.training, self.ctx.data.evals["val"]
        val = accuracy(evaluated(self.cfg, training.scored), val_set.x, val_set.y)
        if self.cfg.select == "best_val":
            training.best.offer(val, step, training.scored)
        generator = training.method.generator
        if generator is not None:
            with torch.no_grad():
                generator.eval()
                fake = generator(self.fixed_noise)  # (64, C, H, W)
                generator.train()
            path = self.ctx.run.sample_grid(self.name, step)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_sample_grid(fake, path)
            if self.tb is not None:
                self.tb.add_image("samples", sample_grid(fake, 8), step)
        if self.tb is not None:
            self.tb.add_scalar("val_accuracy", val, step)
        # seconds: training time so far, without evaluations (what time-to-accuracy measures)
        self.ctx.log.write(json.dumps({"method": self.name, "step": step, "val": val,
                                       "seconds": round(training.train_seconds, 3)}) + "\n")
        return val

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def start_method(ctx: Context, name: str, saved: tuple[dict, dict] | None) -> TrainingState:
    """A method's networks, optimizers, schedules, generators and batches, from the seed or from
    a checkpoint. Every rank builds the same initial networks, then trains on its own shard."""
    cfg, data, ranks = ctx.cfg, ctx.data, ctx.ranks
    streams = RandomStreams.seeded(cfg.seed, streamed=isinstance(data.x_ulb, StreamedFolder))
    torch.manual_seed(cfg.seed)
    method = build_method(name, cfg, device=ctx.device, augment=augmentation(cfg, streams.aug),
                          wrap=partial(data_parallel, ranks=ranks))
    x_lb, y_lb, x_ulb = data.labeled.x, data.labeled.y, data.x_ulb
    if ranks.parallel:  # every rank trains on its own shard
        lb_shard, ulb_shard = shard(len(x_lb), ranks), shard(len(x_ulb), ranks)
        x_lb, y_lb = x_lb[lb_shard], y_lb[lb_shard]
        x_ulb = x_ulb[ulb_shard] if isinstance(x_ulb, torch.Tensor) else x_ulb.subset(ulb_shard)
    batches = TrainingBatches(x_lb, y_lb, x_ulb, batch_size=cfg.batch_size, lb_generator=streams.batches,
                              ulb_generator=streams.ulb_batches, use_ulb=REGISTRY[name].uses_unlabeled,
                              workers=cfg.loader_workers, device=ctx.device)
    scored: nn.Module = method.classifier
    if cfg.ema > 0:
        scored = moving_average(method.classifier, cfg.ema)
    training = TrainingState(name, method, scored, lr_schedules(method, cfg), streams, batches, ranks, ctx.device)
    if saved is not None:
        training.restore(*saved)
    elif ranks.parallel:
        streams.reseed(cfg.seed, ranks)
    return training


def train_method(ctx: Context, training: TrainingState) -> MethodResult | None:
    """One method's training loop; under torchrun every rank runs it on its shard and rank 0
    evaluates, checkpoints and saves (the other ranks return None)."""
    cfg, name, method, ranks = ctx.cfg, training.name, training.method, ctx.ranks
    monitor = Monitor(ctx, training)
    shown: dict[str, str] = {}  # the progress bar's short summary
    bar = tqdm(range(training.step + 1, cfg.iterations + 1), desc=name, leave=False, mininterval=0.5,
               dynamic_ncols=True, initial=training.step, total=cfg.iterations,
               disable=not (cfg.progress and ranks.main))
    for step in bar:
        start = time.perf_counter()
        losses = method.train_step(*training.batches.next())
        # the ranks stop together, at the step they agree on: a signal that lands after this is
        # acted on at the next step
        losses, stopping = agree(losses, ctx.stop.signum is not None, ranks, training.device)
        if bad := [k for k, v in losses.items() if not math.isfinite(v)]:
            last = f"the last good checkpoint is {ctx.ckpt.path}" if ctx.ckpt.path.is_file() else \
                "no checkpoint written yet"
            raise SganError(f"{name}: {bad[0]} is {losses[bad[0]]} at step {step}; stopped, nothing written as "
                            f"final ({last})")
        rates = dict(zip(("lr", "lr_g"), (opt.param_groups[0]["lr"] for opt in method.optimizers())))  # this step's
        training.after_step(step, started=start)  # the schedules move on
        if step % cfg.log_every == 0:
            monitor.losses(step, {**losses, **rates})
            shown.update({k.removeprefix("loss_"): f"{losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses})
        if ranks.main and (step % cfg.eval_every == 0 or step == cfg.iterations):
            shown["val"] = f"{monitor.validate(step):.3f}"
        bar.set_postfix(shown, refresh=False)
        ctx.log.flush()
        if step % cfg.checkpoint_every == 0 or stopping:
            ctx.ckpt.save(training)
        if stopping:  # another rank may have got the signal
            raise Interrupted(ctx.stop.signum or signal.SIGTERM, f"after step {step}; checkpoint written, continue "
                              f"with: sgan train --resume {ctx.run.path}", quiet=not ranks.main)
        pause_point("training")  # a signal here is acted on after the next step
    bar.close()
    training.batches.close()
    monitor.close()
    if training.batches.skipped and ranks.main:
        warn_skipped(ctx.run, ctx.data.skipped + training.batches.skipped)
    check_in_step(method.classifier, ranks)
    return finish_method(ctx, training) if ranks.main else None


def finish_method(ctx: Context, training: TrainingState) -> MethodResult:
    """The kept weights (best on validation, or the last) scored once on every evaluation set;
    weights, diagnostics and the last sample grid written."""
    cfg, run, data = ctx.cfg, ctx.run, ctx.data
    name, scored, best = training.name, training.scored, training.best
    if best.weights is not None:  # chosen on validation; test sets are scored once, here
        scored.load_state_dict(best.weights)
    accuracies, diagnostics = evaluate(evaluated(cfg, scored), data.evals, adabn=cfg.adabn,
                                       set_std=data.pool_stats if cfg.set_std else None)
    run.write_diagnostics(name, diagnostics)
    info = WeightsInfo(channels=cfg.channels, num_classes=cfg.num_classes, classes=data.classes,
                       input_stats=list(data.pool_stats))
    averaged = {"ema": scored.module} if scored is not training.method.classifier else {}  # an AveragedModel
    for part, module in {**training.method.modules(), **averaged}.items():  # the raw classifier and the EMA's
        run.write_weights(name, part, module, cfg=cfg, info=info)
    if training.method.generator is not None:  # the last step always took a snapshot
        with atomic(run.final_samples(name)) as tmp:
            shutil.copyfile(run.sample_grid(name, cfg.iterations), tmp)
    return MethodResult(accuracies, train_seconds=round(training.train_seconds, 3), iterations=cfg.iterations,
                        selected_step=best.step if best.weights is not None else cfg.iterations)


def train(cfg: Config | Plan | None = None, *, overwrite: bool = False, resume: str | Path | None = None,
          **overrides: Any) -> Metrics:
    """Train every configured method on the same split; returns (and writes) metrics.json's content.

    `train(data="train.csv", n_labeled=100)` or `train(cfg)`; keyword overrides win over `cfg`;
    or `train(plan)`, a plan made by `sgan.plan.make_plan`. `train(resume="runs/a")` continues a
    stopped or killed run from its last checkpoint, with the plan made again from its config.json.
    Under torchrun (RANK / WORLD_SIZE set) every process calls this; see distributed.py.
    """
    if isinstance(cfg, Plan) and (overrides or resume is not None):
        raise SganError("train(plan) takes the plan as made; give it no other settings")
    ranks = ranks_from_env()  # under torchrun: one process per device, data parallel; rank 0 writes
    if resume is not None:
        folder = RunFolder(resume)
        with folder.in_use() if ranks.main else nullcontext():
            if folder.is_complete():
                raise SganError(f"{resume}: run is complete (metrics.json exists); nothing to resume")
            return run_plan(make_plan(folder.read_config()), folder, ranks, overwrite=False, resume=True)
    plan = cfg if isinstance(cfg, Plan) else make_plan(resolve(overrides={**(cfg.to_dict() if cfg else {}),
                                                                          **overrides}))
    folder = RunFolder(plan.config.out)
    with folder.in_use() if ranks.main else nullcontext():
        folder.check_target(overwrite=overwrite)  # a folder that cannot take the run: refused before the images
        return run_plan(plan, folder, ranks, overwrite=overwrite, resume=False)


def run_plan(plan: Plan, folder: RunFolder, ranks: Ranks, *, overwrite: bool, resume: bool) -> Metrics:
    """train() inside its folder, this process its one writer: the images prepared, then every method."""
    if plan.config.threads:
        torch.set_num_threads(plan.config.threads)
    if plan.chosen and ranks.main:
        print(plan.chosen, file=sys.stderr)
    data = prepare(plan.config, plan.pool)
    pause_point("prepared")
    device = rank_device(torch.device(plan.device), ranks)
    with process_group(ranks, device):
        try:
            return train_all(plan, data, folder, device, ranks, overwrite=overwrite, resume=resume)
        except (WriteError, OSError) as e:  # e.g. the disk filled up: what was kept can be resumed
            what = str(e) if isinstance(e, WriteError) else f"{e.filename or folder.path}: {e.strerror or e}"
            hint = f"; the run is incomplete, continue it with: sgan train --resume {folder.path}" \
                if folder.config.is_file() else ""
            raise SganError(what + hint) from None


def create_run(plan: Plan, data: Prepared, ranks: Ranks, *, overwrite: bool) -> RunFolder:
    """Rank 0 makes the run folder and writes the plan's config and the split; every rank gets
    rank 0's folder (a default one is named by the clock, which the ranks read apart), or the same
    one-line error."""
    error = ""
    if ranks.main:
        try:
            run = RunFolder.create(plan.config.out, overwrite=overwrite)
            run.write_config(plan.config)
            run.write_split(data.split.to_dict())
        except SganError as e:
            error = str(e)
    error, out = broadcast((error, plan.config.out), ranks)
    if error:
        raise SganError(error)
    return RunFolder(out)


def train_all(plan: Plan, data: Prepared, run: RunFolder, device: torch.device, ranks: Ranks, *, overwrite: bool,
              resume: bool) -> Metrics:
    """Every method of the plan in turn into `run`, each resumed where the checkpoint left it;
    metrics.json last."""
    cfg = plan.config
    if not resume:
        run = create_run(plan, data, ranks, overwrite=overwrite)
    if data.skipped and ranks.main:
        warn_skipped(run, data.skipped)
    fingerprint = data.fingerprint()
    saved = read_checkpoint(run.checkpoint, ranks, cfg, fingerprint) if resume else None
    if resume and ranks.main:
        say_resumed(run, saved)
    # only rank 0 writes the log; the others keep theirs in memory
    with (open(run.log, "a+") if ranks.main else io.StringIO()) as log, stop_on_signals() as stop:
        log.truncate(saved.log_bytes if saved else 0)  # lines after the checkpoint are redone
        log.seek(0, os.SEEK_END)
        ckpt = Checkpoint(run.checkpoint, cfg, log, ranks, done=saved.done if saved else {}, data=fingerprint)
        ctx = Context(plan, data, run, device, ranks, log, ckpt, stop)
        for name in cfg.methods:
            if name in ckpt.done:
                continue
            if stop.signum is not None:  # a signal while the last method was scored
                raise Interrupted(stop.signum, f"before {name}; continue with: sgan train --resume {run.path}",
                                  quiet=not ranks.main)
            training = start_method(ctx, name, saved.of(name) if saved else None)
            result = train_method(ctx, training)
            ckpt.done[name] = result.to_json() if result else {}
            ckpt.save()
    metrics = Metrics(protocol_of(cfg, data), {})
    if not ranks.main:
        return metrics
    metrics.methods = {name: MethodResult.from_json(ckpt.done[name]) for name in cfg.methods}
    return finish_run(cfg, run, metrics)


def say_resumed(run: RunFolder, saved: Saved | None) -> None:
    where = "from the start: no checkpoint was written" if saved is None else (
        f"{saved.state['method']} from step {saved.state['step']}" if saved.state.get("method") else "at its next method")
    done = f" ({', '.join(saved.done)} finished)" if saved and saved.done else ""
    print(f"sgan: resuming {run}: {where}{done}", file=sys.stderr)


def finish_run(cfg: Config, run: RunFolder, metrics: Metrics) -> Metrics:
    """The losses plot, the submission, metrics.json (which marks the run complete), the report."""
    plot_losses(run.log, run.losses_plot)
    if cfg.submit:
        best = max(metrics.methods, key=lambda m: metrics.methods[m].accuracy["val"])
        classifier = load(run.path, method=best)
        test = classifier.read(cfg.test_data)
        write_submission(run.submission, test, classifier.predict(test).tolist())
        metrics.protocol.submission_method = best
    run.write_metrics(metrics)
    write_html_report(run.path)  # from the folder's files alone, as `sgan report` rebuilds it
    return metrics
