"""TorchScript export: the wrappers of :mod:`.graph` traced, with the recurrence compiled by ``torch.jit.script``.

``torch.jit.script`` cannot compile rnnkit's models themselves (their layers choose paths from the data and
use Python that TorchScript lacks), and ``torch.jit.trace`` alone would unroll the time loop at the example's
length. So the recurrent layers run :func:`~rnnkit.export.graph.rnn_layer` (ONNX's equations, a time loop)
compiled by ``torch.jit.script``, and the rest is traced around it: batch and length stay dynamic, and
``torch.jit.load`` runs the file without rnnkit. Covered: classic LSTM/GRU/RNN layers without zoneout or LSTM
projection (the other cells export to ONNX). torch 2.13 deprecates TorchScript (``torch.jit.script`` and
``trace`` warn); prefer ONNX where you can.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .graph import graph_for, panel_members
from .onnx import example_args, signature


def export_torchscript(model: nn.Module, path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write ``model`` (eval mode, float32, CPU) as a TorchScript file to ``path`` atomically; returns its
    signature (the same inputs and outputs as the ONNX export). ``TypeError`` for a model it does not cover."""
    if panel_members(model):
        raise TypeError("a many-series forecaster exports to ONNX only")
    path = Path(path)
    model = model.float().cpu().eval()
    graph = graph_for(model, backend="torchscript")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation, the tracer's notes on shapes
        traced = torch.jit.trace(graph, example_args(model), check_trace=False, strict=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        traced.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return signature(model)
