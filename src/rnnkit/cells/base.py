"""The cell protocol: one time step of a recurrent network.

A cell knows nothing of sequences, lengths, directions or stacking; the generic
:class:`rnnkit.layers.Recurrent` loop runs any cell over a sequence. A step is split in two
so the loop can hoist the input projection out of the time loop (one big matmul instead of T
small ones)::

    xp = cell.project_input(x)               # (..., I) -> (..., G), independent of the state
    y_t, state = cell.recur(xp[:, t], state) # (B, G), tuple of (B, S_k) -> (B, O), new tuple

``cell(x_t, state)`` does both for a single step. States are always tuples of tensors, even
when there is only one (``(h,)`` for RNN/GRU, ``(h, c)`` for LSTM).

Shape legend: ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` projected-input size
(``gates * H`` for the gated cells), ``O`` output size (``H``, or ``proj_size`` for a projected LSTM).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]

RECURRENT_INITS = ("default", "orthogonal")


def check_positive_int(name: str, value: object, owner: str, allow_zero: bool = False) -> int:
    """Validate a size argument eagerly, with a message that says what was expected and received."""
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "a non-negative int" if allow_zero else "a positive int"
        raise ValueError(f"{owner}: {name} must be {kind}, got {value!r}")
    return value  # type: ignore[return-value]


def check_probability(name: str, value: object, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{owner}: {name} must be a float in [0, 1), got {value!r}")
    return float(value)


def check_forget_bias(value: object, owner: str, bias: bool = True) -> float | None:
    """An LSTM's ``forget_bias``: None or a number, which needs the biases it is written into."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{owner}: forget_bias must be a number or None, got {value!r}")
    if value is not None and not bias:
        raise ValueError(f"{owner}: forget_bias needs bias=True")
    return value  # type: ignore[return-value]


class RecurrentCell(nn.Module):
    """Base class of every rnnkit cell.

    Subclasses set ``input_size``, ``hidden_size``, ``output_size``, ``state_sizes`` and
    ``num_gates`` (the number of ``H``-sized blocks in ``weight_hh``'s rows; used by the orthogonal
    init and by weight drop), and implement :meth:`project_input` and :meth:`recur`.

    ``recur`` accepts two optional hooks used by the layer's regularisers:

    * ``weight_hh`` — a replacement for the hidden-to-hidden weight (weight drop / DropConnect
      samples one dropped copy per sequence and passes it in at every step);
    * ``h_mask`` — a ``(B, H_in)`` multiplicative mask on the previous output where it enters the
      hidden-to-hidden product only (variational recurrent dropout, Gal & Ghahramani 2016). The
      carried state itself is not masked.
    """

    input_size: int
    hidden_size: int
    output_size: int
    state_sizes: tuple[int, ...]
    num_gates: int = 1
    #: name of the parameter that weight drop targets
    recurrent_weight_name: str = "weight_hh"

    def __init__(self, recurrent_init: str = "default") -> None:
        super().__init__()
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(
                f"{type(self).__name__}: recurrent_init must be one of {RECURRENT_INITS}, got {recurrent_init!r}"
            )
        self.recurrent_init = recurrent_init

    # -- the protocol -------------------------------------------------------------------------
    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., G)
        raise NotImplementedError

    def recur(
        self, xp: Tensor, state: State, *, weight_hh: Tensor | None = None, h_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        raise NotImplementedError

    def initial_state(
        self, batch_size: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        """Zeros, on the device and dtype of the cell's parameters unless given."""
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else None)
        return tuple(torch.zeros(batch_size, s, device=device, dtype=dtype) for s in self.state_sizes)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step: ``x`` (B, I), ``state`` tuple of (B, S_k) or None for zeros."""
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (B, {self.input_size}), got {tuple(x.shape)}"
            )
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        elif isinstance(state, Tensor):
            state = (state,)
        return self.recur(self.project_input(x), tuple(state))

    # -- initialisation -----------------------------------------------------------------------
    def _add_weights(self, gate_size: int, hidden_in: int | None, bias: bool) -> None:
        """``weight_ih`` (G, I), ``weight_hh`` (G, ``hidden_in``; none when ``hidden_in`` is None), then
        ``bias_ih`` and ``bias_hh`` (G) or, without ``bias``, None: PyTorch's names and order (the order
        :meth:`reset_parameters` draws them in). Call after setting ``input_size``."""
        self.weight_ih = nn.Parameter(torch.empty(gate_size, self.input_size))
        if hidden_in is not None:
            self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_in))
        for name in ("bias_ih", "bias_hh") if hidden_in is not None else ("bias_ih",):
            self.register_parameter(name, nn.Parameter(torch.empty(gate_size)) if bias else None)

    def _init_forget_bias(self, forget_bias: float | None) -> None:
        """LSTM cells: the forget gate's total bias starts at ``forget_bias`` (``bias_ih``'s forget slice,
        the second ``H`` block, is set to it and ``bias_hh``'s to zero); None leaves the biases as drawn."""
        if forget_bias is not None:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(float(forget_bias))
                self.bias_hh[H : 2 * H].zero_()

    def reset_parameters(self) -> None:
        """PyTorch's default: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)); then the options.

        ``recurrent_init="orthogonal"`` makes each ``H x H_in`` gate block of ``weight_hh``
        orthogonal (Saxe et al. 2014). Subclasses add their own options (e.g. LSTM forget bias).
        Parameters that are layer-norm gains/biases are reset to 1/0 by their modules.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters(recurse=False):
            nn.init.uniform_(p, -bound, bound)
            del name
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        if self.recurrent_init == "orthogonal":
            w = getattr(self, self.recurrent_weight_name)
            with torch.no_grad():
                for block in w.chunk(self.num_gates, dim=0):
                    nn.init.orthogonal_(block)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.recurrent_init != "default":
            s += f", recurrent_init={self.recurrent_init!r}"
        return s
