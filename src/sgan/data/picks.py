"""A filled-in picks.csv (from `sgan suggest-labels`) as the labeled set of a run."""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SganError
from .imageset import ImageSet


@dataclass
class Picks:
    index: np.ndarray  # (K,) rows of the pool
    labels: np.ndarray  # (K,) int64
    classes: list[str]  # class names when the labels were names, else empty


COLUMNS = ["index", "path", "label"]  # picks.csv's; reserve.csv has the first two
SKIPPED = "skip"  # the label of a pick a person judged no clean example of any class: not used


def csv_rows(path: str | Path, columns: Sequence[str] = ()) -> list[tuple[str, dict[str, str]]]:
    """The rows of a picks.csv or reserve.csv, each with where it stands ("PATH line N"); with
    `columns`, the header must name them (an empty file has no rows to check)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise SganError(f"{path}: not a CSV file sgan wrote ({e})") from None
    if rows and not set(columns) <= set(rows[0]):
        raise SganError(f"{path}: expected the columns {','.join(columns)}")
    return [(f"{path} line {line}", row) for line, row in enumerate(rows, start=2)]


def row_index(where: str, row: dict[str, str]) -> int:
    """A row's `index` column as the whole number it must be."""
    try:
        return int(row["index"])
    except (TypeError, ValueError):
        raise SganError(f"{where}: index {row['index']!r} is not a whole number") from None


def read_rows(path: str) -> list[tuple[str, int, str, str]]:
    """Rows `index,path,label` of a filled-in picks.csv, each as (where, index, path named, label
    written), the header, the index numbers, the labels and repeats checked; rows labelled
    SKIPPED are left out."""
    if not Path(path).is_file():
        raise SganError(f"{path}: labels CSV not found")
    table = csv_rows(path)
    rows = [row for _, row in table]
    if not rows or not {"index", "label"} <= set(rows[0]):
        raise SganError(f"{path}: expected a header with 'index' and 'label' and at least one row")
    read = []
    for where, row in table:
        i = row_index(where, row)
        label = (row["label"] or "").strip()
        if not label:
            empty = sum(not (r["label"] or "").strip() for r in rows)
            raise SganError(f"{where}: no label ({empty} of {len(rows)} rows have none); fill in the label column, "
                            f"or label them in a browser with: sgan label {shlex.quote(str(Path(path).parent))}")
        if label != SKIPPED:
            read.append((where, i, (row.get("path") or "").strip(), label))
    if not read:
        raise SganError(f"{path}: every row is labelled {SKIPPED}; nothing to train on")
    index = [i for _, i, _, _ in read]
    if len(set(index)) != len(index):
        raise SganError(f"{path}: an image is listed twice (index {next(i for i in index if index.count(i) > 1)})")
    return read


def label_numbers(written: list[str], *, classes: list[str], numbered: bool, path: str, source: str
                  ) -> tuple[np.ndarray, list[str]]:
    """The labels a person wrote as class numbers, and the class names they used (empty when they
    wrote numbers): a class number, or a class name (`classes`, a pool's class folders, or else
    the names found, sorted). `numbered`: the pool's own labels are numbers without names."""
    if all(w.lstrip("-").isdigit() for w in written):
        return np.array([int(w) for w in written], dtype=np.int64), []
    if numbered:
        raise SganError(f"{path}: label {next(w for w in written if not w.lstrip('-').isdigit())!r} is not a class "
                        f"number, and {source} has no class names")
    classes = classes or sorted(set(written))
    unknown = sorted(set(written) - set(classes))
    if unknown:
        raise SganError(f"{path}: label {unknown[0]!r} is not a class of {source} ({', '.join(classes)})")
    return np.array([classes.index(w) for w in written], dtype=np.int64), list(classes)


def read_picks(path: str, pool: ImageSet) -> Picks:
    """The picks of `path` in `pool`: each row's index inside the pool, the file it named checked
    against the pool's (so a changed folder is caught), its label as a class number."""
    rows = read_rows(path)
    for where, i, named, _ in rows:
        if not 0 <= i < len(pool):
            raise SganError(f"{where}: index {i} is outside the pool's {len(pool)} images ({pool.source})")
        if named and pool.paths is not None and named != str(pool.paths[i]):
            raise SganError(f"{where}: image {i} is {named} here but {pool.paths[i]} in {pool.source} "
                            "(did the folder change?)")
    labels, classes = label_numbers([label for *_, label in rows], classes=pool.classes,
                                    numbered=pool.labels is not None and not pool.classes, path=path,
                                    source=pool.source)
    return Picks(np.array([i for _, i, _, _ in rows]), labels, classes)
