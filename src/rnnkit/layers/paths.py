"""The ways a recurrent layer can run its cells over time, and the chooser that picks one.

Each path is an object with ``why_not(...)``: None when it can run a configuration, else a one-line reason.
The layer takes the first path that can:

* **per layer** (:func:`choose_layer_path`, what ``layer.path`` / ``layer.last_path`` report): :data:`FUSED`,
  torch's own kernels (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``, ``torch.rnn_relu``) over the whole
  stack, when every cell declares the same ``fused_mode`` and no regulariser needs a hook at every step;
  otherwise ``"loop"``;
* **per cell on the loop** (:func:`choose_loop`, in the order of :data:`LOOP_PATHS`): :data:`NATIVE_LOOP` (the
  LSTM and GRU loops in C++), :data:`FAST_LOOP` (the LSTM loop in Python, differentiated by hand), :data:`SCAN`
  (all steps at once, for cells with a ``scan`` method, when no hook acts at every step) and :data:`PER_STEP`
  (``cell.recur`` once per step under autograd, which runs any cell). The reference path
  (``implementation="reference"``, the oracle in tests) takes only the paths marked ``oracle``: the scan and
  the per-step loop.

A new way to run cells (a native loop for another cell, say) is one more :class:`LoopPath` in :data:`LOOP_PATHS`.

Shape legend: ``B`` batch, ``T`` time, ``I`` input, ``G`` projected input, ``O`` output, ``S`` a state size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import RecurrentCell, State
from . import fastloop
from .regularisation import Regularisation, StepHooks, zoneout


# -- the fused kernels --------------------------------------------------------------------------------
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


#: one step of a classic cell in torch's own kernel, with the weights in ``cell_weights``'s order
_FUSED_STEP = {
    "lstm": torch.lstm_cell,
    "gru": torch.gru_cell,
    "rnn_tanh": torch.rnn_tanh_cell,
    "rnn_relu": torch.rnn_relu_cell,
}

#: the fused kernels CPU autocast runs in its lower precision dtype (``lstm``, ``rnn_tanh``, ``rnn_relu`` are on
#: its lower-precision list, ``gru`` is not); tests/conformance compares the loop's dtypes with torch's
_AUTOCAST_KINDS = frozenset({"lstm", "rnn_tanh", "rnn_relu"})


def cell_weights(cell: RecurrentCell, weight_hh: Tensor | None) -> list[Tensor]:
    """A classic cell's parameters in the fused kernels' order, ``weight_hh`` replaced when given."""
    w = [cell.weight_ih, cell.weight_hh if weight_hh is None else weight_hh]
    if cell.bias_ih is not None:
        w += [cell.bias_ih, cell.bias_hh]
    if getattr(cell, "weight_hr", None) is not None:
        w.append(cell.weight_hr)
    return w


def autocast_dtype(x: Tensor, kind: str | None) -> torch.dtype | None:
    """The dtype torch's fused kernel ``kind`` computes in under autocast (None: no cast).

    Under CPU autocast torch casts an LSTM's and an Elman RNN's input, state and weights to autocast's lower
    precision dtype (``torch.gru`` is not on autocast's list), so their outputs and final states come back in
    that dtype; the loop paths cast the input and the state to match (every ``F.linear`` then casts the
    weights). Other cells, and the GRU, run under autocast's per-op rules unchanged."""
    device = x.device.type
    if kind not in _AUTOCAST_KINDS or not x.is_floating_point() or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


class FusedKernel:
    """torch's fused kernels, over the whole stack or one cell at a time."""

    name = "fused"

    def why_not(self, grid: Sequence[Sequence[RecurrentCell]], reg: Regularisation, training: bool) -> str | None:
        kinds = {c.fused_kind() for row in grid for c in row}
        if None in kinds or len(kinds) != 1:
            return f"{type(grid[0][0]).__name__} has no fused kernel"
        return reg.needs_step_hook(training)

    @staticmethod
    def whole_stack(reg: Regularisation, directions: int, lengths: Tensor | None) -> bool:
        """Whether one call runs every layer and direction (what ``torch.nn`` does): no weight drop and no
        locked dropout between layers (both act per layer), and no padding in a bidirectional stack."""
        return not reg.weight_drop and not reg.variational_dropout and (directions == 1 or lengths is None)

    def run_stack(
        self,
        grid: Sequence[Sequence[RecurrentCell]],
        x: Tensor,
        state: list[State],
        lengths: Tensor | None,
        dropout: float,
        training: bool,
    ) -> tuple[Tensor, list[State]]:
        """Every layer and direction in one call: ``x`` (B, T, I), ``state`` per ``layer * D + direction``."""
        num_layers, D = len(grid), len(grid[0])
        kind = grid[0][0].fused_kind()
        weights = [w for row in grid for c in row for w in cell_weights(c, None)]
        hx = tuple(torch.stack([s[k] for s in state]) for k in range(len(state[0])))
        has_bias = grid[0][0].bias_ih is not None
        if D == 1:
            out, final = fused_causal(kind, x, hx, weights, has_bias, num_layers, dropout, training, lengths)
        else:
            out, final = _fused_call(kind, x, hx, weights, has_bias, num_layers, dropout, training, True)
        return out, [tuple(h[i] for h in final) for i in range(num_layers * D)]

    def run_cell(
        self, cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, hooks: StepHooks
    ) -> tuple[Tensor, State]:
        """One cell over ``x`` (B, T, I) from ``state`` (tuple of (B, S)), with weight drop's copy of
        ``weight_hh`` when ``hooks`` has one."""
        out, fin = fused_causal(
            cell.fused_kind(),
            x,
            tuple(s.unsqueeze(0) for s in state),
            cell_weights(cell, hooks.weight_hh),
            cell.bias_ih is not None,
            1,
            0.0,
            hooks.training,
            lengths,
        )
        return out, tuple(s.squeeze(0) for s in fin)

    def step(self, cell: RecurrentCell, x_t: Tensor, state: State) -> State | None:
        """One step in torch's one-step kernel (``torch.lstm_cell``, ...), or None where there is none."""
        kind = cell.fused_kind()
        if kind is None or getattr(cell, "weight_hr", None) is not None:
            return None
        new = _FUSED_STEP[kind](x_t, state if kind == "lstm" else state[0], *cell_weights(cell, None))
        return tuple(new) if kind == "lstm" else (new,)


FUSED = FusedKernel()


def choose_layer_path(
    implementation: str, grid: Sequence[Sequence[RecurrentCell]], reg: Regularisation, training: bool
) -> str:
    """``"fused"``, ``"loop"`` or ``"reference"``: ``implementation`` unless it is ``"auto"``, then the fused
    kernels when :data:`FUSED` has no reason against them."""
    if implementation != "auto":
        return implementation
    return "loop" if FUSED.why_not(grid, reg, training) is not None else "fused"


# -- the loop: one cell over time ---------------------------------------------------------------------
class LoopPath:
    """One way to run one cell over a whole sequence on the loop path.

    ``why_not(cell, x, hooks)`` says why it cannot (None: it can); ``run(cell, x, state, mask, hooks)`` takes
    the input ``x`` (B, T, I), the state (tuple of (B, S)), ``mask`` (B, T) bool (True at real steps) or None
    -> outputs (B, T, O), zero at padded steps, and the state after each sequence's last real step.
    ``oracle``: the reference path may take it."""

    name: str = ""
    oracle: bool = False

    def why_not(self, cell: RecurrentCell, x: Tensor, hooks: StepHooks) -> str | None:
        raise NotImplementedError

    def run(
        self, cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None, hooks: StepHooks
    ) -> tuple[Tensor, State]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<loop path {self.name}>"


class NativeLoop(LoopPath):
    """The LSTM and GRU loops in C++ (:mod:`rnnkit.layers.native`), for the cells that declare ``fast_loop``
    ``"lstm"`` or ``"gru"``: CPU, float32/64, no zoneout, once it built."""

    name = "native"

    def why_not(self, cell, x, hooks):
        return fastloop.why_not(cell, x, native=True) or fastloop.native_reason(x, hooks.zoneout)

    def run(self, cell, x, state, mask, hooks):
        if cell.fast_loop == "gru":
            return fastloop.run_gru(cell, cell.project_input(x), state, mask, hooks)
        return fastloop.run_lstm(cell, x, state, mask, hooks, native=True)


class FastLoop(LoopPath):
    """The LSTM loop in Python, one autograd node with a hand-written backward (:mod:`rnnkit.layers.fastloop`)."""

    name = "fast_loop"

    def why_not(self, cell, x, hooks):
        return fastloop.why_not(cell, x)

    def run(self, cell, x, state, mask, hooks):
        return fastloop.run_lstm(cell, x, state, mask, hooks, native=False)


class Scan(LoopPath):
    """All steps at once, for cells with a ``scan`` method (minGRU, minLSTM), when no hook acts per step."""

    name = "scan"
    oracle = True

    def why_not(self, cell, x, hooks):
        if not callable(getattr(cell, "scan", None)):
            return f"{type(cell).__name__} has no scan"
        if hooks.per_step:
            return "a per-step hook is active"
        return None

    def run(self, cell, x, state, mask, hooks):
        out, state = cell.scan(cell.project_input(x), state, mask)
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out, state


class PerStep(LoopPath):
    """``cell.recur`` once per step under autograd, with the padding mask and every hook: runs any cell."""

    name = "step"
    oracle = True

    def why_not(self, cell, x, hooks):
        return None

    def run(self, cell, x, state, mask, hooks):
        xp = cell.project_input(x)
        kwargs = {}
        if hooks.weight_hh is not None:
            kwargs["weight_hh"] = hooks.weight_hh
        if hooks.h_mask is not None:
            kwargs["h_mask"] = hooks.h_mask
        p = hooks.zoneout
        steps_mask = mask.unsqueeze(-1).unbind(1) if mask is not None else None  # T x (B, 1)
        outputs = []
        for t, xp_t in enumerate(xp.unbind(1)):  # unbind, not xp[:, t]: slicing makes backward far slower
            y, new = cell.recur(xp_t, state, **kwargs)
            if p:
                new = zoneout(state, new, p, hooks.training)
                y = new[0]
            if steps_mask is not None:
                m = steps_mask[t]
                new = tuple(torch.where(m, n, o) for n, o in zip(new, state, strict=True))
                y = y * m.to(y.dtype)
            state = new
            outputs.append(y)
        return torch.stack(outputs, 1), state


NATIVE_LOOP, FAST_LOOP, SCAN, PER_STEP = NativeLoop(), FastLoop(), Scan(), PerStep()

#: the loop's paths, most specialised first; :func:`choose_loop` takes the first that can run a cell
LOOP_PATHS: list[LoopPath] = [NATIVE_LOOP, FAST_LOOP, SCAN, PER_STEP]


def choose_loop(cell: RecurrentCell, x: Tensor, hooks: StepHooks, reference: bool = False) -> LoopPath:
    """The first of :data:`LOOP_PATHS` that can run ``cell`` on ``x`` with ``hooks`` (``reference``: only the
    ``oracle`` ones)."""
    for path in LOOP_PATHS:
        if (path.oracle or not reference) and path.why_not(cell, x, hooks) is None:
            return path
    raise RuntimeError(f"no loop path runs {type(cell).__name__}")  # unreachable while PER_STEP is listed


def run_cell(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    mask: Tensor | None,
    hooks: StepHooks | None = None,
    *,
    reference: bool = False,
) -> tuple[Tensor, State]:
    """Run one cell forward in time over ``x`` (B, T, I) on the first loop path that can (:func:`choose_loop`).

    ``mask`` (B, T) marks real steps: at padded steps the state is carried unchanged and the output is zero.
    Returns outputs (B, T, O) and the final state. With ``reference=True`` only the oracle paths run (the scan
    where no hook acts per step, else ``cell.recur`` once per step under autograd)."""
    hooks = StepHooks() if hooks is None else hooks
    return choose_loop(cell, x, hooks, reference).run(cell, x, state, mask, hooks)
