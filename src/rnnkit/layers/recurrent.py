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

from ..cells import RecurrentCell, State
from ..cells.base import check_positive_int
from .masking import check_lengths, lengths_to_mask, reverse_padded
from .paths import FUSED, autocast_dtype, choose_layer_path, fused_causal, run_cell
from .regularisation import PROBABILITIES, Regularisation, StepHooks, _Option, locked_dropout, zoneout

__all__ = ["PATHS", "Recurrent", "RecurrentStack", "Regularisation", "fused_causal", "locked_dropout", "run_cell"]

PATHS = ("auto", "fused", "loop", "reference")


def _under_functorch(x: Tensor) -> bool:
    """Whether ``x`` is wrapped by a torch.func transform (vmap, grad, jvp, ...)."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


# -- the stack ----------------------------------------------------------------------------------
class RecurrentStack(nn.Module):
    """Shared machinery of :class:`Recurrent` and the drop-in ``RNN/LSTM/GRU``: options, path
    choice, the stacked/bidirectional run over a grid of cells. Subclasses provide ``_grid()``,
    a list (layers) of lists (directions) of cells.

    The regularisers live in one frozen :class:`~rnnkit.layers.regularisation.Regularisation`,
    ``layer.regularisation``; ``layer.dropout``, ``layer.zoneout`` and the others read it, and writing them
    checks the value and replaces it."""

    regularisation: Regularisation = Regularisation()
    _dropout_may_be_one = False  # torch's range [0, 1] for the drop-ins' own ``dropout`` argument
    dropout = _Option()
    variational_dropout = _Option()
    input_dropout = _Option()
    output_dropout = _Option()
    recurrent_dropout = _Option()
    weight_drop = _Option()
    zoneout = _Option()

    def _init_options(self, regularisation: Regularisation, implementation: str) -> None:
        name = type(self).__name__
        self.regularisation = regularisation
        if implementation not in PATHS:
            raise ValueError(f"{name}: implementation must be one of {PATHS}, got {implementation!r}")
        self.implementation = implementation
        self.last_path: str | None = None

    def _check_cells_support_options(self) -> None:
        cell = self._grid()[0][0]
        reg = self.regularisation
        if (reg.recurrent_dropout or reg.weight_drop) and cell.recurrent_weight_name is None:
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
        return FUSED.why_not(self._grid(), self.regularisation, training)

    @property
    def path(self) -> str:
        """The path the next call will take in the current mode: ``"fused"``, ``"loop"`` or ``"reference"``."""
        return choose_layer_path(self.implementation, self._grid(), self.regularisation, self.training)

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
        reg = self.regularisation
        if self.training and reg.any_probability():
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
            new = FUSED.step(cell, y, old)
            if new is None:
                new = cell.recur(cell.project_input(y), old)[1]
            if reg.zoneout:  # evaluation mode here: the expectation
                new = zoneout(old, new, reg.zoneout, False)
            y = new[0]
            finals.append(new)
        if L == 1:
            final = tuple(f.unsqueeze(0) for f in finals[0])
        else:
            final = tuple(torch.stack([f[k] for f in finals]) for k in range(len(sizes)))
        return y, self._step_state_out(final)

    def _hooks(self, cell: RecurrentCell, s0: State, training: bool) -> StepHooks:
        """This call's draws for one cell: weight drop's copy of ``weight_hh``, then the recurrent-dropout mask."""
        reg = self.regularisation
        w_hh = h_mask = None
        if reg.weight_drop and training:
            w_hh = F.dropout(getattr(cell, cell.recurrent_weight_name), reg.weight_drop, True)
        if reg.recurrent_dropout and training:
            p = reg.recurrent_dropout
            h_mask = s0[0].new_empty(s0[0].shape).bernoulli_(1 - p) / (1 - p)
        return StepHooks(w_hh, h_mask, reg.zoneout, training)

    def _run(self, x: Tensor, state: list[State], lengths: Tensor | None) -> tuple[Tensor, list[State]]:
        """``x`` (B, T, I), ``state`` a list over ``layer * D + direction`` of per-cell state tuples."""
        grid = self._grid()
        num_layers, D = len(grid), len(grid[0])
        reg, training = self.regularisation, self.training
        path = self.path
        if path != "reference" and _under_functorch(x):
            path = "reference"  # vmap/grad/jvp: only plain autograd ops have batching and forward rules
        self.last_path = path  # an attribute, not a log call: keeps torch.compile's graph whole
        cast = autocast_dtype(x, grid[0][0].fused_kind()) if path != "fused" else None
        if cast is not None:  # the loop under autocast computes and returns what torch's kernel would
            x = x.to(cast)
            state = [tuple(s.to(cast) for s in st) for st in state]
        x = locked_dropout(x, reg.input_dropout, training)
        if lengths is not None and bool((lengths == x.shape[1]).all()):
            lengths = None  # nothing is padded: the plain path below is exact and faster
        mask = lengths_to_mask(lengths, x.shape[1]) if lengths is not None and path != "fused" else None

        # the plain case: one fused call over every layer and direction, exactly what torch.nn does
        if path == "fused" and FUSED.whole_stack(reg, D, lengths):
            out, finals = FUSED.run_stack(grid, x, state, lengths, reg.dropout, training)
            return locked_dropout(out, reg.output_dropout, training), finals

        finals: list[State] = []
        for layer, row in enumerate(grid):
            outs = []
            for d, cell in enumerate(row):
                s0 = state[layer * D + d]
                inp = x if d == 0 else reverse_padded(x, lengths)
                hooks = self._hooks(cell, s0, training)
                if path == "fused":
                    out, fin = FUSED.run_cell(cell, inp, s0, lengths, hooks)
                else:
                    out, fin = run_cell(cell, inp, s0, mask, hooks, reference=path == "reference")
                outs.append(out if d == 0 else reverse_padded(out, lengths))
                finals.append(fin)
            x = outs[0] if D == 1 else torch.cat(outs, -1)
            if layer < num_layers - 1 and reg.dropout and training:
                if reg.variational_dropout:
                    x = locked_dropout(x, reg.dropout, training)
                else:
                    x = F.dropout(x, reg.dropout, training)
        return locked_dropout(x, reg.output_dropout, training), finals


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
        reg = Regularisation.checked(
            name,
            dropout=dropout,
            variational_dropout=variational_dropout,
            input_dropout=input_dropout,
            output_dropout=output_dropout,
            recurrent_dropout=recurrent_dropout,
            weight_drop=weight_drop,
            zoneout=zoneout,
        )
        self._init_options(reg, implementation)
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
        for k in PROBABILITIES:
            if getattr(self.regularisation, k):
                opts.append(f"{k}={getattr(self.regularisation, k)}")
        return ", ".join(opts)
