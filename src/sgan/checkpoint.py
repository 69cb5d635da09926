"""Weights and training state as safetensors (never pickle), written atomically, config inside."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
import torch
from torch import nn

from .errors import SganError
from .files import atomic

FORMAT_VERSION = 1


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its I/O errors (a full disk) are reported as write errors
            raise OSError(str(e).removeprefix("Error while serializing: ")) from None


def save_weights(module: nn.Module, path: Path, *, config: dict, shapes: dict) -> None:
    """`shapes` (channels, classes, ...) lets a reader rebuild the network before loading."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    metadata = {"format_version": str(FORMAT_VERSION), "config": json.dumps(config), "shapes": json.dumps(shapes)}
    write_safetensors(path, state, metadata)


def read_shapes(path: Path) -> dict:
    if not path.is_file():
        raise SganError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["shapes"])
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise SganError(f"{path}: not an sgan weights file: {e}") from None


def load_weights(module: nn.Module, path: Path) -> None:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise SganError(f"{path}: not a readable safetensors file: {e}") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise SganError(f"{path}: weights do not fit the network: {str(e).splitlines()[0]}") from None


def save_state(path: Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """A training checkpoint in one file: tensors as safetensors, the rest as JSON in its
    metadata. Written to a temporary file, then renamed: a kill mid-write leaves the last one."""
    write_safetensors(path, {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                      {"format_version": str(FORMAT_VERSION), "state": json.dumps(state)})


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The inverse of save_state. Never unpickles: anything but a safetensors file with our
    metadata (a pickle renamed, a truncated file) is refused."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta["state"])
        version = int(meta["format_version"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise SganError(f"{path}: not an sgan checkpoint, refused: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if version != FORMAT_VERSION:
        raise SganError(f"{path}: checkpoint format {version}, this sgan reads {FORMAT_VERSION}")
    return tensors, state
