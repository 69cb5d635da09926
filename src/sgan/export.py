"""A trained classifier as an ONNX file, to serve without sgan or torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import SganError
from .files import atomic


def export_onnx(module: nn.Module, path: str | Path, *, example: torch.Tensor) -> None:
    """`module` traced on `example` (N, C, H, W), the batch size left free; written atomically."""
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise SganError("ONNX export needs the onnx and onnxscript packages: pip install 'sgan[export]'") from None
    batch = torch.export.Dim("batch", min=1)
    with atomic(Path(path)) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        torch.onnx.export(module.eval(), (example,), str(tmp), input_names=["images"], output_names=["probabilities"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)
