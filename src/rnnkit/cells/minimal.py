r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), log-space version.

Neither gate looks at the previous state, so every step is an affine map of it,

.. math::
    h_t = a_t \odot h_{t-1} + b_t, \qquad a_t \in (0, 1),\; b_t > 0,

whose coefficients depend on ``x_t`` only. Training runs all steps at once (:meth:`MinimalCell.scan`)
with a chunked scan in linear space (:func:`chunked_scan`, the default: ``2 sqrt(2T)`` small steps
instead of ``T``, as accurate as stepping) or Heinsen's log-space parallel scan
(:func:`log_space_scan`); decoding runs :meth:`~MinimalCell.recur` one step at a time, written
directly from the equations (the reference both scans are tested against).

Both use the paper's positive activation for the candidate state, so that ``log b_t`` exists:

.. math::
    g(x) = \begin{cases} x + \tfrac12 & x \ge 0 \\ \sigma(x) & x < 0 \end{cases}

There is no hidden-to-hidden weight (``recurrent_weight_name = None``): weight drop and
recurrent dropout do not apply and ``recur`` rejects their hooks.

Shape legend: ``B`` batch, ``T`` time, ``I`` input size, ``H`` hidden size, ``G`` projected
input size (``2H`` for minGRU, ``3H`` for minLSTM).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import RecurrentCell, State, check_positive_int, register_cell


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below (continuous at 0)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """``log(g(x))`` without forming ``g``: ``log(x + 0.5)`` or ``-softplus(-x)``."""
    # clamp keeps the unused branch finite (and its gradient free of NaN) for x < -0.5
    return torch.where(x >= 0, torch.log(x.clamp(min=0) + 0.5), -F.softplus(-x))


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""All states of ``h_t = a_t h_{t-1} + b_t`` at once (Heinsen 2023), for ``a_t, b_t > 0``.

    With :math:`\log A_t = \sum_{r \le t} \log a_r`,

    .. math::
        h_t = A_t h_0 + \sum_{s \le t} \frac{A_t}{A_s} b_s
            = A_t h_0 + \exp\!\big(\log A_t + \operatorname{logcumsumexp}_{s \le t}(\log b_s - \log A_s)\big).

    ``h0`` may have any sign: its term is kept out of the log-space sum.

    ``log_a``, ``log_b``: (B, T, H); ``h0``: (B, H); ``mask``: (B, T) bool, True at real steps.
    At masked-out steps ``a = 1, b = 0``, so the state is carried unchanged (any pattern of
    masked steps works, leading ones included). Returns ``h``: (B, T, H), the state after each step.

    Precision: ``log A_t`` and the log-sum cancel in the last exponent, so the rounding error grows
    with the accumulated decay ``|log A_t|``: in float32, about 1e-5 at T = 64 and 1e-4 to 1e-3 at
    T = 1024 (absolute, for states of order 1); float64 stays near 1e-12.
    """
    if mask is not None:
        keep = mask.unsqueeze(-1)  # (B, T, 1)
        log_a = log_a.masked_fill(~keep, 0.0)
    log_A = log_a.cumsum(dim=1)  # (B, T, H)
    log_terms = log_b - log_A  # (B, T, H)
    if mask is not None:
        # -inf (b = 0) only after the subtraction: logcumsumexp's gradient is NaN at leading -inf
        # entries, and masked_fill drops it here instead of letting it reach log_A.
        log_terms = log_terms.masked_fill(~keep, float("-inf"))
    log_sum = torch.logcumsumexp(log_terms, dim=1)  # (B, T, H), -inf before the first real step
    return log_A.exp() * h0.unsqueeze(1) + (log_A + log_sum).exp()


def chunk_size_for(T: int) -> int:
    """The default chunk length ``C`` of :func:`chunked_scan`: about ``sqrt(T / 3)``, which balances the
    ``3 C`` in-chunk steps against the ``T / C`` carry steps."""
    return max(1, min(T, round(math.sqrt(T / 3))))


def _step_into(a: Tensor, b: Tensor, h: Tensor, out: Tensor) -> Tensor:
    return torch.addcmul(b, a, h, out=out)


def _scan_chunks(a: Tensor, b: Tensor, h0: Tensor, out: Tensor, C: int, reverse: bool) -> Tensor:
    """The chunked scan over ``N * C`` steps (no autograd): writes every state into ``out`` and returns the
    last one. ``reverse`` runs time backwards (``out_t = a_t out_{t+1} + b_t``, ``h0`` entering at the end)."""
    B, M, H = a.shape
    N = M // C
    av, bv, ov = a.reshape(B, N, C, H), b.reshape(B, N, C, H), out.view(B, N, C, H)
    order = range(C - 1, -1, -1) if reverse else range(C)
    # 1. every chunk from a zero state at once: its local end state and the product of its a's
    first, *rest = order
    h_loc, prod = bv[:, :, first], av[:, :, first]
    for c in rest:
        h_loc = torch.addcmul(bv[:, :, c], av[:, :, c], h_loc)
        prod = prod * av[:, :, c]
    # 2. the state entering each chunk, carried across the chunks in order
    starts = torch.empty_like(h_loc)  # (B, N, H)
    chunks = range(N - 1, -1, -1) if reverse else range(N)
    prev = None
    for n in chunks:
        if prev is None:
            starts[:, n] = h0
        else:
            _step_into(prod[:, prev], h_loc[:, prev], starts[:, prev], starts[:, n])
        prev = n
    last = torch.addcmul(h_loc[:, prev], prod[:, prev], starts[:, prev])
    # 3. every chunk again, now from its true start, writing the states
    h = starts
    for c in order:
        h = _step_into(av[:, :, c], bv[:, :, c], h, ov[:, :, c])
    return last


def _scan(a: Tensor, b: Tensor, h0: Tensor, C: int, reverse: bool = False) -> Tensor:
    """All states of the affine recurrence (no autograd); the ``T mod C`` leftover steps run one by one."""
    B, T, H = a.shape
    out = torch.empty(B, T, H, dtype=a.dtype, device=a.device)
    M = (T // C) * C
    h = h0
    if reverse:
        for t in range(T - 1, M - 1, -1):
            h = _step_into(a[:, t], b[:, t], h, out[:, t])
        if M:
            _scan_chunks(a[:, :M], b[:, :M], h, out[:, :M], C, True)
    else:
        if M:
            h = _scan_chunks(a[:, :M], b[:, :M], h, out[:, :M], C, False)
        for t in range(M, T):
            h = _step_into(a[:, t], b[:, t], h, out[:, t])
    return out


class _ChunkedScan(torch.autograd.Function):
    """``h = scan(a, b, h0)`` with its adjoint written out: the gradient runs the same scan backwards in
    time, ``lam_t = dL/dh_t + a_{t+1} lam_{t+1}``; then ``dL/db = lam``, ``dL/da_t = lam_t h_{t-1}``,
    ``dL/dh0 = a_0 lam_0``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, C: int) -> Tensor:
        h = _scan(a.contiguous(), b.contiguous(), h0.contiguous(), C)
        ctx.save_for_backward(a, h, h0)  # the inputs themselves: a double backward differentiates through them
        ctx.C = C
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the same adjoint from differentiable ops, the reverse scan being this very
            # function on time-flipped inputs, so gradients of any order flow
            a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], 1)
            lam = _ChunkedScan.apply(a_next.flip(1), grad_h.flip(1), torch.zeros_like(h0), ctx.C).flip(1)
            h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], 1)
            return lam * h_prev, lam, a[:, 0] * lam[:, 0], None
        a, h0, grad_h = a.contiguous(), h0.contiguous(), grad_h.contiguous()
        a_next = torch.empty_like(a)
        a_next[:, :-1] = a[:, 1:]
        a_next[:, -1] = 0.0
        lam = _scan(a_next, grad_h, torch.zeros_like(h0), ctx.C, reverse=True)
        grad_a = torch.empty_like(a)
        torch.mul(lam[:, 1:], h[:, :-1], out=grad_a[:, 1:])
        torch.mul(lam[:, 0], h0, out=grad_a[:, 0])
        return grad_a, lam, a[:, 0] * lam[:, 0], None


def chunked_scan(a: Tensor, b: Tensor, h0: Tensor, mask: Tensor | None = None, chunk: int | None = None) -> Tensor:
    r"""All states of ``h_t = a_t h_{t-1} + b_t`` in linear space, ``C`` steps at a time.

    Time is cut into ``N = T // C`` chunks (the ``T mod C`` leftover steps run one by one). One loop of
    ``C`` steps runs every chunk at once from a zero state, giving each chunk's local end state and the
    product of its ``a_t``; a loop of ``N`` steps carries the state across chunks; a second loop of ``C``
    steps runs every chunk again from its true start and writes the states. That is about ``3 C + N``
    small elementwise ops (each on ``B * N * H`` or ``B * H`` values) instead of ``T``. The gradient is
    written out (:class:`_ChunkedScan`): the same scan backwards in time, plus two products (and
    differentiable again under ``create_graph=True``).

    Only products and sums of the coefficients appear, never a quotient or a logarithm: with
    ``a_t`` in [0, 1] the products just shrink (towards 0 without harm), so this is as accurate as
    stepping, in float32 too, for any ``T`` (unlike the log-space scan, whose error grows with ``T``).
    ``h0`` and ``b`` may have any sign.

    ``a``, ``b``: (B, T, H); ``h0``: (B, H); ``mask``: (B, T) bool, True at real steps (masked-out
    steps use ``a = 1, b = 0``: the state is carried unchanged); ``chunk``: ``C`` (default
    :func:`chunk_size_for`). Returns ``h`` (B, T, H), the state after each step.
    """
    B, T, H = a.shape
    if T == 0:
        return a.new_zeros(B, 0, H)
    if mask is not None:
        keep = mask.unsqueeze(-1)
        a = torch.where(keep, a, torch.ones((), dtype=a.dtype, device=a.device))
        b = torch.where(keep, b, torch.zeros((), dtype=b.dtype, device=b.device))
    C = chunk_size_for(T) if chunk is None else max(1, min(int(chunk), T))
    return _ChunkedScan.apply(a, b, h0.to(a.dtype), C)


class MinimalCell(RecurrentCell):
    """Shared plumbing of :class:`MinGRUCell` and :class:`MinLSTMCell`.

    Subclasses set ``num_gates`` and implement :meth:`log_coefficients` and :meth:`recur`.
    """

    recurrent_weight_name: str | None = None  # type: ignore[assignment]

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
        name = type(self).__name__
        if recurrent_init != "default":
            raise ValueError(
                f"{name}: recurrent_init must be 'default' ({name} has no hidden-to-hidden weight to "
                f"initialise), got {recurrent_init!r}"
            )
        super().__init__(recurrent_init, device=device, dtype=dtype)
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        self.bias = bool(bias)
        self.output_size = hidden_size
        self.state_sizes = (hidden_size,)
        self._add_weights(self.num_gates * hidden_size, None, bias)  # no hidden-to-hidden weight
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:  # (..., I) -> (..., G)
        return F.linear(x, self.weight_ih, self.bias_ih)

    def log_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        """``(log a, log b)`` of the step ``h_t = a h_{t-1} + b``: (..., G) -> two (..., H)."""
        raise NotImplementedError

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` of the step ``h_t = a h_{t-1} + b``: (..., G) -> two (..., H)."""
        raise NotImplementedError

    def _reject_hooks(self, weight_hh: Tensor | None, h_mask: Tensor | None) -> None:
        if weight_hh is not None or h_mask is not None:
            raise ValueError(
                f"{type(self).__name__} has no hidden-to-hidden weight: weight_hh (weight drop) and "
                "h_mask (recurrent dropout) do not apply; pass neither"
            )

    def scan(
        self,
        xp: Tensor,
        state: State | Tensor | None = None,
        mask: Tensor | None = None,
        *,
        method: str = "chunked",
        chunk: int | None = None,
    ):
        """All steps at once: ``xp`` (B, T, G) from :meth:`project_input`, ``state`` ``(h0,)`` with
        ``h0`` (B, H) of any sign (None for zeros), ``mask`` (B, T) bool, True at real steps.
        ``method``: ``"chunked"`` (:func:`chunked_scan`, linear space, the default: faster and exact
        at any length) or ``"log"`` (:func:`log_space_scan`); ``chunk``: the chunked scan's ``C``.

        Returns ``(outputs, (h_T,))``: outputs (B, T, H) are the states after each step; at
        masked-out steps the state is carried unchanged (so the output there repeats the last
        real one; the layer zeroes padding), and ``h_T`` is each sequence's state after its
        last real step. Equal to calling :meth:`recur` step by step. Computed in at least float32.
        """
        name = type(self).__name__
        G = self.num_gates * self.hidden_size
        if xp.dim() != 3 or xp.shape[-1] != G:
            raise ValueError(f"{name}.scan: expected xp of shape (B, T, {G}), got {tuple(xp.shape)}")
        B, T, _ = xp.shape
        if state is None:
            state = self.initial_state(B, device=xp.device, dtype=xp.dtype)
        elif isinstance(state, Tensor):
            state = (state,)
        if len(state) != 1 or tuple(state[0].shape) != (B, self.hidden_size):
            shapes = [tuple(s.shape) for s in state]
            raise ValueError(
                f"{name}.scan: expected state (h0,) with h0 of shape ({B}, {self.hidden_size}), got {shapes}"
            )
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (B, T)):
            raise ValueError(
                f"{name}.scan: expected a bool mask of shape ({B}, {T}), got {mask.dtype} {tuple(mask.shape)}"
            )
        if method not in ("chunked", "log"):
            raise ValueError(f"{name}.scan: method must be 'chunked' or 'log', got {method!r}")
        (h0,) = state
        if T == 0:
            return xp.new_zeros(B, 0, self.hidden_size), (h0,)
        # low-precision inputs would lose the running products, so compute in float32 at least
        dtype = torch.promote_types(xp.dtype, torch.float32)
        if method == "chunked":
            a, b = self.coefficients(xp.to(dtype))  # (B, T, H) each
            h = chunked_scan(a, b, h0.to(dtype), mask, chunk).to(xp.dtype)  # (B, T, H)
        else:
            log_a, log_b = self.log_coefficients(xp.to(dtype))  # (B, T, H) each
            h = log_space_scan(log_a, log_b, h0.to(dtype), mask).to(xp.dtype)  # (B, T, H)
        return h, (h[:, -1],)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


@register_cell("min_gru")
class MinGRUCell(MinimalCell):
    r"""minGRU: a GRU whose gate and candidate see only the input.

    .. math::
        \begin{aligned}
        (k_z, k_h) &= W_{ih} x_t + b_{ih} \\
        z_t &= \sigma(k_z), \qquad \tilde h_t = g(k_h) \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t
        \end{aligned}

    In log space: :math:`\log a_t = \log(1 - z_t) = -\mathrm{softplus}(k_z)`,
    :math:`\log b_t = \log z_t + \log \tilde h_t = -\mathrm{softplus}(-k_z) + \log g(k_h)`.

    Chunk order ``z, h~``. Parameters: ``weight_ih`` (2H, I), ``bias_ih`` (2H).
    State: ``(h,)`` with ``h`` (B, H). Output: ``h``.
    """

    num_gates = 2

    def log_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:  # (..., 2H) -> 2 x (..., H)
        k_z, k_h = xp.chunk(2, dim=-1)
        return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:  # (..., 2H) -> 2 x (..., H)
        k_z, k_h = xp.chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        return 1 - z, z * g(k_h)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        self._reject_hooks(weight_hh, h_mask)
        (h,) = state
        k_z, k_h = xp.chunk(2, dim=-1)  # (B, H) each
        z = torch.sigmoid(k_z)
        h = (1 - z) * h + z * g(k_h)
        return h, (h,)


@register_cell("min_lstm")
class MinLSTMCell(MinimalCell):
    r"""minLSTM with the paper's length-independence normalisation of the gates.

    .. math::
        \begin{aligned}
        (k_f, k_i, k_h) &= W_{ih} x_t + b_{ih} \\
        f_t &= \sigma(k_f), \qquad i_t = \sigma(k_i), \qquad \tilde h_t = g(k_h) \\
        f'_t &= \frac{f_t}{f_t + i_t}, \qquad i'_t = \frac{i_t}{f_t + i_t} \qquad (f'_t + i'_t = 1) \\
        h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t
        \end{aligned}

    With :math:`d_t = \log i_t - \log f_t = \mathrm{softplus}(-k_f) - \mathrm{softplus}(-k_i)`:
    :math:`\log f'_t = \log f_t - \mathrm{logaddexp}(\log f_t, \log i_t) = -\mathrm{softplus}(d_t)`,
    :math:`\log i'_t = -\mathrm{softplus}(-d_t)`, so :math:`f'_t = \sigma(-d_t)`, :math:`i'_t = \sigma(d_t)`
    (stable even where both gates underflow). Log-space coefficients:
    :math:`\log a_t = \log f'_t`, :math:`\log b_t = \log i'_t + \log g(k_h)`.

    Chunk order ``f, i, h~``. Parameters: ``weight_ih`` (3H, I), ``bias_ih`` (3H).
    State: ``(h,)`` with ``h`` (B, H) (minLSTM carries no separate cell state). Output: ``h``.
    """

    num_gates = 3

    @staticmethod
    def _log_ratio(k_f: Tensor, k_i: Tensor) -> Tensor:
        return F.softplus(-k_f) - F.softplus(-k_i)  # log sigma(k_i) - log sigma(k_f)

    def log_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:  # (..., 3H) -> 2 x (..., H)
        k_f, k_i, k_h = xp.chunk(3, dim=-1)
        d = self._log_ratio(k_f, k_i)
        return -F.softplus(d), -F.softplus(-d) + log_g(k_h)

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:  # (..., 3H) -> 2 x (..., H)
        k_f, k_i, k_h = xp.chunk(3, dim=-1)
        d = self._log_ratio(k_f, k_i)
        return torch.sigmoid(-d), torch.sigmoid(d) * g(k_h)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None) -> tuple[Tensor, State]:
        self._reject_hooks(weight_hh, h_mask)
        (h,) = state
        k_f, k_i, k_h = xp.chunk(3, dim=-1)  # (B, H) each
        d = self._log_ratio(k_f, k_i)
        f_n, i_n = torch.sigmoid(-d), torch.sigmoid(d)  # f / (f + i), i / (f + i)
        h = f_n * h + i_n * g(k_h)
        return h, (h,)
