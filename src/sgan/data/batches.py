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
        if n < 1:  # there would be no batch to draw, ever
            raise ValueError("an index stream needs at least one item")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while len(self.buffer) < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.generator)])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size:]
        return batch


@dataclass(frozen=True)
class StreamedFolder:
    """An unlabeled image folder kept as its file list, decoded as batches arrive."""

    paths: tuple[str, ...]
    size: int
    channels: int
    source: str

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

    def decoder(self) -> Decoder:
        return Decoder([Path(p) for p in self.paths], self.size, self.channels)

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float in model range."""
        return to_model_range(images)


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


class TrainingBatches:
    """One method's batches: labeled (x, y) indexed on the device, and unlabeled ones from a
    tensor or a streamed folder, each in a seeded order that a checkpoint saves (`order`) and
    restores (`set_order`). A streamed folder starts decoding at the first batch, after any
    restore. With `use_ulb=False` (methods that never look at unlabeled images) the unlabeled
    order is drawn all the same, so that every method sees the same labeled batches, but the
    unlabeled batches are empty (B, 0)."""

    def __init__(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: torch.Tensor | StreamedFolder, *,
                 batch_size: int, lb_generator: torch.Generator, ulb_generator: torch.Generator,
                 use_ulb: bool = True, workers: int = 0, device: torch.device = torch.device("cpu")) -> None:
        self.x_lb, self.y_lb = x_lb.to(device), y_lb.to(device)
        self.lb_stream = IndexStream(len(x_lb), batch_size, lb_generator)
        self.ulb_stream = IndexStream(len(x_ulb), batch_size, ulb_generator)
        self.x_ulb, self.use_ulb, self.workers, self.device = x_ulb, use_ulb, workers, device
        self.ulb: InMemoryBatches | StreamedBatches | None = None

    def _unlabeled(self) -> InMemoryBatches | StreamedBatches:
        if self.ulb is None:
            if not self.use_ulb:  # the order is drawn all the same; the images are not needed
                self.ulb = InMemoryBatches(torch.empty(len(self.x_ulb), 0, device=self.device), self.ulb_stream)
            elif isinstance(self.x_ulb, torch.Tensor):
                self.ulb = InMemoryBatches(self.x_ulb.to(self.device), self.ulb_stream)
            else:
                self.ulb = StreamedBatches(self.x_ulb, self.ulb_stream, workers=self.workers, device=self.device)
        return self.ulb

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_lb (B, C, H, W), y_lb (B,), x_ulb (B, C, H, W) or (B, 0)); the labeled indices are
        drawn first."""
        i_lb = self.lb_stream.next()
        x_ulb = self._unlabeled().next()
        return self.x_lb[i_lb], self.y_lb[i_lb], x_ulb

    def order(self) -> dict[str, list[int]]:
        to_come = self.ulb.to_come() if self.ulb is not None else self.ulb_stream.buffer
        return {"lb": self.lb_stream.buffer.tolist(), "ulb": to_come.tolist()}

    def set_order(self, order: dict[str, list[int]]) -> None:
        if self.ulb is not None:
            raise RuntimeError("the batch order is restored before the first batch")
        self.lb_stream.buffer = torch.tensor(order["lb"], dtype=torch.long)
        self.ulb_stream.buffer = torch.tensor(order["ulb"], dtype=torch.long)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.ulb.skipped if self.ulb is not None else []

    def close(self) -> None:
        if self.ulb is not None:
            self.ulb.close()
