"""Writing output files: whole or not at all, only over regular files, errors in one line.
Torch-free, so that reading and writing run folders never imports it."""

from __future__ import annotations

import csv
import io
import os
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import SganError, WriteError, pause_point


def check_target(path: Path) -> None:
    """An output file may replace a regular file, never a folder, device, pipe or socket."""
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise SganError(f"{path}: output path is {kind}; not replaced")


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write; then flushes it to disk and renames it
    over `path`, so a reader (or a kill) sees the old file or the new one, never half of one.
    A failed write (no space, no permission, no such folder) leaves no temporary file and
    becomes one WriteError line."""
    path = Path(path)
    check_target(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        pause_point("writing")  # where the kill tests stop a write
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        with suppress(OSError):  # gone after the rename, or its folder never existed
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def csv_text(header: list[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()
