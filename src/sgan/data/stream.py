"""Unlabeled batches for the training loop: from a tensor in memory, or streamed from an image
folder too large to hold (decoded batch by batch in DataLoader worker processes).

Both draw their batches from an IndexStream and can say which indices are still to come, so a
checkpoint taken mid-run resumes with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import SganError
from .folders import Decoder, image_files
from .transforms import to_model_range

STATS_SAMPLE = 1000  # images decoded up front to estimate a streamed folder's pixel mean/std


class IndexStream:
    """Endless random batches of indices: a fresh permutation each pass over the data."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while len(self.buffer) < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.generator)])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size:]
        return batch


@dataclass(frozen=True)
class StreamedFolder:
    """An unlabeled image folder kept as its file list; `standardize` = (own mean, own std,
    target mean, target std) applies per-set standardization as batches arrive."""

    paths: tuple[str, ...]
    size: int
    channels: int
    source: str
    standardize: tuple[float, float, float, float] | None = None

    @classmethod
    def open(cls, folder: str, *, size: int, channels: int) -> "StreamedFolder":
        paths = image_files(Path(folder))
        if not paths:
            raise SganError(f"{folder}: no image files to stream")
        return cls(tuple(str(p) for p in paths), size, channels, folder)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: torch.Tensor) -> "StreamedFolder":
        return dataclasses.replace(self, paths=tuple(self.paths[i] for i in index.tolist()))

    @cached_property
    def sample(self) -> torch.Tensor:
        """Up to STATS_SAMPLE images (a seeded choice) in model range, to estimate pixel
        statistics; decoded once, however often the statistics are asked for."""
        n = min(STATS_SAMPLE, len(self))
        chosen = np.sort(np.random.default_rng(0).choice(len(self), n, replace=False))
        images, _ = decode_batch(self.decoder(), chosen.tolist())
        if len(images) == 0:
            raise SganError(f"{self.source}: none of {n} sampled image files could be decoded")
        return self.to_model(images)

    def standardized(self, mean: float, std: float) -> "StreamedFolder":
        x = self.sample.double()
        return dataclasses.replace(self, standardize=(x.mean().item(), x.std().item(), mean, std))

    def decoder(self) -> Decoder:
        return Decoder([Path(p) for p in self.paths], self.size, self.channels)

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float in model range, standardized when asked."""
        x = to_model_range(images)
        if self.standardize is not None:
            own_mean, own_std, mean, std = self.standardize
            x = (x - own_mean) / max(own_std, 1e-8) * std + mean
        return x


def decode_batch(decoder: Decoder, indices: list[int]) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """The decodable images of one batch (B_ok, C, H, W) uint8 and [(path, reason)] for the rest."""
    items = [decoder[i] for i in indices]
    good = [torch.from_numpy(image.copy()) for _, image, _ in items if image is not None]  # PIL arrays are read-only
    skipped = [(str(decoder.paths[i]), reason) for i, image, reason in items if image is None]
    shape = (0, decoder.channels, decoder.size, decoder.size)
    return (torch.stack(good) if good else torch.empty(shape, dtype=torch.uint8)), skipped


class _BatchDecoder(torch.utils.data.Dataset):
    """Maps a whole batch of indices to its decoded images, so workers decode batches."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, list[tuple[str, str]]]:
        return decode_batch(self.decoder, indices)

    def __len__(self) -> int:
        return len(self.decoder)


class InMemoryBatches:
    """Unlabeled batches indexed from a tensor already on the training device."""

    def __init__(self, x: torch.Tensor, stream: IndexStream) -> None:
        self.x, self.stream = x, stream
        self.skipped: list[tuple[str, str]] = []

    def next(self) -> torch.Tensor:
        return self.x[self.stream.next()]

    def to_come(self) -> torch.Tensor:
        return self.stream.buffer

    def close(self) -> None:
        pass


class StreamedBatches:
    """Unlabeled batches decoded ahead in `workers` processes (pinned for a GPU). The loader
    draws index batches before they are used; those still waiting are part of `to_come`."""

    def __init__(self, folder: StreamedFolder, stream: IndexStream, *, workers: int, device: torch.device) -> None:
        self.folder, self.stream, self.device = folder, stream, device
        self.waiting: deque[torch.Tensor] = deque()  # drawn by the loader, not yet trained on
        self.skipped: list[tuple[str, str]] = []
        loader = torch.utils.data.DataLoader(
            _BatchDecoder(folder.decoder()), sampler=self._draw(), batch_size=None, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=False,
            generator=torch.Generator())  # its worker seeds must not draw from the global RNG training uses
        self.batches: Iterator[tuple[torch.Tensor, list[tuple[str, str]]]] = iter(loader)

    def _draw(self) -> Iterator[list[int]]:
        while True:
            batch = self.stream.next()
            self.waiting.append(batch)
            yield batch.tolist()

    def next(self) -> torch.Tensor:
        while True:
            images, skipped = next(self.batches)
            self.waiting.popleft()
            self.skipped += [(path, reason) for path, reason in skipped]  # the loader hands back lists
            if len(images):  # a batch whose files all failed to decode is passed over
                return self.folder.to_model(images.to(self.device, non_blocking=True))

    def to_come(self) -> torch.Tensor:
        return torch.cat([*self.waiting, self.stream.buffer])

    def close(self) -> None:
        del self.batches  # stops the worker processes
