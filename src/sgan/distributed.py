"""Data-parallel training under torchrun: one process per device, DistributedDataParallel
(NCCL on GPUs, gloo on CPU), every rank on its own shard of the images, rank 0 the only writer.

    torchrun --nproc_per_node=2 -m sgan train ...

Without torchrun's environment everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import SganError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes files and evaluates."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for every process it starts."""
    try:
        return Ranks(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
                     local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise SganError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    if not ranks.parallel:
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per process: torchrun's LOCAL_RANK picks it."""
    if ranks.parallel and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


def data_parallel(module: nn.Module, ranks: Ranks) -> nn.Module:
    """The module whose backward averages gradients over the ranks (the module itself alone)."""
    if not ranks.parallel:
        return module
    device = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def shard(n: int, ranks: Ranks) -> torch.Tensor:
    """This rank's indices of n images: every world-th one, the same count on every rank (the
    last n % world images sit out, so batch orders saved by rank 0 are valid everywhere)."""
    per_rank = n // ranks.world
    if per_rank == 0:
        raise SganError(f"{n} images cannot be shared by {ranks.world} processes")
    return torch.arange(ranks.rank, per_rank * ranks.world, ranks.world)


def rank_seed(seed: int, ranks: Ranks) -> int:
    """Different noise, augmentation and batch order on every rank, reproducible from the seed."""
    return seed * 1_000_003 + ranks.rank * 10_007


def agree(losses: dict[str, float], stop: bool, ranks: Ranks, device: torch.device) -> tuple[dict[str, float], bool]:
    """One small all-reduce a step: losses averaged over the ranks (what gets logged and checked
    for NaN, so every rank stops together) and whether any rank was asked to stop."""
    if not ranks.parallel:
        return losses, stop
    values = torch.tensor([float(stop), *losses.values()], dtype=torch.float64, device=device)  # (1 + L,)
    dist.all_reduce(values)
    return dict(zip(losses, (values[1:] / ranks.world).tolist())), bool(values[0] > 0)


def broadcast(value: Any, ranks: Ranks) -> Any:
    """Rank 0's value on every rank (e.g. the run folder it created)."""
    if not ranks.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, ranks: Ranks) -> list[Any] | None:
    """Every rank's value in rank order on rank 0 (e.g. its random generators for the
    checkpoint), None on the others."""
    if not ranks.parallel:
        return [value]
    box: list[Any] | None = [None] * ranks.world if ranks.main else None
    dist.gather_object(value, box, dst=0)
    return box


def check_in_step(module: nn.Module, ranks: Ranks) -> None:
    """Data parallelism keeps every rank's weights identical; anything else is a bug, caught here
    before rank 0 saves its copy as the result."""
    if not ranks.parallel:
        return
    with torch.no_grad():
        sums = torch.stack([p.double().sum() for p in module.parameters()])  # (P,)
    gathered = [torch.empty_like(sums) for _ in range(ranks.world)]
    dist.all_gather(gathered, sums)
    if any(not torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-6) for g in gathered):
        raise SganError("data-parallel ranks ended with different weights")
