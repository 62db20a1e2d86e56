"""Export-friendly forward passes: the models' inference computation with explicit masks and states.

The models' own ``forward`` picks paths from the data (sorting by length, cutting time at each distinct
length, skipping work when nothing is padded); an exported graph must not. These wrappers recompute
exactly what the models compute in eval mode, with every data-dependent choice replaced by masks:

* a drop-in ``LSTM``/``GRU``/``RNN`` layer (no zoneout, no LSTM projection) becomes one ONNX ``LSTM`` /
  ``GRU`` / ``RNN`` node per layer (both directions in it, ``sequence_lens`` = the lengths), through the
  custom op :func:`onnx_rnn` and its translation :func:`onnx_rnn_translation`: ONNX Runtime's fused
  kernels, and ``DynamicQuantizeLSTM`` once quantized to int8. ONNX's semantics for ``sequence_lens``
  are rnnkit's for ``lengths`` (zero outputs past each length, each direction's final state at the
  end of its own pass), and its gate orders differ from torch's only by a permutation of the blocks;
* every other recurrent layer and direction runs its own rnnkit cell (``project_input`` over the whole
  sequence, then ``recur`` step by step in :func:`torch._higher_order_ops.scan`, which the ONNX
  exporter turns into one ``Scan`` node, so batch and length stay dynamic); at padded steps the state
  is carried unchanged and the output is zero — the loop path's contract, so outputs and final states
  equal the model's for ragged batches;
* the backward direction reads each sequence reversed within its own length;
* pooling ignores padding by masks (mean / max / last / attention);
* a many-series forecaster (:class:`PanelForecasterGraph`) takes exactly the tensors the forecasting task feeds
  it, computes its default level over the last ``level_steps`` real inputs with a position mask (not a slice
  whose length depends on the window), and takes an ensemble's median over members as the lower middle of
  the sorted members (``torch.median``'s convention).

Inputs and outputs are plain tensors (names in :data:`SIGNATURES`), so ONNX Runtime, TorchScript or any
caller can feed them. Shape legend: ``B`` batch, ``T`` time, ``L`` layers, ``S`` state size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from ..layers import Recurrent
from ..layers.masking import reverse_padded
from ..models.base import mixture_log_probs
from ..models.classifier import Classifier, ClassifierEnsemble
from ..models.encoder import SequenceEncoder
from ..models.forecaster import Z_CLAMP, PanelForecaster, PanelForecasterEnsemble
from ..models.language_model import LanguageModel
from ..models.tagger import Tagger

State = tuple[Tensor, ...]


def _run_cell(cell: nn.Module, x: Tensor, state: State, mask: Tensor, zoneout: float) -> tuple[Tensor, State]:
    """One cell over ``x`` (B, T, I) from ``state`` (tuple of (B, S)); ``mask`` (B, T) bool."""
    xp = cell.project_input(x).transpose(0, 1)  # (T, B, G)

    def body(carry: State, step: tuple[Tensor, Tensor]):
        xp_t, m_t = step
        y, new = cell.recur(xp_t, carry)
        if zoneout:  # eval-mode zoneout: the expectation p * old + (1 - p) * new
            new = tuple(zoneout * o + (1 - zoneout) * n for o, n in zip(carry, new, strict=True))
            y = new[0]
        m = m_t.unsqueeze(1)
        new = tuple(torch.where(m, n, o) for n, o in zip(new, carry, strict=True))
        return new, y * m.to(y.dtype)

    final, ys = scan(body, tuple(state), (xp, mask.transpose(0, 1)))
    return ys.transpose(0, 1), final


def _zero_state(stack: nn.Module, x: Tensor) -> State:
    """A stack's zero state in torch's layout, tuple of (L*D, B, S)."""
    D = 2 if stack.bidirectional else 1
    n, B = stack.num_layers * D, x.shape[0]
    if isinstance(stack, Recurrent):
        sizes = stack.cells[0][0].state_sizes
    elif stack.mode == "LSTM":
        sizes = (stack.proj_size or stack.hidden_size, stack.hidden_size)
    else:
        sizes = (stack.hidden_size,)
    return tuple(x.new_zeros(n, B, s) for s in sizes)


def run_stack(stack: nn.Module, x: Tensor, lengths: Tensor, mask: Tensor, state: State | None) -> tuple[Tensor, State]:
    """A drop-in ``LSTM/GRU/RNN`` or a :class:`~rnnkit.layers.Recurrent` in eval mode, ``x`` (B, T, I)
    -> (outputs (B, T, D*O), final state tuple of (L*D, B, S)); ``state`` in the same layout or None."""
    grid = stack._grid()
    D = len(grid[0])
    state = _zero_state(stack, x) if state is None else state
    finals: list[State] = []
    for layer, row in enumerate(grid):
        outs = []
        for d, cell in enumerate(row):
            s0 = tuple(s[layer * D + d] for s in state)
            inp = x if d == 0 else reverse_padded(x, lengths)
            out, fin = _run_cell(cell, inp, s0, mask, stack.zoneout)
            outs.append(out if d == 0 else reverse_padded(out, lengths))
            finals.append(fin)
        x = outs[0] if D == 1 else torch.cat(outs, -1)
    return x, tuple(torch.stack([f[k] for f in finals]) for k in range(len(state)))


#: torch's gate blocks -> ONNX's: LSTM (i, f, g, o) -> (i, o, f, c); GRU (r, z, n) -> (z, r, h)
ONNX_GATES = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}


def _reverse(x: Tensor, lengths: Tensor) -> Tensor:
    """Each row of ``x`` (B, T, F) reversed within its own length (:func:`~rnnkit.layers.reverse_padded`,
    written for TorchScript)."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand(x.shape))


def rnn_layer(
    x: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor, w: Tensor, r: Tensor, b: Tensor, mode: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One ONNX ``LSTM``/``GRU``/``RNN`` layer, batch-first: ``x`` (B, T, I), ``h0``/``c0`` (D, B, H), ONNX-ordered
    ``w`` (D, G*H, I), ``r`` (D, G*H, H), ``b`` (D, 2*G*H) -> (y (B, T, D*H), h_n, c_n), by ONNX's equations step
    by step (``c`` is ``h`` for GRU/RNN). The eager side of :func:`onnx_rnn`, and what TorchScript compiles."""
    T = x.shape[1]
    D = w.shape[0]
    G = w.shape[1]
    mask = torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    outs: list[Tensor] = []
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    for d in range(D):
        inp = x if d == 0 else _reverse(x, lengths)
        xw = torch.matmul(inp, w[d].t()) + b[d, :G]
        rb = b[d, G:]
        h = h0[d]
        c = c0[d]
        ys: list[Tensor] = []
        for t in range(T):
            m = mask[:, t : t + 1]
            hr = torch.matmul(h, r[d].t()) + rb
            if mode == "LSTM":
                i, o, f, cc = (xw[:, t] + hr).chunk(4, -1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cc)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
            elif mode == "GRU":  # linear_before_reset = 1, torch's GRU
                xz, xr, xh = xw[:, t].chunk(3, -1)
                hz, hr_, hh = hr.chunk(3, -1)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xh + torch.sigmoid(xr + hr_) * hh)
                h_new = (1 - z) * n + z * h
                c_new = h_new
            else:
                pre = xw[:, t] + hr
                h_new = torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)
                c_new = h_new
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            ys.append(h_new * m.to(h_new.dtype))
        y = torch.stack(ys, 1)
        outs.append(y if d == 0 else _reverse(y, lengths))
        hs.append(h)
        cs.append(c)
    return torch.cat(outs, -1), torch.stack(hs), torch.stack(cs)


@torch.library.custom_op("rnnkit_export::rnn", mutates_args=())
def onnx_rnn(
    x: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor, w: Tensor, r: Tensor, b: Tensor, mode: str
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`rnn_layer` as one op, which the ONNX export turns into one ``LSTM``/``GRU``/``RNN`` node."""
    return rnn_layer(x, lengths, h0, c0, w, r, b, mode)


_SCRIPTED: list = []


def scripted_rnn_layer():
    """:func:`rnn_layer` compiled by TorchScript (once; torch 2.13 warns that TorchScript is deprecated)."""
    import warnings

    if not _SCRIPTED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _SCRIPTED.append(torch.jit.script(rnn_layer))
    return _SCRIPTED[0]


@onnx_rnn.register_fake
def _(x, lengths, h0, c0, w, r, b, mode):
    return x.new_empty(x.shape[0], x.shape[1], w.shape[0] * r.shape[2]), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def onnx_rnn_translation(x, lengths, h0, c0, w, r, b, mode: str):
    """:func:`onnx_rnn` as one ONNX node (for ``torch.onnx.export``'s ``custom_translation_table``)."""
    from onnxscript import opset18 as op

    D, H = w.shape[0], r.shape[2]
    direction = "bidirectional" if D == 2 else "forward"
    xt = op.Transpose(x, perm=[1, 0, 2])  # (T, B, I)
    seq = op.Cast(lengths, to=6)  # int32
    if mode == "LSTM":
        y, yh, yc = op.LSTM(xt, w, r, b, seq, h0, c0, hidden_size=H, direction=direction)
    elif mode == "GRU":
        y, yh = op.GRU(xt, w, r, b, seq, h0, hidden_size=H, direction=direction, linear_before_reset=1)
        yc = op.Identity(yh)
    else:
        act = "Tanh" if mode == "RNN_TANH" else "Relu"
        y, yh = op.RNN(xt, w, r, b, seq, h0, hidden_size=H, direction=direction, activations=[act] * D)
        yc = op.Identity(yh)
    y = op.Transpose(y, perm=[2, 0, 1, 3])  # (T, D, B, H) -> (B, T, D, H)
    shape = op.Concat(op.Shape(x, start=0, end=2), op.Constant(value_ints=[D * H]), axis=0)
    return op.Reshape(y, shape), yh, yc


def fuses(stack: nn.Module) -> bool:
    """Whether a stack becomes ONNX ``LSTM``/``GRU``/``RNN`` nodes (else: one ``Scan`` per layer and direction)."""
    return (
        not isinstance(stack, Recurrent)
        and getattr(stack, "mode", None) in ONNX_GATES
        and not stack.zoneout
        and not getattr(stack, "proj_size", 0)
    )


def _onnx_weights(stack: nn.Module, layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """A layer's weights in ONNX's layout and gate order: W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H)."""
    order = ONNX_GATES[stack.mode]

    def blocks(t: Tensor) -> Tensor:
        return torch.cat([t.chunk(len(order), 0)[k] for k in order], 0)

    ws, rs, bs = [], [], []
    for d in range(2 if stack.bidirectional else 1):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(stack, "weight_ih" + sfx), getattr(stack, "weight_hh" + sfx)
        ws.append(blocks(w_ih))
        rs.append(blocks(w_hh))
        if stack.bias:
            bs.append(torch.cat([blocks(getattr(stack, "bias_ih" + sfx)), blocks(getattr(stack, "bias_hh" + sfx))]))
        else:
            bs.append(w_ih.new_zeros(2 * w_ih.shape[0]))
    return tuple(torch.stack(t).detach().clone() for t in (ws, rs, bs))


class EncoderGraph(nn.Module):
    """:class:`SequenceEncoder` in eval mode with masks: ``(x, lengths, state)`` -> (outputs (B, T, D*H),
    per-stack final states (tuples of (L*D, B, S)), mask (B, T)). Holds the ONNX-ordered weights of the
    stacks that fuse as buffers (initializers in the exported graph, so int8 quantization finds them)."""

    def __init__(self, encoder: SequenceEncoder, backend: str = "onnx") -> None:
        super().__init__()
        self.encoder = encoder
        self.layer_fn = scripted_rnn_layer() if backend == "torchscript" else onnx_rnn
        if backend == "torchscript" and not all(fuses(s) for s in encoder.stacks):
            raise TypeError("torchscript covers LSTM/GRU/RNN layers without zoneout or projection")
        for i, stack in enumerate(encoder.stacks):
            if fuses(stack):
                for layer in range(stack.num_layers):
                    for name, t in zip("wrb", _onnx_weights(stack, layer), strict=True):
                        self.register_buffer(f"s{i}_l{layer}_{name}", t)

    def _fused(self, i: int, stack: nn.Module, x: Tensor, lengths: Tensor, state: State | None) -> tuple[Tensor, State]:
        D = 2 if stack.bidirectional else 1
        state = _zero_state(stack, x) if state is None else state
        finals: list[list[Tensor]] = [[] for _ in state]
        for layer in range(stack.num_layers):
            h0 = state[0][layer * D : (layer + 1) * D]
            c0 = state[1][layer * D : (layer + 1) * D] if len(state) == 2 else h0
            w, r, b = (getattr(self, f"s{i}_l{layer}_{n}") for n in "wrb")
            x, h, c = self.layer_fn(x, lengths, h0, c0, w, r, b, stack.mode)
            finals[0].append(h)
            if len(state) == 2:
                finals[1].append(c)
        return x, tuple(torch.cat(f, 0) for f in finals)

    def forward(self, x: Tensor, lengths: Tensor, state: list[State] | None = None):
        encoder = self.encoder
        T = x.shape[1]
        mask = torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        h = encoder.embedding(x) if encoder.embedding is not None else x
        finals = []
        for i, stack in enumerate(encoder.stacks):
            s0 = None if state is None else state[i]
            if fuses(stack):
                h, s = self._fused(i, stack, h, lengths, s0)
            else:
                h, s = run_stack(stack, h, lengths, mask, s0)
            finals.append(s)
        return h, finals, mask


def _last(x: Tensor, lengths: Tensor) -> Tensor:
    idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return x.gather(1, idx).squeeze(1)


class ClassifierGraph(nn.Module):
    """``tokens`` (B, T) int64 or ``features`` (B, T, F) float32, ``lengths`` (B,) int64 -> ``logits`` (B, C)
    (``values`` (B, O) for regression), and with attention pooling also its ``attention`` weights (B, T)."""

    def __init__(self, model: Classifier, backend: str = "onnx") -> None:
        super().__init__()
        self.model = model
        self.encoder = EncoderGraph(model.encoder, backend)

    def forward(self, x: Tensor, lengths: Tensor):
        m = self.model
        out, _, mask = self.encoder(x, lengths)
        pool = m.pool
        mask3 = mask.unsqueeze(-1)
        if pool.kind == "mean":
            pooled = out.masked_fill(~mask3, 0.0).sum(1) / lengths.to(out.dtype).unsqueeze(-1)
        elif pool.kind == "max":
            pooled = out.masked_fill(~mask3, float("-inf")).amax(1)
        elif pool.kind == "attention":
            att = pool.attention
            xm = out.masked_fill(~mask3, 0.0)
            scores = att.v(torch.tanh(att.proj(xm))).squeeze(-1)  # (B, T)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, -1).masked_fill(~mask, 0.0)
            return m.head(torch.bmm(weights.unsqueeze(1), xm).squeeze(1)), weights
        elif pool.bidirectional:
            H = out.shape[-1] // 2
            pooled = torch.cat([_last(out[..., :H], lengths), out[:, 0, H:]], -1)
        else:
            pooled = _last(out, lengths)
        return m.head(pooled)


class ClassifierEnsembleGraph(nn.Module):
    """A :class:`~rnnkit.models.ClassifierEnsemble`: each member's :class:`ClassifierGraph` on the same inputs,
    combined as the model combines them: ``logits`` = log of the members' mean probabilities (softmax of it gives
    them back), ``values`` = the members' mean; ``attention`` = the members' mean weights. A shared embedding
    table is one initializer in the graph."""

    def __init__(self, model: ClassifierEnsemble, backend: str = "onnx") -> None:
        super().__init__()
        self.model = model
        self.members = nn.ModuleList(ClassifierGraph(m, backend) for m in model.members)

    def forward(self, x: Tensor, lengths: Tensor):
        outs = [g(x, lengths) for g in self.members]
        attention = isinstance(outs[0], tuple)
        scores = [o[0] for o in outs] if attention else outs
        combined = mixture_log_probs(scores) if self.model.is_classifier else torch.stack(scores).mean(0)
        if attention:
            return combined, torch.stack([o[1] for o in outs]).mean(0)
        return combined


class TaggerGraph(nn.Module):
    """``tokens``/``features``, ``lengths`` -> ``emissions`` (B, T, K), zero past each length (with a CRF,
    Viterbi-decode them with the transitions written beside the model)."""

    def __init__(self, model: Tagger, backend: str = "onnx") -> None:
        super().__init__()
        self.model = model
        self.encoder = EncoderGraph(model.encoder, backend)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out, _, mask = self.encoder(x, lengths)
        return self.model.head(out).masked_fill(~mask.unsqueeze(-1), 0.0)


class LanguageModelGraph(nn.Module):
    """``tokens`` (B, T), ``lengths`` (B,) and the state (per stack and component, (B, L, S)) -> ``logits``
    (B, T, V) (zero past each length) and the state after each sequence's last real step, same layout:
    feed it back with the next chunk to stream."""

    def __init__(self, model: LanguageModel, backend: str = "onnx") -> None:
        super().__init__()
        self.model = model
        self.encoder = EncoderGraph(model.encoder, backend)
        self.components = [len(s) for s in model.init_state(1)]

    def forward(self, tokens: Tensor, lengths: Tensor, *state: Tensor):
        m = self.model
        nest, k = [], 0
        for n in self.components:
            nest.append(tuple(s.transpose(0, 1) for s in state[k : k + n]))  # (B, L, S) -> (L, B, S)
            k += n
        out, finals, mask = self.encoder(tokens, lengths, nest)
        if m.proj is not None:
            out = m.proj(out)
        logits = m.decoder(out).masked_fill(~mask.unsqueeze(-1), 0.0)
        return (logits, *(s.transpose(0, 1) for st in finals for s in st))


def panel_members(model: nn.Module) -> list[PanelForecaster]:
    """The :class:`PanelForecaster` s of a panel model (one, or an ensemble's members); ``[]`` for any other."""
    if isinstance(model, PanelForecasterEnsemble):
        return list(model.members)
    return [model] if isinstance(model, PanelForecaster) else []


class PanelForecasterGraph(nn.Module):
    """A :class:`PanelForecaster` or its ensemble in eval mode, on the tensors the forecasting task feeds it:
    ``window`` (B, W), ``mask`` (B, W) (1 real, 0 left padding), ``season`` (B, W+H), then ``level`` (B,) when
    ``with_level`` (the run's ES level), ``known`` (B, W+H, K) and ``static`` (B, S) when the config has them
    -> ``quantiles`` (B, H, Q) sorted, ``median`` (B, H), in the units of ``window`` (what ``forward`` returns)."""

    def __init__(self, model: nn.Module, backend: str = "onnx", with_level: bool = False) -> None:
        super().__init__()
        members = panel_members(model)
        if not members:
            raise TypeError(type(model).__name__)
        self.members = nn.ModuleList(members)
        self.encoders = nn.ModuleList(EncoderGraph(m.encoder, backend) for m in members)
        self.with_level = with_level
        cfg = members[0].config
        self.has_known, self.has_static = cfg.known > 0, cfg.static > 0
        self.median_index = members[0].median_index

    def _level(self, m: PanelForecaster, d: Tensor, mask: Tensor) -> Tensor:
        """The model's default level (B,): the mean of the last ``level_steps`` deseasonalised real inputs,
        selected by position (so no branch on ``W``)."""
        W = d.shape[1]
        recent = (torch.arange(W, device=d.device) >= W - m.config.level_steps).to(d.dtype)  # (W,)
        w = mask * recent
        vals = d.abs() if m.config.scaling == "ratio" else d
        return (vals * w).sum(1) / w.sum(1).clamp_min(1.0)

    def _normalise(self, m: PanelForecaster, window: Tensor, mask: Tensor, season: Tensor, level: Tensor | None):
        """:meth:`PanelForecaster._normalise`: z (B, W), scale (B, H)."""
        W = window.shape[1]
        d = window / season[:, :W].clamp_min(1e-8)
        level = self._level(m, d, mask) if level is None else level.to(window.dtype)
        if m.config.scaling == "log":
            level = level.clamp_min(1e-8)
            z = torch.log(d.clamp_min(1e-8) / level[:, None])
        else:
            level = torch.where(level.abs() > 1e-8, level, torch.ones_like(level))
            z = d / level[:, None] - 1
        return z.clamp(-Z_CLAMP, Z_CLAMP) * mask, level[:, None] * season[:, W:]

    def _member(self, k: int, window: Tensor, mask: Tensor, season: Tensor, level, known, static) -> Tensor:
        m, enc = self.members[k], self.encoders[k]
        z, scale = self._normalise(m, window, mask, season, level)
        W, H = z.shape[1], m.config.horizon
        full = torch.ones_like(mask, dtype=torch.long).sum(1)  # every row runs all W steps (padding is in mask)
        if m.config.head == "direct":
            _, states, _ = enc(m._rows(z, mask, None if known is None else known[:, :W], static), full)
            extra = [m.encoder.top_hidden(states)]
            if known is not None:
                extra.append(known[:, W:].flatten(1).to(z.dtype))
            if static is not None:
                extra.append(static.to(z.dtype))
            q = m.head(torch.cat(extra, -1)).view(z.shape[0], H, -1)
        else:
            nxt = None if known is None else known[:, 1 : W + 1]
            out, state, _ = enc(m._rows(z, mask, nxt, static), full)
            qs = [m.head(out[:, -1])]
            one, step = mask[:, :1].new_ones(mask.shape[0], 1), full.new_ones(full.shape)
            for j in range(1, H):
                zk = qs[-1][:, m.median_index : m.median_index + 1].clamp(-Z_CLAMP, Z_CLAMP)
                kn = None if known is None else known[:, W + j : W + j + 1]
                out, state, _ = enc(m._rows(zk, one, kn, static), step, state)
                qs.append(m.head(out[:, -1]))
            q = torch.stack(qs, 1)
        return m._denormalise(q, scale).sort(dim=-1).values  # (B, H, Q)

    def forward(self, window: Tensor, mask: Tensor, season: Tensor, *extra: Tensor):
        rest = list(extra)
        level = rest.pop(0) if self.with_level else None
        known = rest.pop(0) if self.has_known else None
        static = rest.pop(0) if self.has_static else None
        mask, season = mask.to(window.dtype), season.to(window.dtype)
        qs = [self._member(k, window, mask, season, level, known, static) for k in range(len(self.members))]
        # an ensemble: torch.median over members (the lower middle one), sorted again
        lower_middle = (len(qs) - 1) // 2
        q = qs[0] if len(qs) == 1 else torch.stack(qs).sort(dim=0).values[lower_middle].sort(dim=-1).values
        return q, q[..., self.median_index]


def graph_for(model: nn.Module, backend: str = "onnx", with_level: bool = False) -> nn.Module:
    """The export wrapper of a model (``backend``: ``"onnx"`` or ``"torchscript"``), or a ``TypeError``.
    ``with_level``: a many-series forecaster takes the series' level as an input (the run's ES level)."""
    if panel_members(model):
        return PanelForecasterGraph(model, backend, with_level).eval()
    kinds = (
        (Classifier, ClassifierGraph),
        (ClassifierEnsemble, ClassifierEnsembleGraph),
        (Tagger, TaggerGraph),
        (LanguageModel, LanguageModelGraph),
    )
    for cls, graph in kinds:
        if isinstance(model, cls):
            return graph(model, backend).eval()
    raise TypeError(type(model).__name__)


#: the model kinds that export, for messages
EXPORTABLE = (
    "classifier",
    "classifier-ensemble",
    "tagger",
    "language_model",
    "panel-forecaster",
    "panel-forecaster-ensemble",
)
#: the kinds ``--format torchscript`` covers (the panel forecasters export to ONNX only)
TORCHSCRIPT_KINDS = ("classifier", "classifier-ensemble", "tagger", "language_model")


def first_member(model: nn.Module) -> nn.Module:
    """The model whose encoder and head an export describes: an ensemble's first member (every member has the
    same architecture), else the model itself."""
    return model.members[0] if isinstance(model, ClassifierEnsemble) else model
