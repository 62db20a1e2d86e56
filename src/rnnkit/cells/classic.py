"""Elman RNN, LSTM and GRU cells written from their equations.

Parameter names, shapes and gate order are PyTorch's, so ``load_state_dict`` works in both
directions with :class:`torch.nn.RNNCell`, :class:`torch.nn.LSTMCell` and :class:`torch.nn.GRUCell`
(and, per layer and direction, with ``torch.nn.RNN/LSTM/GRU``).

Calling them differs from torch's cells in the return value only: ``y, (h,) = cell(x, h)`` where torch
gives ``h = cell(x, h)``, and ``y, (h, c) = cell(x, (h, c))`` where torch gives ``h, c = cell(x, (h, c))``
(``y`` is ``h``). Constructor arguments (``device=``, ``dtype=`` included), unbatched ``(I,)`` inputs and
the strict state checks with torch's messages are torch's; :mod:`rnnkit.cells.base` has the details.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import RecurrentCell, State, check_forget_bias, check_positive_int, register_cell


def _hidden_product(h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, h_mask: Tensor | None) -> Tensor:
    if h_mask is not None:
        h = h * h_mask
    return F.linear(h, weight_hh, bias_hh)


@register_cell("rnn_relu", nonlinearity="relu")
@register_cell("rnn_tanh", nonlinearity="tanh")
class RNNCell(RecurrentCell):
    r"""Elman RNN cell.

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),\qquad \phi \in \{\tanh, \mathrm{ReLU}\}

    Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` (H), ``bias_hh`` (H).
    State: ``(h,)`` with ``h`` (B, H). Output: ``h``.
    """

    num_gates = 1
    fused_mode = "rnn"  # torch.rnn_tanh / torch.rnn_relu, by the nonlinearity

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        recurrent_init: str = "default",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(recurrent_init, device=device, dtype=dtype)
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.bias = bool(bias)
        self.output_size = hidden_size
        self.state_sizes = (hidden_size,)
        self._add_weights(hidden_size, hidden_size, bias)
        self.reset_parameters()

    def fused_kind(self) -> str | None:
        return None if self.fused_mode is None else f"rnn_{self.nonlinearity}"

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., H)
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        (h,) = state
        w = self.weight_hh if weight_hh is None else weight_hh
        pre = xp + _hidden_product(h, w, self.bias_hh, h_mask)
        h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}, bias={self.bias}"


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997, with forget gate), optionally
    with a projection of the output (Sak et al. 2014, ``proj_size`` as in ``torch.nn.LSTM``).

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t) \quad(\text{then } h_t \leftarrow W_{hr} h_t \text{ if } P > 0)
        \end{aligned}

    Gate order in the stacked weights is ``i, f, g, o`` (PyTorch's). Parameters: ``weight_ih``
    (4H, I), ``weight_hh`` (4H, R), ``bias_ih`` (4H), ``bias_hh`` (4H), and ``weight_hr`` (P, H)
    when ``proj_size = P > 0``; ``R = P`` if projected else ``H``.
    State: ``(h, c)`` with ``h`` (B, R), ``c`` (B, H). Output: ``h``.

    ``forget_bias``: if given, the forget gate's total bias starts at this value (``bias_ih``'s
    forget slice is set to it and ``bias_hh``'s to zero), the usual remedy for early vanishing
    memory (Jozefowicz et al. 2015 use 1.0). ``recurrent_init="orthogonal"`` makes each gate
    block of ``weight_hh`` orthogonal.
    """

    num_gates = 4
    state_names = ("h", "c")
    fused_mode = "lstm"
    fast_loop = "lstm"  # without projection (rnnkit.layers.fastloop.supports)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        recurrent_init: str = "default",
        forget_bias: float | None = None,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(recurrent_init, device=device, dtype=dtype)
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        self.proj_size = check_positive_int("proj_size", proj_size, name, allow_zero=True)
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        self.forget_bias = check_forget_bias(forget_bias, name, bias)
        self.bias = bool(bias)
        real = proj_size or hidden_size
        self.output_size = real
        self.state_sizes = (real, hidden_size)
        self._add_weights(4 * hidden_size, real, bias)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **self.__dict__["_factory"]))
        else:
            self.register_parameter("weight_hr", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._init_forget_bias(self.forget_bias)

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., 4H)
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        h, c = state
        w = self.weight_hh if weight_hh is None else weight_hh
        gates = xp + _hidden_product(h, w, self.bias_hh, h_mask)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)
        return h, (h, c)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", bias={self.bias}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        return s


@register_cell("gru")
class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al. 2014), PyTorch's variant (reset applied after the product).

    .. math::
        \begin{aligned}
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    Gate order ``r, z, n``. Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``
    (3H), ``bias_hh`` (3H). State: ``(h,)``. Output: ``h``. With ``h_mask`` (recurrent dropout)
    only the ``W_hh h`` product sees the masked ``h``; the interpolation uses the real one.
    """

    num_gates = 3
    fused_mode = "gru"
    fast_loop = "gru"  # the native GRU loop (rnnkit.layers.fastloop.run_gru)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        recurrent_init: str = "default",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(recurrent_init, device=device, dtype=dtype)
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        self.bias = bool(bias)
        self.output_size = hidden_size
        self.state_sizes = (hidden_size,)
        self._add_weights(3 * hidden_size, hidden_size, bias)
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., 3H)
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        (h,) = state
        w = self.weight_hh if weight_hh is None else weight_hh
        hp = _hidden_product(h, w, self.bias_hh, h_mask)  # (B, 3H)
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = hp.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)  # == (1 - z) * n + z * h
        return h, (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bias={self.bias}"
