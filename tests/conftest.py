"""Small real data written by the tests: scikit-learn's digits as Kaggle CSV, IDX and NPZ."""

from __future__ import annotations

import contextlib
import gzip
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sgan.config import Config
from sgan.data import Prepared, prepare
from sgan.data.readers import Source, read_sklearn_digits
from sgan.plan import make_plan
from sgan.data.transforms import resize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def benchmark(name: str):
    """benchmarks/<name>.py as a module, for its main() at a toy size (its folder on the path, as
    when it runs as a script: the benchmarks share machine.py)."""
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    path = folder / f"{name}.py"
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


HOLDOUT_IMAGES = 300  # the finished run's holdout: the first digits, inverted (a real shift)
FINISHED = dict(n_labeled=20, iterations=12, batch_size=8, eval_every=6, log_every=3, progress=False)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, digits_csv) -> Path:
    """One finished run that the API, CLI, report and export tests all read (none may change it):
    every method on the digits as a Kaggle CSV, an inverted holdout, 12 steps."""
    from sgan import train
    from sgan.registry import REGISTRY

    root = tmp_path_factory.mktemp("finished")
    images, labels = digits28()
    holdout = write_kaggle_csv(root / "holdout.csv", 255 - images[:HOLDOUT_IMAGES, 0], labels[:HOLDOUT_IMAGES])
    train(data=str(digits_csv), eval={"holdout": str(holdout)}, methods=list(REGISTRY), out=str(root / "run"),
          **FINISHED)
    return root / "run"


def run_sgan(*args: str) -> subprocess.CompletedProcess:
    """`sgan ARGS` in this process (main(), as the console script calls it): its exit code, stdout
    and stderr. Tests start a process only where a process boundary is what they test (imports at
    start-up, signals, kills, torchrun)."""
    import torch

    from sgan.cli import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # a run's --threads must not slow the tests after it
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help, --version, usage errors
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        finally:
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["sgan", *args], code, out.getvalue(), err.getvalue())


def sweep_args(config: Path, out: Path, *extra: str) -> list[str]:
    """`sgan sweep` of a config file into `out`: the arguments, for run_sgan."""
    return ["sweep", "--config", str(config), "--out", str(out), *extra]


def sweep_command(config: Path, out: Path, *extra: str) -> list[str]:
    """The same sweep as a process of its own."""
    return [sys.executable, "-m", "sgan", *sweep_args(config, out, *extra)]


def needs_shared():
    return pytest.mark.skipif(not (SHARED / "kannada-mnist").is_dir(),
                              reason=f"shared data not found at {SHARED}")


def planned(cfg: Config | None = None, *, channels: int = 1, num_classes: int = 10, side: int | None = None) -> Config:
    """A config as a plan makes it for images of these channels and classes, no data read: its
    model and size chosen (model auto: the digit pair for 1 channel, the photo network for 3)."""
    return make_plan(cfg or Config(), Source("test images", channels, side, num_classes)).config


def prepared(cfg: Config) -> Prepared:
    """prepare() as a run calls it: on the plan of `cfg`."""
    plan = make_plan(cfg)
    return prepare(plan.config, plan.pool)


def chromium_driver():
    """Headless Debian Chromium under selenium, or the test skips saying why."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them when it "
                    "runs as root with apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
