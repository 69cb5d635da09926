"""The training state: what a checkpoint holds, how its entries are named, captured and restored,
for one process and for torchrun ranks. The loop asks it to save and restore and knows no names.

The run's one checkpoint file (checkpoint.py writes it: safetensors, JSON metadata, no pickle):
- always, in its JSON: `done` (finished methods' metrics.json entries), `log_bytes` (how much of
  metrics.jsonl they account for), `config`, `data` (a fingerprint of the data it was trained on),
  `rng_host` (Python's and numpy's generators), and
  `method`: the method in progress, or null between methods;
- for the method in progress, tensors: `<part>.<key>` for each network (classifier, generator,
  ema), `opt<i>.<param>.<key>` Adam's moments, `best.<key>` the best weights so far, and each
  rank's generators `[rank<r>.]rng.{torch,batches,aug,ulb_batches,cuda}` (rank 0 unprefixed);
  in JSON: `step`, `train_seconds`, `param_groups`, `schedules`, `best` (val, step), `world`,
  `order` and `rank_orders` (the batch indices still to come, per rank).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import torch
from torch import nn

from .checkpoint import load_state, save_state
from .config import PLANNED_KEYS, Config
from .distributed import Ranks, gather, rank_seed
from .errors import SganError
from .methods import Method

Tensors = dict[str, torch.Tensor]


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


def rank_prefix(rank: int) -> str:
    """Names of a data-parallel rank's own entries: rank 0's keep the single-process names."""
    return "" if rank == 0 else f"rank{rank}."


def under(tensors: Tensors, prefix: str) -> Tensors:
    """The entries named `prefix.<key>`, by key."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


@dataclass
class RandomStreams:
    """A rank's random generators besides torch's global one (noise, dropout, initial weights):
    labeled batch order, augmentation draws, and the unlabeled batch order, which is the labeled
    one's generator unless a streamed folder draws its batches ahead."""

    batches: torch.Generator
    aug: torch.Generator
    ulb_batches: torch.Generator

    @classmethod
    def seeded(cls, seed: int, *, streamed: bool) -> "RandomStreams":
        batches = torch.Generator().manual_seed(seed)
        return cls(batches, torch.Generator().manual_seed(seed + 1),
                   torch.Generator().manual_seed(seed + 2) if streamed else batches)

    def reseed(self, seed: int, ranks: Ranks) -> None:
        """Data-parallel ranks: the same initial weights, then each its own noise, views and batches."""
        torch.manual_seed(rank_seed(seed, ranks))
        self.batches.manual_seed(rank_seed(seed, ranks))
        self.aug.manual_seed(rank_seed(seed + 1, ranks))
        if self.ulb_batches is not self.batches:
            self.ulb_batches.manual_seed(rank_seed(seed + 2, ranks))

    def capture(self, device: torch.device) -> Tensors:
        rng = {"rng.torch": torch.get_rng_state(), "rng.batches": self.batches.get_state(),
               "rng.aug": self.aug.get_state(), "rng.ulb_batches": self.ulb_batches.get_state()}
        if device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(device)
        return rng

    def restore(self, tensors: Tensors, prefix: str, device: torch.device) -> None:
        torch.set_rng_state(tensors[prefix + "rng.torch"])
        self.batches.set_state(tensors[prefix + "rng.batches"])
        self.ulb_batches.set_state(tensors[prefix + "rng.ulb_batches"])
        self.aug.set_state(tensors[prefix + "rng.aug"])
        if prefix + "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors[prefix + "rng.cuda"], device)


@dataclass
class BestWeights:
    """With select = "best_val": the weights with the best validation accuracy so far."""

    val: float = -1.0
    step: int = 0
    weights: Tensors | None = None

    def offer(self, val: float, step: int, module: nn.Module) -> None:
        if val > self.val:
            self.val, self.step = val, step
            self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}


class BatchOrder(Protocol):
    """The batches still to come, as index lists per kind ("lb", "ulb"): data/batches.py's TrainingBatches."""

    def order(self) -> dict[str, list[int]]: ...

    def set_order(self, order: dict[str, list[int]]) -> None: ...


@dataclass
class TrainingState:
    """One method's training in progress: everything a checkpoint must hold to continue it exactly."""

    name: str
    method: Method
    scored: nn.Module  # what is evaluated and saved: the classifier, or its moving average
    schedules: list[torch.optim.lr_scheduler.LRScheduler]
    streams: RandomStreams
    batches: BatchOrder
    ranks: Ranks
    device: torch.device
    best: BestWeights = field(default_factory=BestWeights)
    step: int = 0  # the last step taken
    train_seconds: float = 0.0

    def after_step(self, step: int, *, started: float) -> None:
        """The moving average and the learning rates follow the step just taken (begun at
        `started`, a time.perf_counter() reading)."""
        if self.scored is not self.method.classifier:
            self.scored.update_parameters(self.method.classifier)
        for schedule in self.schedules:
            schedule.step()
        self.step, self.train_seconds = step, self.train_seconds + time.perf_counter() - started

    def parts(self) -> dict[str, nn.Module]:
        return {**self.method.modules(), **({"ema": self.scored} if self.scored is not self.method.classifier else {})}

    def capture(self) -> tuple[Tensors, dict[str, Any]] | None:
        """Every rank takes part (its generators and batch order are gathered); rank 0 gets the
        checkpoint's tensors and JSON, the others None."""
        everyone = gather((self.streams.capture(self.device), self.batches.order()), self.ranks)
        if everyone is None:
            return None
        tensors = {f"{part}.{k}": v for part, m in self.parts().items() for k, v in m.state_dict().items()}
        opt_states = [opt.state_dict() for opt in self.method.optimizers()]
        for i, sd in enumerate(opt_states):
            tensors.update({f"opt{i}.{p}.{k}": v for p, st in sd["state"].items() for k, v in st.items()})
        if self.best.weights is not None:
            tensors.update({f"best.{k}": v for k, v in self.best.weights.items()})
        for rank, (rng, _) in enumerate(everyone):
            tensors.update({rank_prefix(rank) + k: v for k, v in rng.items()})
        state = {"method": self.name, "step": self.step, "train_seconds": self.train_seconds,
                 "param_groups": [sd["param_groups"] for sd in opt_states],
                 "schedules": [sch.state_dict() for sch in self.schedules],
                 "best": {"val": self.best.val, "step": self.best.step}, "world": self.ranks.world,
                 "order": everyone[0][1], "rank_orders": [order for _, order in everyone[1:]]}
        return tensors, state

    def restore(self, tensors: Tensors, state: dict[str, Any]) -> None:
        for part, m in self.parts().items():
            m.load_state_dict(under(tensors, part))
        for i, opt in enumerate(self.method.optimizers()):
            params = [p for group in opt.param_groups for p in group["params"]]
            per_param: dict[int, Tensors] = {}
            for k, v in under(tensors, f"opt{i}").items():
                p, key = k.split(".", 1)
                if v.shape == params[int(p)].shape:  # moments keep the parameter's layout (channels_last)
                    v = torch.empty_like(params[int(p)]).copy_(v)
                per_param.setdefault(int(p), {})[key] = v
            opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"][i]})
        for sch, sd in zip(self.schedules, state["schedules"]):
            sch.load_state_dict(sd)
        if best := under(tensors, "best"):
            self.best = BestWeights(state["best"]["val"], state["best"]["step"], best)
        self.streams.restore(tensors, rank_prefix(self.ranks.rank), self.device)
        set_host_rng_state(state["rng_host"])
        self.batches.set_order(state["order"] if self.ranks.main else state["rank_orders"][self.ranks.rank - 1])
        self.step, self.train_seconds = state["step"], state["train_seconds"]


@dataclass
class Saved:
    """A checkpoint as read back: the finished methods, and the one in progress, if any."""

    done: dict[str, dict[str, Any]]
    log_bytes: int
    tensors: Tensors
    state: dict[str, Any]

    def of(self, method: str) -> tuple[Tensors, dict[str, Any]] | None:
        """The state of `method`, if the checkpoint was taken inside it."""
        return (self.tensors, self.state) if self.state.get("method") == method else None


def read_checkpoint(path: Path, ranks: Ranks, cfg: Config, data: str) -> Saved | None:
    """The run's checkpoint, if it has one. One written by a run of another config, on other data
    (`data`: the data's fingerprint) or by another number of processes is refused."""
    if not path.is_file():
        return None
    tensors, state = load_state(path)
    mine = cfg.to_dict()
    theirs = {**Config().to_dict(), **state["config"]}  # a key newer than the checkpoint: its default then
    # a checkpoint from before the plan filled these in (None then) ran with what the plan chooses now
    theirs.update({k: mine[k] for k in PLANNED_KEYS if theirs.get(k) is None})
    if differ := sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k)):
        raise SganError(f"{path} was written by a run of another config ({differ[0]}: "
                        f"{theirs.get(differ[0])!r}, this run's: {mine.get(differ[0])!r}); not resumed")
    if state["data"] != data:
        raise SganError(f"{path} was written on other data than this run's config reads now "
                        "(the files changed); not resumed")
    world = state["world"] if state["method"] else ranks.world
    if world != ranks.world:  # the shards, and so the saved batch orders, depend on it
        raise SganError(f"{path} was written by {world} process(es); resume it with as many "
                        f"(torchrun --nproc_per_node={world}, or none for 1)")
    return Saved(dict(state["done"]), state["log_bytes"], tensors, state)


class Checkpoint:
    """The run's one checkpoint file, rewritten whole each time: rank 0 writes it, every rank
    takes part in capturing the state of the method in progress."""

    def __init__(self, path: Path, cfg: Config, log: TextIO, ranks: Ranks, done: dict[str, dict[str, Any]],
                 data: str) -> None:
        self.path, self.cfg, self.log, self.ranks = path, cfg, log, ranks
        self.done = done  # finished methods' results, by name
        self.data = data  # the data's fingerprint

    def save(self, training: TrainingState | None = None) -> None:
        """Inside a method (`training`), or between methods."""
        captured = training.capture() if training is not None else ({}, {"method": None})
        if captured is None or not self.ranks.main:  # the ranks hold the same weights; one copy is written
            return
        tensors, state = captured
        self.log.flush()
        save_state(self.path, tensors, {**state, "done": self.done, "log_bytes": self.log.tell(),
                                        "config": self.cfg.to_dict(), "data": self.data,
                                        "rng_host": host_rng_state()})
