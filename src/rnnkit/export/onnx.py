"""ONNX export of the wrappers in :mod:`.graph` (the ``torch.export``-based exporter, dynamic batch and length).

A many-series forecaster's graph has a dynamic batch and window (``season`` and ``known`` are ``window + H``
long); its recurrent encoder is the same ``LSTM``/``GRU`` node (or ``Scan``) as the other kinds'.

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
from .graph import first_member, graph_for, onnx_rnn_translation, panel_members

#: the opset the exported graphs use (ONNX Runtime >= 1.17 runs it)
OPSET = 18


def _io(name: str, dtype: str, shape: list, description: str) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "description": description}


def panel_signature(model: nn.Module, with_level: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A many-series forecaster's inputs and outputs (symbolic axes ``batch``, ``window``): the tensors the
    forecasting task feeds the model, in :class:`~rnnkit.export.graph.PanelForecasterGraph`'s order."""
    cfg = panel_members(model)[0].config
    H, Q = cfg.horizon, len(cfg.quantiles)
    future = f"window+{H}"
    inputs = [
        _io("window", "float32", ["batch", "window"], "the last values before the forecast origin, oldest first"),
        _io("mask", "float32", ["batch", "window"], "1 at real values, 0 at left padding (a shorter series)"),
        _io("season", "float32", ["batch", future], "multiplicative seasonal factors of the window and horizon steps"),
    ]
    if with_level:
        inputs.append(_io("level", "float32", ["batch"], "the series' exponential-smoothing level at the origin"))
    if cfg.known:
        inputs.append(_io("known", "float32", ["batch", future, cfg.known], "known covariates, window and horizon"))
    if cfg.static:
        inputs.append(_io("static", "float32", ["batch", cfg.static], "static covariates of each series"))
    taus = ", ".join(f"{q:g}" for q in cfg.quantiles)
    outputs = [
        _io("quantiles", "float32", ["batch", H, Q], f"quantile forecasts ({taus}), in the units of window"),
        _io("median", "float32", ["batch", H], "the 0.5 quantile: the point forecast"),
    ]
    return inputs, outputs


def signature(model: nn.Module, with_level: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The exported graph's inputs and outputs: name, dtype, shape (symbolic axes ``batch``, ``time``;
    ``window`` for a many-series forecaster, whose ``with_level`` says whether it takes a ``level``)."""
    if panel_members(model):
        return panel_signature(model, with_level)
    member = first_member(model)
    enc = member.encoder.config
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
    elif isinstance(member, Classifier):
        C = member.config.num_classes or member.config.output_size
        if member.is_classifier:
            outputs = [_io("logits", "float32", ["batch", C], "class scores (softmax: probabilities)")]
        else:
            outputs = [_io("values", "float32", ["batch", C], "predicted values")]
        if member.config.pooling == "attention":
            outputs.append(_io("attention", "float32", ["batch", "time"], "attention pooling weights (0 on padding)"))
    else:
        K = model.config.num_tags
        what = "per-step tag scores (zero past each length): argmax, or Viterbi with the CRF's transitions"
        outputs = [_io("emissions", "float32", ["batch", "time", K], what)]
    return inputs, outputs


def panel_example_args(model: nn.Module, with_level: bool = False, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """A many-series forecaster's example inputs: positive windows, one row left-padded, a window longer than
    the horizon and the batch (so no axis specialises or is tied to another)."""
    cfg = panel_members(model)[0].config
    H = cfg.horizon
    W = batch + 2 * H + 3
    g = torch.Generator().manual_seed(0)
    window = torch.rand(batch, W, generator=g) * 10 + 1
    mask = torch.ones(batch, W)
    mask[-1, : W // 2] = 0
    args: tuple[torch.Tensor, ...] = (window, mask, torch.rand(batch, W + H, generator=g) + 0.5)
    if with_level:
        args += (torch.rand(batch, generator=g) * 10 + 1,)
    if cfg.known:
        args += (torch.randn(batch, W + H, cfg.known, generator=g),)
    if cfg.static:
        args += (torch.randn(batch, cfg.static, generator=g),)
    return args


def example_args(model: nn.Module, batch: int = 2, time: int = 5) -> tuple[torch.Tensor, ...]:
    """Inputs that trace every path: ragged lengths, batch and length > 1 (so neither axis specialises)."""
    enc = first_member(model).encoder.config
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


def _panel_dynamic(model: nn.Module, inputs: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Dynamic axes of a many-series forecaster's inputs: batch, and the window (``window + H`` for season and
    known); forward(window, mask, season, *extra) takes the extra inputs as one tuple."""
    from torch.export import Dim

    batch, window = Dim("batch"), Dim("window", min=1)
    future = window + panel_members(model)[0].config.horizon
    axes = {"window": {0: batch, 1: window}, "mask": {0: batch, 1: window}, "season": {0: batch, 1: future},
            "level": {0: batch}, "known": {0: batch, 1: future}, "static": {0: batch}}  # fmt: skip
    dims = [axes[i["name"]] for i in inputs]
    return (*dims[:3], tuple(dims[3:])) if len(dims) > 3 else tuple(dims)


def export_onnx(
    model: nn.Module, path: str | Path, with_level: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write ``model`` (eval mode, float32, CPU) as ONNX to ``path`` atomically; returns its signature.
    ``with_level``: a many-series forecaster's graph takes the series' level as an input."""
    from torch.export import Dim

    path = Path(path)
    model = model.float().cpu().eval()
    graph = graph_for(model, with_level=with_level)
    inputs, outputs = signature(model, with_level)
    if panel_members(model):
        args = panel_example_args(model, with_level)
        dynamic: tuple[Any, ...] = _panel_dynamic(model, inputs)
    else:
        args = example_args(model)
        batch, time = Dim("batch"), Dim("time")
        dynamic = ({0: batch, 1: time}, {0: batch})
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
