"""A filled-in picks.csv (from `sgan suggest-labels`) as the labeled set of a run."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SganError
from .imageset import ImageSet


@dataclass
class Picks:
    index: np.ndarray  # (K,) rows of the pool
    labels: np.ndarray  # (K,) int64
    classes: list[str]  # class names when the labels were names, else empty


def read_picks(path: str, pool: ImageSet) -> Picks:
    """Rows `index,path,label`: index into the pool, the file it named (checked against the pool,
    so a changed folder is caught), and the label a person wrote: a class number, or a class name
    (the pool's class folders, or else the names found, sorted)."""
    file = Path(path)
    if not file.is_file():
        raise SganError(f"{path}: labels CSV not found")
    with open(file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "label"} <= set(rows[0]):
        raise SganError(f"{path}: expected a header with 'index' and 'label' and at least one row")
    index, written = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        try:
            i = int(row["index"])
        except (TypeError, ValueError):
            raise SganError(f"{where}: index {row['index']!r} is not a whole number") from None
        if not 0 <= i < len(pool):
            raise SganError(f"{where}: index {i} is outside the pool's {len(pool)} images ({pool.source})")
        named = (row.get("path") or "").strip()
        if named and pool.paths is not None and named != str(pool.paths[i]):
            raise SganError(f"{where}: image {i} is {named} here but {pool.paths[i]} in {pool.source} "
                            "(did the folder change?)")
        label = (row["label"] or "").strip()
        if not label:
            raise SganError(f"{where}: no label; fill in the label column")
        index.append(i)
        written.append(label)
    if len(set(index)) != len(index):
        raise SganError(f"{path}: an image is listed twice (index {next(i for i in index if index.count(i) > 1)})")
    if all(w.lstrip("-").isdigit() for w in written):
        return Picks(np.array(index), np.array([int(w) for w in written], dtype=np.int64), [])
    if pool.labels is not None and not pool.classes:
        raise SganError(f"{path}: label {next(w for w in written if not w.lstrip('-').isdigit())!r} is not a class "
                        f"number, and {pool.source} has no class names")
    classes = pool.classes or sorted(set(written))
    unknown = sorted(set(written) - set(classes))
    if unknown:
        raise SganError(f"{path}: label {unknown[0]!r} is not a class of {pool.source} ({', '.join(classes)})")
    return Picks(np.array(index), np.array([classes.index(w) for w in written], dtype=np.int64), list(classes))
