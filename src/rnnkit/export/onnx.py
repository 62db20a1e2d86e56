"""ONNX export of the wrappers in :mod:`.graph` (the ``torch.export``-based exporter, dynamic batch and length).

The recurrence becomes one ONNX ``Scan`` per layer and direction, so any batch size and length run, the
state goes in and comes out as plain tensors (language models), and ONNX Runtime's outputs equal
PyTorch's to float rounding. Needs the ``export`` extra (``onnx``, ``onnxscript``; ``onnxruntime`` to run).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.classifier import Classifier
from ..models.language_model import LanguageModel
from .graph import graph_for, onnx_rnn_translation

#: the opset the exported graphs use (ONNX Runtime >= 1.17 runs it)
OPSET = 18


def _io(name: str, dtype: str, shape: list, description: str) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "description": description}


def signature(model: nn.Module) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The exported graph's inputs and outputs: name, dtype, shape (symbolic axes ``batch``, ``time``)."""
    enc = model.encoder.config
    if enc.vocab_size is not None:
        x = _io("tokens", "int64", ["batch", "time"], "token ids, 0 = padding")
    else:
        x = _io(
            "features", "float32", ["batch", "time", enc.input_size], "real-valued steps, standardised as in the run"
        )
    inputs = [x, _io("lengths", "int64", ["batch"], "real steps per row (1..time); later steps are padding")]
    if isinstance(model, LanguageModel):
        state = []
        for i, st in enumerate(model.init_state(1)):
            for name, s in zip(("h", "c"), st, strict=False):
                what = f"stack {i} {name} (batch, layers, size)"
                state.append(_io(f"state_{i}_{name}", "float32", ["batch", *s.shape[1:]], f"{what}; zeros to start"))
        V = model.config.encoder.vocab_size
        outputs = [_io("logits", "float32", ["batch", "time", V], "next-token scores (zero past each length)")]
        for s in state:
            what = s["description"].replace("zeros to start", "after each row's last real step")
            outputs.append(_io("next_" + s["name"], s["dtype"], s["shape"], what))
        inputs += state
    elif isinstance(model, Classifier):
        C = model.config.num_classes or model.config.output_size
        if model.is_classifier:
            outputs = [_io("logits", "float32", ["batch", C], "class scores (softmax: probabilities)")]
        else:
            outputs = [_io("values", "float32", ["batch", C], "predicted values")]
        if model.config.pooling == "attention":
            outputs.append(_io("attention", "float32", ["batch", "time"], "attention pooling weights (0 on padding)"))
    else:
        K = model.config.num_tags
        what = "per-step tag scores (zero past each length): argmax, or Viterbi with the CRF's transitions"
        outputs = [_io("emissions", "float32", ["batch", "time", K], what)]
    return inputs, outputs


def example_args(model: nn.Module, batch: int = 2, time: int = 5) -> tuple[torch.Tensor, ...]:
    """Inputs that trace every path: ragged lengths, batch and length > 1 (so neither axis specialises)."""
    enc = model.encoder.config
    g = torch.Generator().manual_seed(0)
    p = next(model.parameters())
    if enc.vocab_size is not None:
        x = torch.randint(1, enc.vocab_size, (batch, time), generator=g)
    else:
        x = torch.randn(batch, time, enc.input_size, generator=g, dtype=p.dtype)
    lengths = torch.tensor([time] + [max(1, time - 2)] * (batch - 1))
    args: tuple[torch.Tensor, ...] = (x, lengths)
    if isinstance(model, LanguageModel):
        args += tuple(s for st in model.init_state(batch) for s in st)
    return args


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, its warnings and its logger's notes kept out of the user's output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: nn.Module, path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write ``model`` (eval mode, float32, CPU) as ONNX to ``path`` atomically; returns its signature."""
    from torch.export import Dim

    path = Path(path)
    model = model.float().cpu().eval()
    graph = graph_for(model)
    inputs, outputs = signature(model)
    args = example_args(model)
    batch, time = Dim("batch"), Dim("time")
    dynamic: tuple[Any, ...] = ({0: batch, 1: time}, {0: batch})
    if len(args) > 2:  # the state: forward(tokens, lengths, *state) takes them as one tuple
        dynamic += (tuple({0: batch} for _ in args[2:]),)
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            args,
            dynamo=True,
            verbose=False,
            opset_version=OPSET,
            input_names=[i["name"] for i in inputs],
            output_names=[o["name"] for o in outputs],
            dynamic_shapes=dynamic,
            custom_translation_table={torch.ops.rnnkit_export.rnn.default: onnx_rnn_translation},
        )
    for module in model.modules():  # tracing bound fake tensors into the drop-in layers' cells: bind the real ones
        if hasattr(module, "_cell_grid"):
            module._grid()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        program.save(str(tmp), external_data=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return inputs, outputs
