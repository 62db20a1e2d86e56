"""Layer-normalised LSTM and GRU cells (Ba, Kiros & Hinton 2016, "Layer Normalization").

Where the norms sit (the variant matters; implementations differ):

* ``ln_ih`` normalises the whole stacked input projection ``W_ih x`` (``G = gates * H`` features,
  all gates together, as in the paper), and ``ln_hh`` the whole hidden projection ``W_hh h``.
  The two are normalised separately, so neither can swamp the other.
* The LSTM adds ``ln_c`` on the cell state where it enters the output ``tanh``; the carried
  ``c`` itself stays unnormalised.
* ``ln_ih`` and ``ln_hh`` have a gain and no shift: the additive terms are ``bias_ih`` and
  ``bias_hh``, added *after* the norms. This is the paper's
  ``LN(W_h h; a1, b1) + LN(W_x x; a2, b2) + b`` with the three shifts ``b1 + b2 + b`` folded into
  PyTorch's two biases, so parameter names and the ``forget_bias`` convention match
  :class:`~rnnkit.cells.LSTMCell`, and in the GRU ``bias_hh``'s candidate slice sits inside the
  reset product exactly as ``b_hn`` does in ``torch.nn.GRU``.

``bias=False`` removes every additive term: ``bias_ih``, ``bias_hh`` and ``ln_c``'s shift.

Shape legend: ``B`` batch, ``I`` input size, ``H`` hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import RecurrentCell, State, check_forget_bias, check_positive_int, register_cell
from .classic import _hidden_product


def _check_eps(eps: object, owner: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"{owner}: eps must be a positive float, got {eps!r}")
    return float(eps)


@register_cell("ln_lstm")
class LayerNormLSTMCell(RecurrentCell):
    r"""LSTM cell with layer normalisation (Ba et al. 2016, section 3.1 / appendix).

    .. math::
        \begin{aligned}
        (\hat i, \hat f, \hat g, \hat o) &= \mathrm{LN}_{ih}(W_{ih} x_t) + b_{ih}
            + \mathrm{LN}_{hh}(W_{hh} h_{t-1}) + b_{hh} \\
        c_t &= \sigma(\hat f) \odot c_{t-1} + \sigma(\hat i) \odot \tanh(\hat g) \\
        h_t &= \sigma(\hat o) \odot \tanh(\mathrm{LN}_c(c_t))
        \end{aligned}

    with :math:`\mathrm{LN}(v) = \gamma \odot (v - \mu(v)) / \sqrt{\mathrm{var}(v) + \epsilon}\,(+\,\beta)`
    taken over the last dimension: all ``4H`` gate features for ``LN_ih`` and ``LN_hh`` (gain only),
    the ``H`` cell features for ``LN_c`` (gain and shift).

    Gate order ``i, f, g, o`` (PyTorch's). Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    ``bias_ih`` (4H), ``bias_hh`` (4H); submodules ``ln_ih`` = LayerNorm(4H, no shift),
    ``ln_hh`` = LayerNorm(4H, no shift), ``ln_c`` = LayerNorm(H).
    State: ``(h, c)``, both (B, H). Output: ``h``.

    :meth:`project_input` returns ``LN_ih(W_ih x) + b_ih`` (it depends on ``x`` only, so the loop
    can hoist it over all time steps). In :meth:`recur`, ``weight_hh`` replaces ``W_hh`` and
    ``h_mask`` multiplies ``h_{t-1}`` inside ``W_hh h_{t-1}`` only.

    ``forget_bias``: if given, ``bias_ih``'s forget slice starts at this value and ``bias_hh``'s at
    zero (the LN shifts start at zero too), so the forget gate's total bias is ``forget_bias``.
    ``recurrent_init="orthogonal"`` makes each ``H x H`` gate block of ``weight_hh`` orthogonal.
    ``reset_parameters`` sets every LayerNorm gain to 1 and shift to 0.
    """

    num_gates = 4
    state_names = ("h", "c")
    fast_loop = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        recurrent_init: str = "default",
        forget_bias: float | None = None,
        eps: float = 1e-5,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(recurrent_init, device=device, dtype=dtype)
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        self.forget_bias = check_forget_bias(forget_bias, name, bias)
        self.eps = _check_eps(eps, name)
        self.bias = bool(bias)
        self.output_size = hidden_size
        self.state_sizes = (hidden_size, hidden_size)
        G = 4 * hidden_size
        self._add_weights(G, hidden_size, bias)
        # Shifts of ln_ih / ln_hh would duplicate bias_ih / bias_hh, so they have a gain only.
        self.ln_ih = nn.LayerNorm(G, eps=self.eps, bias=False, **self.__dict__["_factory"])
        self.ln_hh = nn.LayerNorm(G, eps=self.eps, bias=False, **self.__dict__["_factory"])
        self.ln_c = nn.LayerNorm(hidden_size, eps=self.eps, bias=self.bias, **self.__dict__["_factory"])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The base class draws weight_* / bias_* uniformly, lets each LayerNorm reset itself to
        # gain 1 / shift 0, then applies recurrent_init.
        super().reset_parameters()
        self._init_forget_bias(self.forget_bias)

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., 4H)
        xp = self.ln_ih(F.linear(x, self.weight_ih))
        return xp if self.bias_ih is None else xp + self.bias_ih

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        h, c = state
        w = self.weight_hh if weight_hh is None else weight_hh
        hp = self.ln_hh(_hidden_product(h, w, None, h_mask))  # (B, 4H)
        if self.bias_hh is not None:
            hp = hp + self.bias_hh
        i, f, g, o = (xp + hp).chunk(4, dim=-1)  # each (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, (h, c)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", bias={self.bias}"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        return s


@register_cell("ln_gru")
class LayerNormGRUCell(RecurrentCell):
    r"""GRU cell with layer normalisation on its two projections, PyTorch's GRU variant otherwise
    (the reset gate multiplies the normalised hidden product, after it is taken).

    .. math::
        \begin{aligned}
        (x_r, x_z, x_n) &= \mathrm{LN}_{ih}(W_{ih} x_t) + b_{ih} \\
        (h_r, h_z, h_n) &= \mathrm{LN}_{hh}(W_{hh} h_{t-1}) + b_{hh} \\
        r_t &= \sigma(x_r + h_r), \qquad z_t = \sigma(x_z + h_z) \\
        n_t &= \tanh(x_n + r_t \odot h_n) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    ``LN_ih`` and ``LN_hh`` normalise all ``3H`` gate features together and have a gain only (the
    shifts are ``bias_ih`` / ``bias_hh``). There is no norm on the state: ``h_t`` is a convex
    combination of ``tanh`` values and ``h_{t-1}``, so it stays in ``[-1, 1]`` by itself.

    Gate order ``r, z, n``. Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``
    (3H), ``bias_hh`` (3H); submodules ``ln_ih``, ``ln_hh`` = LayerNorm(3H, no shift).
    State: ``(h,)`` with ``h`` (B, H). Output: ``h``. ``h_mask`` masks ``h_{t-1}`` inside
    ``W_hh h_{t-1}`` only; the interpolation uses the real one.
    """

    num_gates = 3
    fast_loop = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        recurrent_init: str = "default",
        eps: float = 1e-5,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(recurrent_init, device=device, dtype=dtype)
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        self.eps = _check_eps(eps, name)
        self.bias = bool(bias)
        self.output_size = hidden_size
        self.state_sizes = (hidden_size,)
        G = 3 * hidden_size
        self._add_weights(G, hidden_size, bias)
        self.ln_ih = nn.LayerNorm(G, eps=self.eps, bias=False, **self.__dict__["_factory"])
        self.ln_hh = nn.LayerNorm(G, eps=self.eps, bias=False, **self.__dict__["_factory"])
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., 3H)
        xp = self.ln_ih(F.linear(x, self.weight_ih))
        return xp if self.bias_ih is None else xp + self.bias_ih

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        (h,) = state
        w = self.weight_hh if weight_hh is None else weight_hh
        hp = self.ln_hh(_hidden_product(h, w, None, h_mask))  # (B, 3H)
        if self.bias_hh is not None:
            hp = hp + self.bias_hh
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = hp.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)  # == (1 - z) * n + z * h
        return h, (h,)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", bias={self.bias}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        return s
