"""The generic time loop that runs any cell over a sequence, and its fused fast path.

:class:`Recurrent` stacks cells (``num_layers``), runs them in both directions, honours
``lengths`` without packing, and adds the regularisers ``torch.nn`` lacks. When every cell is a
classic :class:`~rnnkit.cells.RNNCell` / :class:`~rnnkit.cells.LSTMCell` /
:class:`~rnnkit.cells.GRUCell` and no option needs a per-step hook, the same parameters are run
through PyTorch's fused kernel (oneDNN on CPU, cuDNN on GPU); otherwise the time loop runs
(``"loop"``: the LSTM cells run the hand-differentiated loop of :mod:`rnnkit.layers.fastloop`, other
cells ``recur`` per step; ``"reference"``: ``recur`` per step under autograd for every cell, the
oracle). ``layer.path`` says which path the next call takes, ``layer.last_path`` which one ran.
:meth:`RecurrentStack.step` runs one step at a time for streaming inference.

Shape legend: ``B`` batch, ``T`` time, ``I`` input, ``H`` hidden, ``O`` cell output, ``L`` layers,
``D`` directions (1 or 2). Inputs are batch-first ``(B, T, I)``. The final state is a tuple with one
tensor per state component, each ``(L*D, B, S)`` indexed ``layer * D + direction`` (torch's layout).

Lengths: with ``lengths`` (B,), outputs past a sequence's length are zero and the final state is
the state at that sequence's own last step; the backward direction starts at each sequence's own
end (not at the padding). Results equal running each sequence alone.

Regularisers (all off by default, active only in training unless said otherwise):

* ``dropout`` — between layers, on each layer's output except the last (torch's meaning); with
  ``variational_dropout=True`` one mask per sequence is shared over time (Gal & Ghahramani 2016).
* ``input_dropout`` / ``output_dropout`` — locked (variational) dropout on the layer's input
  sequence and final output sequence: one mask per sequence and feature, shared over time.
* ``recurrent_dropout`` — a locked mask on ``h_{t-1}`` where it enters the hidden-to-hidden
  product (Gal & Ghahramani 2016); the carried state is not masked. Needs the loop.
* ``weight_drop`` — DropConnect on the hidden-to-hidden weight, one dropped copy per call
  (Merity et al. 2018, AWD-LSTM). Runs on the fused path.
* ``zoneout`` — each state unit keeps its previous value with probability ``p`` (Krueger et al.
  2016); at evaluation the expectation ``p * old + (1 - p) * new`` is used. Needs the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell, State
from ..cells.base import check_positive_int, check_probability
from . import fastloop
from .masking import check_lengths, lengths_to_mask, reverse_padded

PATHS = ("auto", "fused", "loop", "reference")


# -- regularisers -------------------------------------------------------------------------------
def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per sequence and feature, shared over time: ``x`` (B, T, F)."""
    if not training or p == 0.0:
        return x
    if p == 1.0:  # torch's dropout=1.0 (the drop-ins accept it): everything dropped
        return x * 0.0
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


def _zoneout(old: State, new: State, p: float, training: bool) -> State:
    if training:
        return tuple(torch.where(torch.rand_like(n) < p, o, n) for o, n in zip(old, new, strict=True))
    return tuple(p * o + (1 - p) * n for o, n in zip(old, new, strict=True))


# -- the reference loop -------------------------------------------------------------------------
def run_cell(
    cell: RecurrentCell,
    xp: Tensor,
    state: State,
    mask: Tensor | None,
    *,
    weight_hh: Tensor | None = None,
    h_mask: Tensor | None = None,
    zoneout: float = 0.0,
    training: bool = False,
    reference: bool = False,
    xp_has_bias_hh: bool = False,
) -> tuple[Tensor, State]:
    """Run one cell forward in time over a projected input ``xp`` (B, T, G).

    ``mask`` (B, T) marks real steps: at padded steps the state is carried unchanged and the
    output is zero. Returns outputs (B, T, O) and the final state. Cells with a parallel ``scan``
    (minGRU/minLSTM) use it when no per-step hook is needed; the LSTM cells run the
    hand-differentiated loop of :mod:`rnnkit.layers.fastloop` (same results, fewer ops). With
    ``reference=True`` every cell runs the plain loop below, ``cell.recur`` once per step under
    autograd: the oracle the fast paths are tested against. ``xp_has_bias_hh``: ``xp`` came from
    :func:`rnnkit.layers.fastloop.project_input` (the LSTM cells only).
    """
    if not reference and fastloop.usable(cell, xp):
        return fastloop.run_lstm(
            cell,
            xp,
            state,
            mask,
            weight_hh=weight_hh,
            h_mask=h_mask,
            zoneout=zoneout,
            training=training,
            xp_has_bias_hh=xp_has_bias_hh,
        )
    if hasattr(cell, "scan") and weight_hh is None and h_mask is None and zoneout == 0.0:
        out, state = cell.scan(xp, state, mask)
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out, state
    hooks = {}
    if weight_hh is not None:
        hooks["weight_hh"] = weight_hh
    if h_mask is not None:
        hooks["h_mask"] = h_mask
    steps_mask = mask.unsqueeze(-1).unbind(1) if mask is not None else None  # T x (B, 1)
    outputs = []
    for t, xp_t in enumerate(xp.unbind(1)):  # unbind, not xp[:, t]: slicing makes backward far slower
        y, new = cell.recur(xp_t, state, **hooks)
        if zoneout:
            new = _zoneout(state, new, zoneout, training)
            y = new[0]
        if steps_mask is not None:
            m = steps_mask[t]
            new = tuple(torch.where(m, n, o) for n, o in zip(new, state, strict=True))
            y = y * m.to(y.dtype)
        state = new
        outputs.append(y)
    return torch.stack(outputs, 1), state


# -- the fused path -----------------------------------------------------------------------------
def _fused_kind(cell: RecurrentCell) -> str | None:
    if type(cell) is LSTMCell:
        return "lstm"
    if type(cell) is GRUCell:
        return "gru"
    if type(cell) is RNNCell:
        return "rnn_" + cell.nonlinearity
    return None


@torch.compiler.disable
def _fused_call(
    kind: str,
    x: Tensor,
    hx: State,
    weights: list[Tensor],
    has_bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool = False,
) -> tuple[Tensor, State]:
    """One call of torch's fused kernel, batch-first (the same call ``torch.nn.LSTM`` makes).

    Excluded from ``torch.compile``'s graphs (it runs eagerly, as dynamo does with ``torch.nn.LSTM``):
    the kernel's CPU training path (``aten.mkldnn_rnn_layer``) cannot be traced by AOTAutograd."""
    if kind == "lstm":
        out, h, c = torch.lstm(x, hx, weights, has_bias, num_layers, dropout, training, bidirectional, True)
        return out, (h, c)
    fn = {"gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}[kind]
    out, h = fn(x, hx[0], weights, has_bias, num_layers, dropout, training, bidirectional, True)
    return out, (h,)


def fused_causal(
    kind: str,
    x: Tensor,
    hx: State,
    weights: list[Tensor],
    has_bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    lengths: Tensor | None,
) -> tuple[Tensor, State]:
    """Fused kernel over ragged sequences without packing.

    Sequences are sorted by length; time is cut at each distinct length, and each piece runs the
    fused kernel on the sequences still active, carrying their state. A sequence's final state is
    taken when its piece ends. ``hx`` components are ``(num_layers, B, S)``.
    """
    B, T = x.shape[:2]
    if lengths is None or bool((lengths == T).all()):
        out, state = _fused_call(kind, x, hx, weights, has_bias, num_layers, dropout, training)
        return out, state
    lens, order = lengths.sort(descending=True)
    x = x.index_select(0, order)
    state = tuple(h.index_select(1, order) for h in hx)
    lens_list = lens.tolist()
    bounds = sorted(set(lens_list))
    pieces, finished, t0 = [], [], 0
    for b in bounds:
        n = sum(1 for v in lens_list if v >= b)  # active rows: 0..n
        n_next = sum(1 for v in lens_list if v > b)
        seg_state = tuple(h[:, :n] for h in state)
        out, seg_state = _fused_call(kind, x[:n, t0:b], seg_state, weights, has_bias, num_layers, dropout, training)
        pieces.append(F.pad(out, (0, 0, 0, 0, 0, B - n)))
        finished.append(tuple(h[:, n_next:n] for h in seg_state))
        state = seg_state
        t0 = b
    out = torch.cat(pieces, 1)
    if out.shape[1] < T:
        out = F.pad(out, (0, 0, 0, T - out.shape[1]))
    final = tuple(torch.cat([f[k] for f in reversed(finished)], 1) for k in range(len(hx)))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(B, device=order.device)
    return out.index_select(0, inverse), tuple(h.index_select(1, inverse) for h in final)


#: one step of a classic cell in torch's own kernel, with the weights in ``_cell_weights``'s order
_FUSED_STEP = {
    "lstm": torch.lstm_cell,
    "gru": torch.gru_cell,
    "rnn_tanh": torch.rnn_tanh_cell,
    "rnn_relu": torch.rnn_relu_cell,
}


def _cell_weights(cell: RecurrentCell, weight_hh: Tensor | None) -> list[Tensor]:
    w = [cell.weight_ih, cell.weight_hh if weight_hh is None else weight_hh]
    if cell.bias_ih is not None:
        w += [cell.bias_ih, cell.bias_hh]
    if getattr(cell, "weight_hr", None) is not None:
        w.append(cell.weight_hr)
    return w


#: the fused kernels CPU autocast runs in its lower precision dtype (``lstm``, ``rnn_tanh``, ``rnn_relu`` are on
#: its lower-precision list, ``gru`` is not); tests/conformance compares the loop's dtypes with torch's
_AUTOCAST_KINDS = frozenset({"lstm", "rnn_tanh", "rnn_relu"})


def _under_functorch(x: Tensor) -> bool:
    """Whether ``x`` is wrapped by a torch.func transform (vmap, grad, jvp, ...)."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def _autocast_dtype(x: Tensor, kind: str | None) -> torch.dtype | None:
    """The dtype torch's fused kernel ``kind`` computes in under autocast (None: no cast).

    Under CPU autocast torch casts an LSTM's and an Elman RNN's input, state and weights to autocast's lower
    precision dtype (``torch.gru`` is not on autocast's list), so their outputs and final states come back in
    that dtype; the loop paths cast the input and the state to match (every ``F.linear`` then casts the
    weights). Other cells, and the GRU, run under autocast's per-op rules unchanged."""
    device = x.device.type
    if kind not in _AUTOCAST_KINDS or not x.is_floating_point() or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


# -- the stack ----------------------------------------------------------------------------------
class RecurrentStack(nn.Module):
    """Shared machinery of :class:`Recurrent` and the drop-in ``RNN/LSTM/GRU``: options, path
    choice, the stacked/bidirectional run over a grid of cells. Subclasses provide ``_grid()``,
    a list (layers) of lists (directions) of cells."""

    def _init_options(
        self,
        *,
        dropout: float,
        variational_dropout: bool,
        input_dropout: float,
        output_dropout: float,
        recurrent_dropout: float,
        weight_drop: float,
        zoneout: float,
        implementation: str,
        dropout_may_be_one: bool = False,
    ) -> None:
        name = type(self).__name__
        self.dropout = check_probability("dropout", dropout, name, allow_one=dropout_may_be_one)
        self.variational_dropout = bool(variational_dropout)
        self.input_dropout = check_probability("input_dropout", input_dropout, name)
        self.output_dropout = check_probability("output_dropout", output_dropout, name)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout, name)
        self.weight_drop = check_probability("weight_drop", weight_drop, name)
        self.zoneout = check_probability("zoneout", zoneout, name)
        if implementation not in PATHS:
            raise ValueError(f"{name}: implementation must be one of {PATHS}, got {implementation!r}")
        self.implementation = implementation
        self.last_path: str | None = None

    def _check_cells_support_options(self) -> None:
        cell = self._grid()[0][0]
        if (self.recurrent_dropout or self.weight_drop) and cell.recurrent_weight_name is None:
            raise ValueError(
                f"{type(self).__name__}: recurrent_dropout and weight_drop need a hidden-to-hidden weight; "
                f"{type(cell).__name__} has none"
            )
        if self.implementation == "fused" and self._loop_reason(training=True) is not None:
            raise ValueError(
                f"{type(self).__name__}: implementation='fused' is not possible: {self._loop_reason(training=True)}"
            )

    def _grid(self) -> list[list[RecurrentCell]]:
        raise NotImplementedError

    def _loop_reason(self, training: bool) -> str | None:
        """Why the fused kernel cannot run with these options (None if it can)."""
        kinds = {_fused_kind(c) for row in self._grid() for c in row}
        if None in kinds or len(kinds) != 1:
            return f"{type(self._grid()[0][0]).__name__} has no fused kernel"
        if self.zoneout:
            return "zoneout needs a per-step hook"
        if self.recurrent_dropout and training:
            return "recurrent_dropout needs a per-step hook"
        return None

    @property
    def path(self) -> str:
        """The path the next call will take in the current mode: ``"fused"``, ``"loop"`` or ``"reference"``."""
        if self.implementation != "auto":
            return self.implementation
        return "loop" if self._loop_reason(self.training) is not None else "fused"

    # -- streaming: one step at a time -----------------------------------------------------------
    def _step_state_out(self, state: State):
        """The state as :meth:`step` returns it (the drop-ins return a bare tensor where torch does)."""
        return state

    def step(self, x_t: Tensor, state: State | Tensor | None = None):
        """One time step for streaming inference: ``x_t`` (B, I), ``state`` as :meth:`forward` takes
        and returns it (None for zeros) -> ``(y_t (B, O), state)``.

        Stepping a sequence through ``step`` equals :meth:`forward` on the whole sequence (in
        evaluation mode; zoneout uses its expectation there). Classic cells run torch's one-step
        kernels (``torch.lstm_cell`` ...) on the layer's own parameters, other cells their
        ``project_input`` + ``recur``. Unidirectional layers only (a backward direction needs the
        whole sequence); in training mode no regulariser may be active (they act on whole sequences).
        Wrap the calls in ``torch.inference_mode()`` for the lowest latency.
        """
        name = type(self).__name__
        grid = self._grid()
        if len(grid[0]) != 1:
            raise ValueError(f"{name}.step: a bidirectional layer cannot run one step at a time")
        if self.training and any(
            getattr(self, k)
            for k in ("dropout", "input_dropout", "output_dropout", "recurrent_dropout", "weight_drop", "zoneout")
        ):
            raise ValueError(f"{name}.step: regularisers act on whole sequences; call .eval() before stepping")
        cell0 = grid[0][0]
        if x_t.dim() != 2 or x_t.shape[-1] != cell0.input_size:
            raise ValueError(f"{name}.step: expected input (B, {cell0.input_size}), got {tuple(x_t.shape)}")
        B, L, sizes = x_t.shape[0], len(grid), cell0.state_sizes
        if state is None:
            state = tuple(x_t.new_zeros(L, B, s) for s in sizes)
        elif isinstance(state, Tensor):
            state = (state,)
        else:
            state = tuple(state)
        if len(state) != len(sizes) or any(tuple(s.shape) != (L, B, k) for s, k in zip(state, sizes, strict=False)):
            want = ", ".join(f"({L}, {B}, {k})" for k in sizes)
            got = ", ".join(str(tuple(s.shape)) for s in state)
            raise ValueError(f"{name}.step: expected state of shapes {want}, got {got}")
        finals = []
        y = x_t
        for layer, (cell,) in enumerate(grid):
            old = tuple(s[layer] for s in state)
            kind = _fused_kind(cell)
            if kind is not None and getattr(cell, "weight_hr", None) is None:
                new = _FUSED_STEP[kind](y, old if kind == "lstm" else old[0], *_cell_weights(cell, None))
                new = tuple(new) if kind == "lstm" else (new,)
            else:
                new = cell.recur(cell.project_input(y), old)[1]
            if self.zoneout:  # evaluation mode here: the expectation
                new = _zoneout(old, new, self.zoneout, False)
            y = new[0]
            finals.append(new)
        if L == 1:
            final = tuple(f.unsqueeze(0) for f in finals[0])
        else:
            final = tuple(torch.stack([f[k] for f in finals]) for k in range(len(sizes)))
        return y, self._step_state_out(final)

    def _run(self, x: Tensor, state: list[State], lengths: Tensor | None) -> tuple[Tensor, list[State]]:
        """``x`` (B, T, I), ``state`` a list over ``layer * D + direction`` of per-cell state tuples."""
        grid = self._grid()
        num_layers, D = len(grid), len(grid[0])
        path = self.path
        if path != "reference" and _under_functorch(x):
            path = "reference"  # vmap/grad/jvp: only plain autograd ops have batching and forward rules
        self.last_path = path  # an attribute, not a log call: keeps torch.compile's graph whole
        training = self.training
        cast = _autocast_dtype(x, _fused_kind(grid[0][0])) if path != "fused" else None
        if cast is not None:  # the loop under autocast computes and returns what torch's kernel would
            x = x.to(cast)
            state = [tuple(s.to(cast) for s in st) for st in state]
        x = locked_dropout(x, self.input_dropout, training)
        kind = _fused_kind(grid[0][0]) if path == "fused" else None
        if lengths is not None and bool((lengths == x.shape[1]).all()):
            lengths = None  # nothing is padded: the plain path below is exact and faster
        mask = lengths_to_mask(lengths, x.shape[1]) if lengths is not None and path != "fused" else None

        # the plain case: one fused call over every layer and direction, exactly what torch.nn does
        if path == "fused" and not self.weight_drop and not self.variational_dropout and (D == 1 or lengths is None):
            weights = [w for row in grid for c in row for w in _cell_weights(c, None)]
            hx = tuple(torch.stack([s[k] for s in state]) for k in range(len(state[0])))
            has_bias = grid[0][0].bias_ih is not None
            if D == 1:
                out, final = fused_causal(kind, x, hx, weights, has_bias, num_layers, self.dropout, training, lengths)
            else:
                out, final = _fused_call(kind, x, hx, weights, has_bias, num_layers, self.dropout, training, True)
            finals = [tuple(h[i] for h in final) for i in range(num_layers * D)]
            return locked_dropout(out, self.output_dropout, training), finals

        finals: list[State] = []
        for layer, row in enumerate(grid):
            outs = []
            for d, cell in enumerate(row):
                s0 = state[layer * D + d]
                inp = x if d == 0 else reverse_padded(x, lengths)
                w_hh = None
                if self.weight_drop and training:
                    w_hh = F.dropout(getattr(cell, cell.recurrent_weight_name), self.weight_drop, True)
                if path == "fused":
                    out, fin = fused_causal(
                        kind,
                        inp,
                        tuple(s.unsqueeze(0) for s in s0),
                        _cell_weights(cell, w_hh),
                        cell.bias_ih is not None,
                        1,
                        0.0,
                        training,
                        lengths,
                    )
                    fin = tuple(s.squeeze(0) for s in fin)
                else:
                    h_mask = None
                    if self.recurrent_dropout and training:
                        p = self.recurrent_dropout
                        h_mask = s0[0].new_empty(s0[0].shape).bernoulli_(1 - p) / (1 - p)
                    reference = path == "reference"
                    fast = not reference and fastloop.usable(cell, inp)
                    out, fin = run_cell(
                        cell,
                        fastloop.project_input(cell, inp) if fast else cell.project_input(inp),
                        s0,
                        mask,
                        weight_hh=w_hh,
                        h_mask=h_mask,
                        zoneout=self.zoneout,
                        training=training,
                        reference=reference,
                        xp_has_bias_hh=fast,
                    )
                outs.append(out if d == 0 else reverse_padded(out, lengths))
                finals.append(fin)
            x = outs[0] if D == 1 else torch.cat(outs, -1)
            if layer < num_layers - 1 and self.dropout and training:
                if self.variational_dropout:
                    x = locked_dropout(x, self.dropout, training)
                else:
                    x = F.dropout(x, self.dropout, training)
        return locked_dropout(x, self.output_dropout, training), finals


CellFactory = Callable[..., RecurrentCell]


class Recurrent(RecurrentStack):
    """Run any cell over whole sequences: stacked, optionally bidirectional, with lengths.

    Args:
        cell: a cell class or factory called as ``cell(input_size, hidden_size, **cell_kwargs)``
            for every layer and direction (e.g. :class:`~rnnkit.cells.LSTMCell`,
            :class:`~rnnkit.cells.LayerNormLSTMCell`, :class:`~rnnkit.cells.MinGRUCell`).
        input_size, hidden_size: ``I`` and ``H``.
        num_layers: ``L``; layer ``k > 0`` reads ``D * O`` features.
        bidirectional: run a second stack of cells backwards in time (``D = 2``).
        dropout, variational_dropout, input_dropout, output_dropout, recurrent_dropout,
        weight_drop, zoneout: regularisers (module docstring).
        implementation: ``"auto"`` (fused when possible), ``"fused"`` (error if impossible),
            ``"loop"`` (always the time loop: the LSTM cells' hand-differentiated loop, other cells'
            ``recur`` per step) or ``"reference"`` (``recur`` per step under autograd for every cell;
            the oracle in tests).
        **cell_kwargs: passed to every cell (``bias``, ``recurrent_init``, ``forget_bias``, ...).

    Forward: ``x`` (B, T, I), ``state`` tuple of ``(L*D, B, S_k)`` or None, ``lengths`` (B,) or None
    -> ``(output (B, T, D*O), state tuple of (L*D, B, S_k))``.
    """

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        *,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float = 0.0,
        implementation: str = "auto",
        **cell_kwargs,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_positive_int("input_size", input_size, name)
        check_positive_int("hidden_size", hidden_size, name)
        self.num_layers = check_positive_int("num_layers", num_layers, name)
        self.bidirectional = bool(bidirectional)
        D = 2 if bidirectional else 1
        layers = []
        size = input_size
        for _ in range(num_layers):
            row = nn.ModuleList(cell(size, hidden_size, **cell_kwargs) for _ in range(D))
            layers.append(row)
            size = D * row[0].output_size
        self.cells = nn.ModuleList(layers)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.output_size = size
        self._init_options(
            dropout=dropout,
            variational_dropout=variational_dropout,
            input_dropout=input_dropout,
            output_dropout=output_dropout,
            recurrent_dropout=recurrent_dropout,
            weight_drop=weight_drop,
            zoneout=zoneout,
            implementation=implementation,
        )
        self._check_cells_support_options()

    def _grid(self):
        return [list(row) for row in self.cells]

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        cell = self.cells[0][0]
        n = self.num_layers * (2 if self.bidirectional else 1)
        return tuple(torch.zeros(n, batch_size, s, device=device, dtype=dtype) for s in cell.state_sizes)

    def forward(
        self, x: Tensor, state: State | Tensor | None = None, lengths: Tensor | Sequence[int] | None = None
    ) -> tuple[Tensor, State]:
        name = type(self).__name__
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input (B, T, {self.input_size}), got {tuple(x.shape)}")
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, B, T, x.device)
        cells = self._grid()
        sizes = cells[0][0].state_sizes
        # the second layer's cells may have other state sizes only if cell_kwargs made them so; the
        # stacked layout needs them equal across layers, which holds for every rnnkit cell
        if state is None:
            state = self.initial_state(B, device=x.device, dtype=x.dtype)
        elif isinstance(state, Tensor):
            state = (state,)
        n = len(cells) * len(cells[0])
        if len(state) != len(sizes) or any(
            tuple(s.shape) != (n, B, size) for s, size in zip(state, sizes, strict=False)
        ):
            want = ", ".join(f"({n}, {B}, {size})" for size in sizes)
            got = ", ".join(str(tuple(s.shape)) for s in state)
            raise ValueError(f"{name}: expected state of shapes {want}, got {got}")
        per_cell = [tuple(s[i] for s in state) for i in range(n)]
        out, finals = self._run(x, per_cell, lengths)
        final = tuple(torch.stack([f[k] for f in finals]) for k in range(len(sizes)))
        return out, final

    def extra_repr(self) -> str:
        opts = [f"num_layers={self.num_layers}", f"bidirectional={self.bidirectional}"]
        for k in ("dropout", "input_dropout", "output_dropout", "recurrent_dropout", "weight_drop", "zoneout"):
            if getattr(self, k):
                opts.append(f"{k}={getattr(self, k)}")
        return ", ".join(opts)
