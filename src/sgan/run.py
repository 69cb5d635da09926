"""The run folder and the sweep folder: their layout and file names, making them, and
metrics.json as a typed record. Everything that reads or writes these folders goes through here.

A run folder (`sgan train`):
    config.json                 the resolved config           split.json    the split's indices
    metrics.jsonl               losses and validation checks, a line each, appended while training
    checkpoint.safetensors      for --resume (what it holds: state.py)
    <method>_<part>.safetensors trained weights: classifier, generator, ema
    <method>_diagnostics.safetensors   confusion matrices and confident mistakes per evaluation set
    samples/<method>/step_<step>.png   generated grids from a fixed noise batch; <method>_samples.png the last
    skipped_files.csv, tensorboard/<method>/, losses.png, submission.csv
    metrics.json                written last: it marks the run complete       report.html
    <method>.onnx               written by `sgan export`
A sweep folder (`sgan sweep`): runs/<cell>/ (run folders), summary.json, table_<set>.md / .csv,
verdict.md, accuracy_vs_budget.png, report.html.
A suggestions folder (`sgan suggest-labels`): picks.csv, picks.png (a contact sheet), suggest.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not guarded there
    fcntl = None

from .files import atomic_write_text, csv_text
from .config import Config, config_from_dict
from .errors import SganError
from .registry import REGISTRY

if TYPE_CHECKING:
    import torch
    from torch import nn

RESULT_FACTS = ("train_seconds", "iterations", "selected_step")  # a method's entries that are not accuracies


@dataclass
class MethodResult:
    """One method's entry in metrics.json."""

    accuracy: dict[str, float]  # evaluation set ("val", "holdout", "test", "<set>+adabn") -> accuracy
    train_seconds: float
    iterations: int
    selected_step: int  # the step whose weights were kept

    def to_json(self) -> dict[str, Any]:
        return {**self.accuracy, "train_seconds": self.train_seconds, "iterations": self.iterations,
                "selected_step": self.selected_step}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "MethodResult":
        return cls(accuracy={k: v for k, v in entry.items() if k not in RESULT_FACTS},
                   train_seconds=entry["train_seconds"], iterations=entry["iterations"],
                   selected_step=entry.get("selected_step", entry["iterations"]))  # older runs kept the last step


@dataclass
class WeightsInfo:
    """What a weights file carries beside its tensors and config: what a reader needs to rebuild
    the network and feed it."""

    channels: int
    num_classes: int
    classes: list[str]  # class names, when the pool was an image folder (else empty)
    input_stats: list[float]  # the pool's pixel mean, std in model range: where a set standardization moves a set

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "WeightsInfo":
        return cls(**{f.name: entry[f.name] for f in dataclasses.fields(cls)})


Diagnostics = dict[str, dict[str, "torch.Tensor"]]  # evaluation set -> part (confusion, ...) -> tensor


@dataclass
class RunProtocol:
    """How a run was made, as its tables and reports describe it."""

    data: str
    preset: str | None
    n_labeled: int
    labels_csv: str | None
    seed: int
    iterations: int
    batch_size: int
    unlabeled: str  # "pool", an evaluation set's name, "test" or a file
    transductive: bool  # the unlabeled images were an evaluation set's
    selection: str  # which weights were kept, in words
    adabn: bool
    pseudo_label_weight: float
    counts: dict[str, int]  # images per set
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per set: images, per class, pixel mean/std
    classes: list[str] = field(default_factory=list)  # class names, when known
    submission_method: str | None = None  # the method that wrote submission.csv

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.submission_method is None:
            del out["submission_method"]
        return out

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "RunProtocol":
        known = {f.name for f in dataclasses.fields(cls)}
        # runs from before a key existed: the value it stood for then
        return cls(**{"labels_csv": None, "adabn": False, "pseudo_label_weight": 0.0,
                      **{k: v for k, v in entry.items() if k in known}})


@dataclass
class Metrics:
    """metrics.json: the protocol and each method's result."""

    protocol: RunProtocol
    methods: dict[str, MethodResult]

    def to_json(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_json(), "methods": {k: v.to_json() for k, v in self.methods.items()}}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "Metrics":
        return cls(RunProtocol.from_json(entry["protocol"]),
                   {k: MethodResult.from_json(v) for k, v in entry["methods"].items()})


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SganError(f"{path}: cannot read: {e}") from None


class Folder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """This process is the folder's one writer while inside: another sgan process that asks is
        refused in one line. An advisory lock (flock) on .lock, which the kernel drops when its
        holder exits or is killed, so a killed run never leaves its folder stuck. A lock file placed
        here by a command that then fails is taken away again (never left in a folder that is not
        sgan's), and so are the folders made for it that hold nothing else."""
        nearest = next(p for p in [self.path, *self.path.parents] if p.exists())
        if fcntl is None or not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
            yield  # a folder that cannot be made here is refused, in its own words, by whoever writes there
            return
        made = [p for p in [self.path, *self.path.parents] if not p.exists()]  # innermost first
        placed = not self.lock_file.exists()  # the lock file is this process's to take away if it fails
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_file, "a+")
        except OSError as e:
            raise SganError(f"{self.path}: cannot create the folder: {e.strerror or e}") from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise SganError(f"{self.path}: in use by another sgan process (pid {holder}); wait for it to end "
                                "or choose another folder") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        except BaseException:  # refused or failed: a folder not made into sgan's keeps no trace of it
            if placed:
                self.lock_file.unlink(missing_ok=True)
            raise
        finally:
            if made and [e.name for e in self.path.iterdir()] in ([], [self.lock_file.name]):
                self.lock_file.unlink(missing_ok=True)
                for folder in made:
                    folder.rmdir()
            handle.close()


class RunFolder(Folder):

    @classmethod
    def create(cls, out: str | Path, *, overwrite: bool) -> "RunFolder":
        """`out`, made empty. An existing non-empty folder only with
        `overwrite`, and only if it is a run folder holding nothing but what sgan writes there:
        those files are removed, nothing else ever is."""
        run = cls(out)
        entries = run.check_target(overwrite=overwrite)
        for entry in entries:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SganError(f"{run.path}: cannot create the run folder: {e.strerror or e}") from None
        return run

    def check_target(self, *, overwrite: bool) -> list[Path]:
        """Whether a run may be written here (nothing is changed): the entries `overwrite` would
        remove, or one error line."""
        if self.path.exists() and not self.path.is_dir():
            raise SganError(f"{self.path}: output path is a file")
        entries = sorted(e for e in self.path.iterdir() if e != self.lock_file) if self.path.is_dir() else []
        if entries and not overwrite:
            if self.config.is_file() and not self.is_complete():
                raise SganError(f"{self.path}: holds a stopped run; continue it with: sgan train --resume {self.path} "
                                "(or start it over with --overwrite)")
            raise SganError(f"{self.path}: run folder already exists and is not empty (use --overwrite)")
        foreign = [e for e in entries if not self.wrote(e)]
        if entries and (foreign or not self.config.is_file()):
            what = f"it holds {foreign[0].name}, which sgan did not write" if foreign else "it has no config.json"
            raise SganError(f"{self.path}: not a run folder, not overwritten ({what})")
        parent = next(p for p in [self.path, *self.path.parents] if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise SganError(f"{self.path}: cannot create the run folder here ({parent} is not a writable folder)")
        return entries

    def wrote(self, entry: Path) -> bool:
        """Whether `entry`, in this folder, is one of the files or folders a run writes."""
        name = entry.name.removesuffix(".tmp")
        if entry.is_symlink():
            return False
        if entry.is_dir():
            return name in ("samples", "tensorboard")
        files = [self.config, self.split, self.log, self.metrics, self.checkpoint, self.skipped, self.losses_plot,
                 self.submission, self.report]
        for method in REGISTRY:
            files += [self.weights(method, part) for part in ("classifier", "generator", "ema")]
            files += [self.diagnostics(method), self.final_samples(method), self.onnx(method)]
        return name in {f.name for f in files}

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def log(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped_files.csv"

    @property
    def losses_plot(self) -> Path:
        return self.path / "losses.png"

    @property
    def submission(self) -> Path:
        return self.path / "submission.csv"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def weights(self, method: str, part: str = "classifier") -> Path:
        return self.path / f"{method}_{part}.safetensors"

    def evaluated_weights(self, method: str, cfg: Config) -> Path:
        """The weights a run's accuracies were measured with: the moving average's when it kept
        one (--ema), else the classifier's."""
        return self.weights(method, "ema" if cfg.ema else "classifier")

    def diagnostics(self, method: str) -> Path:
        return self.path / f"{method}_diagnostics.safetensors"

    def write_weights(self, method: str, part: str, module: "nn.Module", *, cfg: Config, info: WeightsInfo) -> None:
        from .checkpoint import save_weights  # torch: only where weights are written

        save_weights(module, self.weights(method, part), metadata={"config": json.dumps(cfg.to_dict()),
                                                                   "shapes": json.dumps(info.to_json())})

    def read_weights_info(self, path: Path) -> WeightsInfo:
        """The record written beside the weights in `path` (one of this folder's weights files)."""
        from .checkpoint import read_metadata

        try:
            return WeightsInfo.from_json(json.loads(read_metadata(path, "weights file")["shapes"]))
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise SganError(f"{path}: not an sgan weights file: no shapes ({e})") from None

    def write_diagnostics(self, method: str, diagnostics: Diagnostics) -> None:
        """Each evaluation set's parts as tensors named "<set>.<part>", the sets in order."""
        from .checkpoint import save_state

        save_state(self.diagnostics(method), {f"{name}.{part}": t for name, d in diagnostics.items()
                                              for part, t in d.items()}, {"sets": list(diagnostics)})

    def read_diagnostics(self, method: str) -> Diagnostics:
        from .checkpoint import load_state

        tensors, state = load_state(self.diagnostics(method))
        diagnostics: Diagnostics = {name: {} for name in state["sets"]}
        for key, t in tensors.items():
            name, part = key.rsplit(".", 1)  # a set's name may hold dots; a part's never does
            diagnostics[name][part] = t
        return diagnostics

    def sample_grid(self, method: str, step: int) -> Path:
        return self.path / "samples" / method / f"step_{step:07d}.png"

    def sample_grids(self, method: str) -> list[Path]:
        """Every saved grid of `method`, in step order."""
        return sorted(self.sample_grid(method, 0).parent.glob("step_*.png"))

    def final_samples(self, method: str) -> Path:
        return self.path / f"{method}_samples.png"

    def onnx(self, method: str) -> Path:
        """Where `sgan export` writes a method's classifier by default."""
        return self.path / f"{method}.onnx"

    def tensorboard(self, method: str) -> Path:
        return self.path / "tensorboard" / method

    def is_complete(self) -> bool:
        return self.metrics.is_file()

    def read_config(self) -> Config:
        if not self.config.is_file():
            raise SganError(f"{self.path}: not a run folder (no config.json)")
        return config_from_dict(read_json(self.config), str(self.config))

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.config, json.dumps(cfg.to_dict(), indent=2))

    def write_split(self, split: dict[str, list[int]]) -> None:
        atomic_write_text(self.split, json.dumps(split))

    def read_metrics(self) -> Metrics:
        return Metrics.from_json(read_json(self.metrics))

    def write_metrics(self, metrics: Metrics) -> None:
        atomic_write_text(self.metrics, json.dumps(metrics.to_json(), indent=2))

    def write_skipped(self, skipped: list[tuple[str, str]]) -> int:
        """skipped_files.csv: (file, reason) of image files that could not be decoded, each once;
        returns how many rows it holds."""
        rows = sorted(set(skipped))
        atomic_write_text(self.skipped, csv_text(["file", "reason"], rows))
        return len(rows)


def default_run_path() -> Path:
    """Where a run goes when no folder is named (plan.py asks, once per run)."""
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


class SweepFolder(Folder):

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def verdict(self) -> Path:
        return self.path / "verdict.md"

    @property
    def budget_plot(self) -> Path:
        return self.path / "accuracy_vs_budget.png"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def cell(self, name: str) -> RunFolder:
        return RunFolder(self.path / "runs" / name)

    def table(self, eval_set: str, suffix: str = ".md") -> Path:
        return self.path / f"table_{eval_set}{suffix}"

    def read_summary(self) -> list[dict[str, Any]]:
        """summary.json's rows (sweep/summary.py), what every table of the sweep is made from."""
        return read_json(self.summary)

    def is_sweep(self) -> bool:
        return self.summary.is_file()


class SuggestFolder(Folder):

    @property
    def picks(self) -> Path:
        """index,path,label: the images to label, the label column for a person to fill in."""
        return self.path / "picks.csv"

    @property
    def reserve(self) -> Path:
        """index,path: further candidates, in order, to stand in for picks a person skips."""
        return self.path / "reserve.csv"

    @property
    def images(self) -> Path:
        """The picks' and the reserve's images, as `sgan label` shows them."""
        return self.path / "images"

    def image(self, index: int) -> Path:
        return self.images / f"{index}.png"

    @property
    def contact_sheet(self) -> Path:
        return self.path / "picks.png"

    @property
    def summary(self) -> Path:
        """suggest.json: how the picks were made, the class names, the flags `sgan train` needs."""
        return self.path / "suggest.json"

    def train_command(self, flags: str) -> str:
        """`sgan train` on the filled-in picks, wherever this folder now is."""
        return f"sgan train {flags} --labels-csv {shlex.quote(str(self.picks.resolve()))}"
