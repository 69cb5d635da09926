"""Image folders: `root/<class>/*.jpg` (torchvision's ImageFolder convention) or a flat folder.

Every file is decoded once, in DataLoader worker processes, converted to the run's channels,
center-cropped to a square and resized to the run's size. Files that cannot be decoded are
skipped and returned with the reason, never fatal; a folder with no usable image is an error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import SganError
from .imageset import ImageSet

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold (about 0.25 GB of RGBA): larger is refused


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (all depths), in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> "L" (channels 1) or "RGB" (channels 3)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit: scale to 8 bits, don't clip
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):  # transparent pixels become white, not whatever hides under alpha
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("L" if channels == 1 else "RGB")


def decode(path: Path, *, size: int, channels: int) -> np.ndarray:
    """One file -> (C, size, size) uint8; raises ValueError/OSError with the reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"{img.width}x{img.height} pixels is over the {MAX_PIXELS} limit")
            img.load()  # decode now: a truncated file fails here, not later
            img = ImageOps.fit(to_mode(img, channels), (size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8).reshape(size, size, channels).transpose(2, 0, 1)


class Decoder(torch.utils.data.Dataset):
    """File i -> (i, (C, size, size) uint8 or None, reason it failed or "")."""

    def __init__(self, paths: list[Path], size: int, channels: int) -> None:
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return i, decode(self.paths[i], size=self.size, channels=self.channels), ""
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            return i, None, f"{type(e).__name__}: {e}".splitlines()[0]


def as_is(item: tuple[int, np.ndarray | None, str]) -> tuple[int, np.ndarray | None, str]:
    """The loader's collate function: the item unchanged (a module-level function, so that
    worker processes started by spawn, as in a sweep's cells, can unpickle it)."""
    return item


def decode_all(paths: list[Path], *, size: int, channels: int, workers: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """(N_ok, C, size, size) uint8 for the decodable files, in order, the (N,) mask of which
    files those are, and [(path, reason)] for the rest."""
    images = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    skipped = []
    loader = torch.utils.data.DataLoader(Decoder(paths, size, channels), batch_size=None, num_workers=workers,
                                         collate_fn=as_is)
    for i, image, reason in loader:
        if image is None:
            skipped.append((str(paths[i]), reason))
        else:
            images[i], ok[i] = image, True
    return images[ok], ok, skipped


def folder_classes(folder: Path) -> tuple[list[str], list[Path], np.ndarray | None]:
    """A folder's class names, image files and their labels, without decoding a file: class
    subfolders -> a labeled set (classes in sorted name order); image files directly in `folder`
    (or no subfolder with images) -> an unlabeled one (no classes, labels None)."""
    subdirs = {d.name: files for d in sorted(folder.iterdir()) if d.is_dir() and (files := image_files(d))}
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if subdirs and not loose:
        per_class = list(subdirs.values())
        labels = np.concatenate([np.full(len(files), c, dtype=np.int64) for c, files in enumerate(per_class)])
        return list(subdirs), [p for files in per_class for p in files], labels
    paths = image_files(folder)
    if not paths:
        raise SganError(f"{folder}: no image files ({', '.join(EXTENSIONS)})")
    return [], paths, None


def read_folder(folder: Path, *, size: int, channels: int, workers: int = 0) -> ImageSet:
    """Every image of `folder` (`folder_classes`) decoded at this size and channels."""
    classes, paths, labels = folder_classes(folder)
    images, ok, skipped = decode_all(paths, size=size, channels=channels, workers=workers)
    if len(images) == 0:
        raise SganError(f"{folder}: none of its {len(paths)} image files could be decoded "
                        f"(first: {skipped[0][0]}: {skipped[0][1]})")
    return ImageSet(images=images, labels=None if labels is None else labels[ok],
                    paths=np.array([str(p) for p in paths])[ok], classes=classes, skipped=skipped,
                    source=str(folder))


def read_files(paths: list[Path], *, size: int, channels: int, workers: int = 0) -> ImageSet:
    """Image files named one by one (to predict): each must exist and decode."""
    for p in paths:
        if not p.is_file():
            raise SganError(f"{p}: file not found")
    images, _, skipped = decode_all(paths, size=size, channels=channels, workers=workers)
    if skipped:
        raise SganError(f"{skipped[0][0]}: cannot decode: {skipped[0][1]}")
    return ImageSet(images=images, paths=np.array([str(p) for p in paths]), source=f"{len(paths)} image files")
