"""Small real data written by the tests: scikit-learn's digits as Kaggle CSV, IDX and NPZ."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from sgan.data.readers import read_sklearn_digits
from sgan.data.transforms import resize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def benchmark(name: str):
    """benchmarks/<name>.py as a module, for its main() at a toy size."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits28(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = read_sklearn_digits()
    images, labels = resize(s.images, 28), s.labels
    return (images, labels) if n is None else (images[:n], labels[:n])


def write_kaggle_csv(path: Path, images: np.ndarray, first: np.ndarray | None, first_name: str = "label") -> Path:
    flat = images.reshape(len(images), -1)
    header = ([first_name] if first is not None else []) + [f"pixel{i}" for i in range(flat.shape[1])]
    rows = flat if first is None else np.column_stack([first, flat])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=",".join(header), comments="")
    return path


def write_idx(path: Path, array: np.ndarray) -> Path:
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = head + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture(scope="session")
def digits_csv(tmp_path_factory) -> Path:
    images, labels = digits28()
    return write_kaggle_csv(tmp_path_factory.mktemp("data") / "train.csv", images[:, 0], labels)


@pytest.fixture(scope="session")
def test_csv(tmp_path_factory) -> Path:
    images, _ = digits28(50)
    ids = np.arange(1000, 1050)
    return write_kaggle_csv(tmp_path_factory.mktemp("data") / "test.csv", images[:, 0], ids, "id")


def needs_shared():
    return pytest.mark.skipif(not (SHARED / "kannada-mnist").is_dir(),
                              reason=f"shared data not found at {SHARED}")
