"""Drop-in ``RNN``, ``LSTM`` and ``GRU``: ``torch.nn``'s constructor, parameters and outputs, plus more.

Each class *is* its ``torch.nn`` counterpart (a subclass), so constructor arguments, parameter
names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0`` ...), ``state_dict`` keys and
return values are torch's, and ``load_state_dict`` works both ways. What it adds, all keyword-only:

* ``forward(input, hx=None, lengths=None)`` — ragged batches without packing: outputs past each
  length are zero and the final state is taken at each sequence's own last step (both directions).
  A ``PackedSequence`` input is accepted too and answered with one.
* regularisers: ``input_dropout``, ``output_dropout`` (locked), ``variational_dropout`` (makes the
  inter-layer ``dropout`` locked), ``recurrent_dropout``, ``weight_drop``, ``zoneout``
  (see :mod:`rnnkit.layers.recurrent`);
* init: ``recurrent_init="orthogonal"`` (each gate block of every ``weight_hh``), ``forget_bias``
  (LSTM: the forget gate's total bias starts at this value);
* ``implementation="auto"|"fused"|"loop"|"reference"`` and ``layer.path`` / ``layer.last_path``: the fused
  kernel runs whenever the options allow it (plain, ``lengths``, dropout variants, weight drop);
  zoneout and recurrent dropout (in training) run the reference loop over rnnkit's cells, which use
  these very parameters.
* ``step(x_t, hx=None) -> (y_t, hx)`` — streaming inference one step at a time (unidirectional),
  equal to ``forward`` over the whole sequence; it calls torch's one-step kernels directly.

Where a ``torch.nn`` user would notice nothing (tests/conformance runs PyTorch's own recurrent-layer tests
on torch.nn and on every ``implementation``; docs/layers.md lists the details):

* the constructor draws exactly the random numbers torch's draws (the loop's cells are built on the meta
  device and bound to the layer's parameters), so the weights and every later random number are the same;
* errors: torch's types and messages. The shape errors are :class:`rnnkit.cells.ShapeError`, both the
  ``RuntimeError`` torch raises and the ``ValueError`` earlier rnnkit versions raised; ``dropout=1.0`` is
  accepted; a ``PackedSequence`` comes back with the input's ``sorted_indices`` / ``unsorted_indices``
  (None after ``enforce_sorted=True``);
* ``torch.compile`` works in training and evaluation on every path (the fused kernel call runs eagerly,
  as dynamo runs ``torch.nn.LSTM``); ``layer.last_path`` records the path instead of a log call;
* second-order gradients (``create_graph=True``) on every path: the hand-differentiated LSTM loop
  recomputes through plain autograd ops for them (:mod:`rnnkit.layers.fastloop`);
* CPU autocast: the loop returns torch's dtypes (bfloat16 for LSTM and RNN, float32 for the GRU);
* ``torch.func`` transforms (``vmap``, ``grad``, ``jvp``) run the autograd reference loop, so they work on
  every path (torch.nn's fused kernel has no batching rule: ``vmap`` raises there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import GRUCell, LSTMCell, RNNCell
from ..cells.base import RECURRENT_INITS, ShapeError, check_forget_bias
from .masking import check_lengths
from .recurrent import RecurrentStack
from .regularisation import Regularisation

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _repack(out: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """``out`` (B, T, O), batch in the caller's order, packed as torch packs an RNN's output for the
    PackedSequence ``like``: the same batch sizes and the same ``sorted_indices`` / ``unsorted_indices``
    (None when ``like`` was packed with ``enforce_sorted=True``)."""
    if like.sorted_indices is not None:
        out, lengths = out.index_select(0, like.sorted_indices), lengths.index_select(0, like.sorted_indices)
    data = pack_padded_sequence(out, lengths.cpu(), batch_first=True, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class _DropIn(RecurrentStack):
    """Forward, state handling, init options and cell binding shared by RNN/LSTM/GRU."""

    _dropout_may_be_one = True  # torch's range for its own argument

    @staticmethod
    def _check_init(owner: str, recurrent_init, forget_bias, is_lstm: bool) -> None:
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"{owner}: recurrent_init must be one of {RECURRENT_INITS}, got {recurrent_init!r}")
        if forget_bias is not None and not is_lstm:
            raise ValueError(f"{owner}: forget_bias applies to LSTM only")
        check_forget_bias(forget_bias, owner)

    def reset_parameters(self) -> None:
        super().reset_parameters()  # torch's U(-1/sqrt(H), 1/sqrt(H))
        init = self.__dict__.get("_rk_recurrent_init", "default")
        forget_bias = self.__dict__.get("_rk_forget_bias")
        H = self.hidden_size
        with torch.no_grad():
            for name, p in self.named_parameters():
                if init == "orthogonal" and name.startswith("weight_hh"):
                    for block in p.chunk(_GATES[self.mode], dim=0):
                        nn.init.orthogonal_(block)
                if forget_bias is not None and name.startswith("bias_ih"):
                    p[H : 2 * H].fill_(float(forget_bias))
                if forget_bias is not None and name.startswith("bias_hh"):
                    p[H : 2 * H].zero_()

    # -- the cells that run the loop path, bound to this module's parameters ---------------------
    def _make_cells(self) -> None:
        D = 2 if self.bidirectional else 1
        grid = []
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else D * (self.proj_size or self.hidden_size)
            row = []
            for _ in range(D):
                # on the meta device: no memory, and no random draws (the global RNG advances exactly as
                # torch.nn's constructor advances it)
                if self.mode == "LSTM":
                    cell = LSTMCell(size, self.hidden_size, self.bias, self.proj_size, device="meta")
                elif self.mode == "GRU":
                    cell = GRUCell(size, self.hidden_size, self.bias, device="meta")
                else:
                    cell = RNNCell(size, self.hidden_size, self.bias, self.nonlinearity, device="meta")
                row.append(cell)
            grid.append(row)
        # kept out of the module tree: they own no parameters, only references bound in _grid()
        self.__dict__["_cell_grid"] = grid
        self._grid()

    def _grid(self):
        grid = self.__dict__["_cell_grid"]
        for layer, row in enumerate(grid):
            for d, cell in enumerate(row):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for name in list(cell._parameters):
                    cell._parameters[name] = getattr(self, name + sfx) if cell._parameters[name] is not None else None
        return grid

    # -- forward --------------------------------------------------------------------------------
    def forward(self, input, hx=None, lengths=None):  # noqa: A002 - torch's argument name
        """torch's ``forward(input, hx)``, its checks and error messages included, plus ``lengths``."""
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        w0 = self.weight_ih_l0
        if data.dtype != w0.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({data.dtype}) does not match weight dtype ({w0.dtype}). "
                f"Convert input: input.to({w0.dtype}), or convert model: model.to({data.dtype})"
            )
        if packed:
            if lengths is not None:
                raise ValueError(f"{name}: give either a PackedSequence or lengths, not both")
            if data.dim() != 2:
                raise ShapeError(f"input must have 2 dimensions, got {data.dim()}")
            x, lengths = pad_packed_sequence(input, batch_first=True)
            unbatched = False
        else:
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{name}: Expected input to be 2D or 3D, got {input.dim()}D"
                    + (" tensor instead" if self.mode.startswith("RNN") else " instead")
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(0) if unbatched else (input if self.batch_first else input.transpose(0, 1))
            if unbatched and lengths is not None:
                raise ValueError(f"{name}: lengths needs a batched (3-D) input")
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
            )
        B, T = x.shape[:2]
        state = self._state_in(hx, B, x, unbatched, packed)
        if T == 0:  # torch's kernel says so on every path
            raise ShapeError("Expected sequence length to be larger than 0 in RNN")
        lengths = check_lengths(lengths, B, T, x.device)
        n = len(state[0])
        out, finals = self._run(x, [tuple(s[i] for s in state) for i in range(n)], lengths)
        final = tuple(torch.stack([f[k] for f in finals]) for k in range(len(state)))
        if packed:
            out = _repack(out, lengths, input)
        elif unbatched:
            out, final = out.squeeze(0), tuple(s.squeeze(1) for s in final)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return (out, final) if self.mode == "LSTM" else (out, final[0])

    def _step_state_out(self, state):
        return state if self.mode == "LSTM" else state[0]

    def _state_in(self, hx, B: int, x: Tensor, unbatched: bool, packed: bool) -> tuple[Tensor, ...]:
        """The initial state as per-component ``(L*D, B, S)`` tensors, checked as torch checks it."""
        n = self.num_layers * (2 if self.bidirectional else 1)
        lstm = self.mode == "LSTM"
        sizes = (self.proj_size or self.hidden_size, self.hidden_size) if lstm else (self.hidden_size,)
        if hx is None:
            return tuple(x.new_zeros(n, B, s) for s in sizes)
        state = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(state) != len(sizes):
            raise ShapeError(f"{type(self).__name__}: expected hx as {len(sizes)} tensor(s), got {len(state)}")
        if not packed:
            dims = tuple(s.dim() for s in state)
            want_dim = 2 if unbatched else 3
            if any(d != want_dim for d in dims):
                kind = "unbatched 2-D" if unbatched else "batched 3-D"
                if lstm:
                    got = f"({dims[0]}-D, {dims[1]}-D) tensors"
                    raise ShapeError(f"For {kind} input, hx and cx should also be {want_dim}-D but got {got}")
                raise ShapeError(f"For {kind} input, hx should also be {want_dim}-D but got {dims[0]}-D tensor")
        if unbatched:
            state = tuple(s.unsqueeze(1) for s in state)
        for k, (s, size) in enumerate(zip(state, sizes, strict=True)):
            if tuple(s.shape) != (n, B, size):
                what = f"hidden[{k}]" if lstm else "hidden"
                raise ShapeError(f"Expected {what} size {(n, B, size)}, got {list(s.shape)}")
        return state

    def extra_repr(self) -> str:
        # torch's own (RNNBase.extra_repr) formats from __dict__, and ``dropout`` lives in self.regularisation
        s = f"{self.input_size}, {self.hidden_size}"
        torch_defaults = {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False, "dropout": 0}
        for k, default in {**torch_defaults, "bidirectional": False}.items():
            if getattr(self, k) != default:
                s += f", {k}={getattr(self, k)}"
        for k in ("input_dropout", "output_dropout", "recurrent_dropout", "weight_drop", "zoneout"):
            if getattr(self, k):
                s += f", {k}={getattr(self, k)}"
        if self.variational_dropout:
            s += ", variational_dropout=True"
        if self.__dict__.get("_rk_recurrent_init", "default") != "default":
            s += f", recurrent_init={self._rk_recurrent_init!r}"
        if self.__dict__.get("_rk_forget_bias") is not None:
            s += f", forget_bias={self._rk_forget_bias}"
        return s


def _make_dropin(base: type[nn.RNNBase], doc: str) -> type:
    is_lstm = base is nn.LSTM

    def __init__(
        self,
        *args,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        variational_dropout: bool = False,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float = 0.0,
        recurrent_init: str = "default",
        forget_bias: float | None = None,
        implementation: str = "auto",
        **kwargs,
    ) -> None:
        _DropIn._check_init(base.__name__, recurrent_init, forget_bias, is_lstm)
        # read by reset_parameters, which torch's constructor calls
        self.__dict__["_rk_recurrent_init"] = recurrent_init
        self.__dict__["_rk_forget_bias"] = forget_bias
        base.__init__(self, *args, **kwargs)
        reg = Regularisation.checked(
            type(self).__name__,
            dropout_may_be_one=True,  # torch's range for its own argument
            dropout=self.dropout,
            variational_dropout=variational_dropout,
            input_dropout=input_dropout,
            output_dropout=output_dropout,
            recurrent_dropout=recurrent_dropout,
            weight_drop=weight_drop,
            zoneout=zoneout,
        )
        self._init_options(reg, implementation)
        self._make_cells()
        self._check_cells_support_options()

    return type(base.__name__, (_DropIn, base), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


RNN = _make_dropin(nn.RNN, "Drop-in :class:`torch.nn.RNN` (tanh or relu) with ``lengths=`` and the rnnkit extras.")
LSTM = _make_dropin(
    nn.LSTM, "Drop-in :class:`torch.nn.LSTM` (``proj_size`` included) with ``lengths=`` and the rnnkit extras."
)
GRU = _make_dropin(nn.GRU, "Drop-in :class:`torch.nn.GRU` with ``lengths=`` and the rnnkit extras.")


def dropin_for(cell: type) -> type | None:
    """The drop-in layer that keeps ``cell``'s parameters in torch.nn's layout (``weight_ih_l0``, ...): ``LSTM``
    for :class:`~rnnkit.cells.LSTMCell`, ``GRU`` for :class:`~rnnkit.cells.GRUCell`, ``RNN`` for
    :class:`~rnnkit.cells.RNNCell` (exact classes); None for every other cell, which runs in
    :class:`~rnnkit.layers.Recurrent`."""
    return {LSTMCell: LSTM, GRUCell: GRU, RNNCell: RNN}.get(cell)
