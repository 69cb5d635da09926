"""Weights and training state as safetensors (never pickle), written atomically, config inside,
with a digest of the contents that every load checks: a damaged copy is refused, never used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
import torch
from torch import nn

from .errors import SganError
from .files import atomic

FORMAT_VERSION = 2  # 2: the metadata carries "digest"; version 1 files (without one) are refused


def digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes and every metadata item but the
    digest itself, in sorted order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for key in sorted(set(metadata) - {"digest"}):
        h.update(f"{key}={metadata[key]}|".encode())
    return h.hexdigest()


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    metadata = {**metadata, "format_version": str(FORMAT_VERSION)}
    metadata["digest"] = digest(tensors, metadata)
    with atomic(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its I/O errors (a full disk) are reported as write errors
            raise OSError(str(e).removeprefix("Error while serializing: ")) from None


def read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a file write_safetensors wrote, its digest checked. `what` names
    the kind of file in the one-line refusal."""
    if not path.is_file():
        raise SganError(f"{path}: {what} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise SganError(f"{path}: not an sgan {what}, refused: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    version = metadata.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise SganError(f"{path}: {what} format {version}, this sgan reads {FORMAT_VERSION} (files without a content "
                        "digest are from an older sgan: train again)")
    if metadata.get("digest") != digest(tensors, metadata):
        raise SganError(f"{path}: damaged {what}: its contents do not match the digest written with it, refused")
    return tensors, metadata


def save_weights(module: nn.Module, path: Path, *, metadata: dict[str, str]) -> None:
    """A module's weights with `metadata` (run.py's WeightsInfo and config: what a reader needs to
    rebuild the network before loading)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_safetensors(path, state, metadata)


def read_metadata(path: Path, what: str) -> dict[str, str]:
    return read_safetensors(path, what)[1]


def load_weights(module: nn.Module, path: Path) -> None:
    state, _ = read_safetensors(path, "weights file")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise SganError(f"{path}: weights do not fit the network: {str(e).splitlines()[0]}") from None


def save_state(path: Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """A training checkpoint in one file: tensors as safetensors, the rest as JSON in its
    metadata. Written to a temporary file, then renamed: a kill mid-write leaves the last one."""
    write_safetensors(path, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {"state": json.dumps(state)})


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The inverse of save_state. Never unpickles: anything but a safetensors file with our
    metadata and a matching digest (a pickle renamed, a truncated or damaged file) is refused."""
    tensors, metadata = read_safetensors(path, "checkpoint")
    try:
        return tensors, json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as e:
        raise SganError(f"{path}: not an sgan checkpoint, refused: no training state ({e})") from None
