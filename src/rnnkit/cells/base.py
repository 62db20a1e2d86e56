"""The cell protocol: one time step of a recurrent network.

A cell knows nothing of sequences, lengths, directions or stacking; the generic
:class:`rnnkit.layers.Recurrent` loop runs any cell over a sequence. A step is split in two
so the loop can hoist the input projection out of the time loop (one big matmul instead of T
small ones)::

    xp = cell.project_input(x)               # (..., I) -> (..., G), independent of the state
    y_t, state = cell.recur(xp[:, t], state) # (B, G), tuple of (B, S_k) -> (B, O), new tuple

``cell(x_t, state)`` does both for a single step. States are always tuples of tensors, even
when there is only one (``(h,)`` for RNN/GRU, ``(h, c)`` for LSTM).

How ``cell(x, state)`` compares with ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``:

* the same: constructor arguments (``input_size, hidden_size, bias``, ``nonlinearity`` for the RNN cell,
  ``device=``, ``dtype=``), parameter names, shapes and ``state_dict``; a batched ``(B, I)`` or unbatched
  ``(I,)`` input (the output has the input's number of dimensions); the state checked strictly, with
  torch's messages (an input or state of the wrong rank, a state whose batch or size does not match:
  no broadcasting, so an ``hx`` of batch 1 with a batch of 3 is an error, not a broadcast);
* different: the return value is ``(y, state)`` with ``state`` a tuple, where torch returns ``h`` (RNN,
  GRU) or ``(h, c)`` (LSTM): ``y, (h,) = rnnkit_cell(x, h)`` for ``h = torch_cell(x, h)`` and
  ``y, (h, c) = rnnkit_cell(x, (h, c))`` for ``h, c = torch_cell(x, (h, c))``; ``state`` may be a bare
  tensor for the one-state cells, as in torch. The shape errors are :class:`ShapeError`, which is both a
  ``RuntimeError`` (torch's type) and a ``ValueError`` (rnnkit's before); the rank errors are
  ``ValueError`` like torch's.

Shape legend: ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` projected-input size
(``gates * H`` for the gated cells), ``O`` output size (``H``, or ``proj_size`` for a projected LSTM).
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]

RECURRENT_INITS = ("default", "orthogonal")


class ShapeError(ValueError, RuntimeError):
    """An input or state of the wrong shape: a ``RuntimeError``, as torch raises for these, and a
    ``ValueError``, as rnnkit raised before, so callers catching either keep working."""


def check_positive_int(name: str, value: object, owner: str, allow_zero: bool = False) -> int:
    """Validate a size argument eagerly, with a message that says what was expected and received."""
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "a non-negative int" if allow_zero else "a positive int"
        raise ValueError(f"{owner}: {name} must be {kind}, got {value!r}")
    return value  # type: ignore[return-value]


def check_probability(name: str, value: object, owner: str, allow_one: bool = False) -> float:
    """A dropout-like probability in ``[0, 1)`` (``[0, 1]`` with ``allow_one``, torch's range for ``dropout``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not (0.0 <= float(value) <= 1.0 if allow_one else 0.0 <= float(value) < 1.0):
        raise ValueError(f"{owner}: {name} must be a float in [0, {'1]' if allow_one else '1)'}, got {value!r}")
    return float(value)


def check_forget_bias(value: object, owner: str, bias: bool = True) -> float | None:
    """An LSTM's ``forget_bias``: None or a number, which needs the biases it is written into."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{owner}: forget_bias must be a number or None, got {value!r}")
    if value is not None and not bias:
        raise ValueError(f"{owner}: forget_bias needs bias=True")
    return value  # type: ignore[return-value]


#: capabilities a subclass must declare again in its own body: a subclass that changes ``recur`` would otherwise
#: inherit a fused kernel or a fast loop that computes its parent's equations
_NOT_INHERITED = {"fused_mode": None, "fast_loop": None}


class RecurrentCell(nn.Module):
    """Base class of every rnnkit cell.

    Subclasses set ``input_size``, ``hidden_size``, ``output_size``, ``state_sizes`` and
    ``num_gates`` (the number of ``H``-sized blocks in ``weight_hh``'s rows; used by the orthogonal
    init and by weight drop), and implement :meth:`project_input` and :meth:`recur`.

    What the layers read from the class (declared, never inferred from a name):

    * ``state_names`` — one name per state component, ``("h",)`` or ``("h", "c")``; ``"c"`` marks a cell state
      (:attr:`has_cell_state`); ``state_sizes`` gives their sizes once the cell is built;
    * ``fused_mode`` — the name of the ``torch`` kernel that computes exactly this cell (``"lstm"``, ``"gru"``,
      ``"rnn_tanh"``: :meth:`fused_kind`), or None;
    * ``fast_loop`` — the hand-differentiated loop of :mod:`rnnkit.layers.fastloop` that runs it (``"lstm"``,
      ``"gru"``), or None;
    * a ``scan`` method — all steps at once when no per-step hook is active (the minimal cells).

    ``fused_mode`` and ``fast_loop`` are not inherited: a subclass has neither unless its own body says so.
    :func:`register_cell` gives a class a config name (``model.cell=<name>``).

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
    state_names: tuple[str, ...] = ("h",)
    num_gates: int = 1
    #: name of the parameter that weight drop targets
    recurrent_weight_name: str = "weight_hh"
    fused_mode: str | None = None
    fast_loop: str | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for attr, default in _NOT_INHERITED.items():
            if attr not in cls.__dict__:
                setattr(cls, attr, default)

    @classmethod
    def has_cell_state(cls) -> bool:
        """Whether the state carries a memory cell ``c`` besides ``h`` (the LSTMs)."""
        return "c" in cls.state_names

    def fused_kind(self) -> str | None:
        """The ``torch`` kernel that computes this cell (``torch.lstm``, ``torch.gru``, ...), or None."""
        return self.fused_mode

    def __init__(self, recurrent_init: str = "default", *, device=None, dtype=None) -> None:
        super().__init__()
        # where _add_weights and the subclasses' submodules create their parameters (torch's factory kwargs)
        self.__dict__["_factory"] = {"device": device, "dtype": dtype}
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

    def forward(self, x: Tensor, state: State | Tensor | None = None) -> tuple[Tensor, State]:
        """One step: ``x`` (B, I) or unbatched (I,), ``state`` a tuple of (B, S_k) (or (S_k,)), a bare tensor
        for the one-state cells, or None for zeros -> ``(y, state)`` with the input's batch dimensions.
        Shapes are checked as torch's cells check them (module docstring)."""
        name = type(self).__name__
        if x.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        sizes = self.state_sizes
        if state is not None:
            state = (state,) if isinstance(state, Tensor) else tuple(state)
            if len(state) != len(sizes):
                raise ShapeError(f"{name}: expected a state of {len(sizes)} tensor(s), got {len(state)}")
            for k, s in enumerate(state):
                if s.dim() not in (1, 2):
                    what = "hidden" if len(sizes) == 1 else f"hx[{k}]"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.dim()}D instead")
                if s.dim() != x.dim():
                    raise ShapeError(
                        f"{name}: a {x.dim()}-D input needs {x.dim()}-D states, got a {s.dim()}-D hidden{k}"
                    )
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"input has inconsistent input_size: got {x.shape[-1]} expected {self.input_size}")
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            state = tuple(s.unsqueeze(0) for s in state) if state is not None else None
        B = x.shape[0]
        if state is None:
            state = self.initial_state(B, device=x.device, dtype=x.dtype)
        for k, (s, size) in enumerate(zip(state, sizes, strict=True)):
            if s.shape[0] != B:
                raise ShapeError(f"Input batch size {B} doesn't match hidden{k} batch size {s.shape[0]}")
            if s.shape[1] != size:
                raise ShapeError(f"hidden{k} has inconsistent hidden_size: got {s.shape[1]}, expected {size}")
        y, new = self.recur(self.project_input(x), state)
        if unbatched:
            y, new = y.squeeze(0), tuple(s.squeeze(0) for s in new)
        return y, new

    # -- initialisation -----------------------------------------------------------------------
    def _add_weights(self, gate_size: int, hidden_in: int | None, bias: bool) -> None:
        """``weight_ih`` (G, I), ``weight_hh`` (G, ``hidden_in``; none when ``hidden_in`` is None), then
        ``bias_ih`` and ``bias_hh`` (G) or, without ``bias``, None: PyTorch's names and order (the order
        :meth:`reset_parameters` draws them in). Call after setting ``input_size``."""
        fk = self.__dict__["_factory"]
        self.weight_ih = nn.Parameter(torch.empty(gate_size, self.input_size, **fk))
        if hidden_in is not None:
            self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_in, **fk))
        for name in ("bias_ih", "bias_hh") if hidden_in is not None else ("bias_ih",):
            self.register_parameter(name, nn.Parameter(torch.empty(gate_size, **fk)) if bias else None)

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


# -- the registry: config names -> cell classes -------------------------------------------------------
@dataclass(frozen=True)
class CellSpec:
    """A registered cell: its config ``name``, its class and the constructor arguments the name fixes
    (``rnn_tanh`` is :class:`~rnnkit.cells.RNNCell` with ``nonlinearity="tanh"``)."""

    name: str
    cls: type[RecurrentCell]
    fixed: tuple[tuple[str, object], ...] = ()

    @property
    def kwargs(self) -> dict[str, object]:
        return dict(self.fixed)

    @property
    def has_cell_state(self) -> bool:
        return self.cls.has_cell_state()

    @property
    def num_states(self) -> int:
        return len(self.cls.state_names)

    def accepts(self, option: str) -> bool:
        """Whether the class's constructor takes ``option`` (``forget_bias``, ``recurrent_init``, ...)."""
        try:
            params = inspect.signature(self.cls).parameters
        except (TypeError, ValueError):  # a class whose signature cannot be read takes only what it is given
            return False
        return option in params and option not in self.kwargs

    def build(self, input_size: int, hidden_size: int, **kwargs) -> RecurrentCell:
        return self.cls(input_size, hidden_size, **self.kwargs, **kwargs)


_CELLS: dict[str, CellSpec] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def register_cell(name: str, **fixed):
    """Class decorator: make the cell known as ``name`` (``model.cell=<name>`` in the configs), optionally
    with constructor arguments the name fixes. Stack it to register one class under several names.

    ``name`` is lower case, digits and ``_``, at most 32 characters, and not taken."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"cell name must be lower case letters, digits and _ (at most 32), got {name!r}")

    def decorate(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
            raise TypeError(f"register_cell({name!r}): {cls!r} is not a RecurrentCell subclass")
        if name in _CELLS:
            raise ValueError(f"cell name {name!r} is taken by {_CELLS[name].cls.__name__}")
        _CELLS[name] = CellSpec(name, cls, tuple(fixed.items()))
        return cls

    return decorate


def unregister_cell(name: str) -> None:
    """Forget the cell registered as ``name`` (tests that register a cell of their own)."""
    cell_spec(name)
    del _CELLS[name]


def cell_names() -> tuple[str, ...]:
    """The registered config names, in registration order."""
    return tuple(_CELLS)


def cell_spec(name: str) -> CellSpec:
    """The cell registered as ``name``; an unknown name is a one-line ``ValueError`` listing the known ones."""
    spec = _CELLS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(_CELLS)}")
    return spec
