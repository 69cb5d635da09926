"""Readers for Kaggle digit CSVs, MNIST IDX files, NPZ arrays, image folders and the bundled sklearn digits.

Each returns an ImageSet with uint8 images (N, C, H, W). The format is detected from the path.
"""

from __future__ import annotations

import gzip
import math
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SganError
from .folders import folder_classes, read_folder
from .imageset import ImageSet

BUILTIN = "sklearn-digits"


def load_images(path: str, *, size: int = 64, channels: int = 3, workers: int = 0) -> ImageSet:
    """Read any supported source; `path` may also be the built-in name "sklearn-digits".
    `size`, `channels` and `workers` apply to image folders, which are decoded to that shape."""
    if path == BUILTIN:
        return read_sklearn_digits()
    p = Path(path)
    if not p.exists():
        raise SganError(f"{path}: file not found")
    if p.is_dir():
        return read_folder(p, size=size, channels=channels, workers=workers)
    name = p.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return read_csv(p)
    if re.search(r"idx\d-ubyte(\.gz)?$", name) or name.endswith((".idx", ".idx.gz")):
        return read_idx_images(p)
    if name.endswith(".npz"):
        return read_npz(p)
    raise SganError(f"{path}: unknown format; expected .csv, IDX (*-idx3-ubyte[.gz]), .npz or an image folder")


@dataclass
class Source:
    """A labeled pool opened for a plan: what it holds, read before anything is sized for it. A
    file is read whole (its images' shape is in it); an image folder is only listed, and decoded
    by `read` at the size the plan chose."""

    path: str
    channels: int | None  # None: an image folder, decoded to the channels the plan chooses
    side: int | None  # None: an image folder, decoded to the size the plan chooses
    num_classes: int  # largest label + 1 (a labeled folder: its class folders); 0: unlabeled
    classes: list[str] = field(default_factory=list)  # a labeled folder's class names
    images: ImageSet | None = None  # a file's images, read when opened

    def read(self, *, size: int, channels: int, workers: int = 0) -> ImageSet:
        """The images: a file's as read, a folder's decoded at this size and channels."""
        if self.images is not None:
            return self.images
        return load_images(self.path, size=size, channels=channels, workers=workers)


def open_source(path: str) -> Source:
    """A pool's header: a folder's class names (listed, not decoded), a file's images read whole."""
    if path != BUILTIN and Path(path).is_dir():
        classes = folder_classes(Path(path))[0]
        return Source(path, None, None, len(classes), classes)
    images = load_images(path)
    labels = images.labels
    return Source(path, images.images.shape[1], images.images.shape[2],
                  int(labels.max()) + 1 if labels is not None and len(labels) else 0, images=images)


def _square_images(flat: np.ndarray, source: str) -> np.ndarray:
    """(N, P) pixels -> (N, C, H, W), with P = H*H*C for C in (1, 3)."""
    n, p = flat.shape
    for c in (1, 3):
        side = math.isqrt(p // c)
        if side * side * c == p and side > 0:
            # Kaggle / NPZ flat pixels are row-major H, W, C
            return np.ascontiguousarray(flat.reshape(n, side, side, c).transpose(0, 3, 1, 2))
    raise SganError(f"{source}: {p} pixels per image is not a square image (H*H*C with C in 1 or 3)")


def _first_bad(ok: np.ndarray, where: str) -> str:
    """' (line 7)' / ' (image 3)': where the first failing row is; `where` is "line" (CSV, after
    the header) or "image" (0-based index)."""
    i = int(np.flatnonzero(~ok)[0])
    return f" ({where} {i + 2 if where == 'line' else i})"


def _to_uint8(values: np.ndarray, source: str, where: str) -> np.ndarray:
    flat = values.reshape(len(values), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        raise SganError(f"{source}: pixel values must be finite numbers{_first_bad(finite, where)}")
    ok = ((flat >= 0) & (flat <= 255) & (flat == np.round(flat))).all(axis=1)
    if not ok.all():
        raise SganError(f"{source}: pixel values must be integers in 0..255{_first_bad(ok, where)}")
    return values.astype(np.uint8)


def _check_labels(labels: np.ndarray, source: str, where: str) -> np.ndarray:
    ok = np.isfinite(labels) & (labels == np.round(labels)) & (labels >= 0)
    if not ok.all():
        raise SganError(f"{source}: labels must be non-negative integers{_first_bad(ok, where)}")
    return labels.astype(np.int64)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.name.lower().endswith(".gz") else open(path)


def _bad_line(path: Path, width: int) -> str:
    """Where a CSV that numpy refused first goes wrong, counted as a text editor counts lines."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            values = line.strip().split(",")
            if number == 1 or not line.strip():
                continue
            if len(values) != width:
                return f"line {number} has {len(values)} values, the header {width}"
            for column, value in enumerate(values, start=1):
                try:
                    float(value)
                except ValueError:
                    return f"line {number}, column {column}: {value.strip()[:20]!r} is not a number"
    return "unreadable row"


def read_csv(path: Path) -> ImageSet:
    """Kaggle layout: a header row, then `label` or `id` (optional) and pixel0..pixelP-1."""
    try:
        with _open_text(path) as f:
            header = f.readline().strip()
            if not header:
                raise SganError(f"{path}: empty CSV")
            columns = [c.strip().strip('"').lower() for c in header.split(",")]
            with warnings.catch_warnings():  # "input contained no data" is reported below
                warnings.simplefilter("ignore", UserWarning)
                data = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise SganError(f"{path}: cannot read as a CSV text file: {e}") from None
    except ValueError:  # numpy's row numbers skip the header and blank lines; say the file's
        raise SganError(f"{path}: malformed CSV row: {_bad_line(path, len(columns))}") from None
    if data.size == 0:
        raise SganError(f"{path}: CSV has a header but no rows")
    if data.shape[1] != len(columns):
        raise SganError(f"{path}: rows have {data.shape[1]} values but the header has {len(columns)}")
    labels = ids = None
    first = columns[0]
    if first == "label":
        labels, data = _check_labels(data[:, 0], str(path), "line"), data[:, 1:]
    elif first == "id":
        ids, data = data[:, 0].astype(np.int64), data[:, 1:]
    elif not first.startswith("pixel"):
        raise SganError(f"{path}: first column is {columns[0]!r}; expected 'label', 'id' or 'pixel0'")
    images = _square_images(_to_uint8(data, str(path), "line"), str(path))
    return ImageSet(images=images, labels=labels, ids=ids, source=str(path))


def _read_idx(path: Path) -> np.ndarray:
    try:
        with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise SganError(f"{path}: cannot read: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SganError(f"{path}: not an unsigned-byte IDX file (bad magic)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise SganError(f"{path}: IDX header is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - head != math.prod(shape):
        raise SganError(f"{path}: IDX body has {len(raw) - head} bytes, header says {math.prod(shape)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape).copy()  # writable


def labels_path_for(path: Path) -> Path | None:
    """The labels file beside an IDX image file: idx3 -> idx1, images -> labels, X_ -> y_."""
    name = path.name.replace("idx3", "idx1").replace("images", "labels")
    name = re.sub(r"^[Xx]_", "y_", name)
    candidate = path.with_name(name)
    return candidate if candidate != path and candidate.exists() else None


def read_idx_images(path: Path) -> ImageSet:
    array = _read_idx(path)
    if array.ndim == 3:
        images = array[:, None]
    elif array.ndim == 4:
        images = _channels(array.transpose(0, 3, 1, 2), str(path))  # IDX colour images are N, H, W, C
    else:
        raise SganError(f"{path}: IDX image file must have 3 or 4 dimensions, has {array.ndim}")
    labels = None
    lpath = labels_path_for(path)
    if lpath is not None:
        labels = _read_idx(lpath).astype(np.int64)
        if labels.shape != (len(images),):
            raise SganError(f"{lpath}: {labels.shape} labels for {len(images)} images in {path.name}")
    return ImageSet(images=np.ascontiguousarray(images), labels=labels, source=str(path))


def _channels(images: np.ndarray, source: str) -> np.ndarray:
    """(N, C, H, W) with C grey (1) or colour (3), the two kinds the networks take."""
    if images.shape[1] not in (1, 3):
        raise SganError(f"{source}: images have {images.shape[1]} channels; sgan takes 1 (grey) or 3 (colour)")
    return images


def images_from_array(x: np.ndarray, source: str) -> np.ndarray:
    """An array of images -> (N, C, H, W) uint8: (N, P) flat square images, (N, H, W) grey,
    (N, C, H, W) or (N, H, W, C) with C in 1 or 3; integers 0..255 or floats in [0, 1]."""
    if x.dtype.kind not in "uif":
        raise SganError(f"{source} must hold numbers, holds {x.dtype}")
    if x.ndim == 2:
        x = _square_images(x, source)
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # N, H, W, C -> N, C, H, W
    elif x.ndim != 4:
        raise SganError(f"{source} must have 2 to 4 dimensions (N images first), has {x.ndim}")
    x = _channels(x, source)
    if x.dtype.kind == "f" and x.size and x.max() <= 1.0:
        x = x * 255.0  # floats in [0, 1]
    images = x if x.dtype == np.uint8 else _to_uint8(x.astype(np.float64), source, "image")
    return np.ascontiguousarray(images)


def read_npz(path: Path) -> ImageSet:
    if not zipfile.is_zipfile(path):
        raise SganError(f"{path}: not a .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive:
                raise SganError(f"{path}: .npz has no array 'x' (found: {', '.join(archive.files) or 'none'})")
            x = archive["x"]
            y = archive["y"] if "y" in archive else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # object arrays, bad members
        raise SganError(f"{path}: not a readable .npz file: {e}") from None
    if y is not None and y.dtype.kind not in "uif":
        raise SganError(f"{path}: 'y' must hold numbers, holds {y.dtype}")
    images = images_from_array(x, f"{path}: 'x'")
    labels = None
    if y is not None:
        if y.shape != (len(images),):
            raise SganError(f"{path}: 'y' has shape {y.shape}, expected ({len(images)},)")
        labels = _check_labels(y.astype(np.float64), str(path), "image")
    return ImageSet(images=images, labels=labels, source=str(path))


def read_sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16), shipped in the package."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageSet(images=images, labels=digits.target.astype(np.int64), source=BUILTIN)
