r"""Pool a padded sequence of outputs ``(B, T, H)`` into one vector per sequence ``(B, H)``.

Every function takes ``lengths`` (B,) (None means every sequence fills ``T``) and ignores padding
whatever it holds: the mean divides by each sequence's own length, padding never wins the max,
"last" is the output at each sequence's own last real step, and attention gives padding weight 0.

Bidirectional outputs ``[forward; backward]`` (B, T, 2H) need care only for "last": the forward
half has read the whole sequence at ``t = length - 1``, the backward half at ``t = 0``;
:func:`bidirectional_last` takes each half where it is complete. Mean, max and attention treat
every feature alike, so they need nothing special.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .attention import masked_softmax
from .masking import check_lengths, last_valid, lengths_to_mask

POOLING_KINDS = ("last", "mean", "max", "attention")


def _check(x: Tensor, lengths, fn: str) -> Tensor | None:
    if x.dim() != 3:
        raise ValueError(f"{fn}: x must have shape (B, T, H), got {tuple(x.shape)}")
    return check_lengths(lengths, x.shape[0], x.shape[1], x.device)


def mean_pool(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    r"""Mean over each sequence's real steps: :math:`\frac{1}{n_b}\sum_{t<n_b} x_{b,t}`. (B, T, H) -> (B, H)."""
    lengths = _check(x, lengths, "mean_pool")
    if lengths is None:
        return x.mean(dim=1)
    mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, T, 1)
    # masked_fill, not a product: padding may hold inf/NaN and 0 * inf is NaN
    total = x.masked_fill(~mask, 0.0).sum(dim=1)
    return total / lengths.to(x.dtype).unsqueeze(-1)


def max_pool(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Feature-wise max over each sequence's real steps; padding never wins. (B, T, H) -> (B, H)."""
    lengths = _check(x, lengths, "max_pool")
    if lengths is None:
        return x.amax(dim=1)
    mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, T, 1)
    return x.masked_fill(~mask, float("-inf")).amax(dim=1)  # lengths >= 1, so no row is all -inf


def last_pool(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The output at each sequence's last real step ``t = lengths[b] - 1``. (B, T, H) -> (B, H).

    For a bidirectional layer's output use :func:`bidirectional_last`.
    """
    return last_valid(x, _check(x, lengths, "last_pool"))


def bidirectional_last(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """``[forward at t = lengths - 1; backward at t = 0]`` from a bidirectional output (B, T, 2H) -> (B, 2H).

    The backward direction starts at each sequence's own end and finishes at ``t = 0``, so its
    summary of the whole sequence is there, not at ``lengths - 1`` (where it has seen one step).
    """
    lengths = _check(x, lengths, "bidirectional_last")
    if x.shape[-1] % 2:
        raise ValueError(
            f"bidirectional_last: x's last dim must be even ([forward; backward] halves), got {x.shape[-1]}"
        )
    H = x.shape[-1] // 2
    return torch.cat([last_valid(x[..., :H], lengths), x[:, 0, H:]], dim=-1)


class AttentionPooling(nn.Module):
    r"""Additive attention with a learned query (Yang et al. 2016, hierarchical attention networks).

    .. math::
        \begin{aligned}
        u_t &= \tanh(W x_t + b) \\
        a_t &= \frac{\exp(v^\top u_t)}{\sum_{t' < n} \exp(v^\top u_{t'})}
        \quad(a_t = 0 \text{ for } t \ge n,\ n \text{ the sequence's length}) \\
        y &= \sum_t a_t\, x_t
        \end{aligned}

    :math:`v` plays the part of a learned, input-independent query. Parameters: ``proj``
    (Linear I -> A, with bias), ``v`` (Linear A -> 1, no bias); ``A = hidden_size``, default ``I``.
    Forward: ``x`` (B, T, I), ``lengths`` (B,) or None -> ``(pooled (B, I), weights (B, T))``.
    """

    def __init__(self, input_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = input_size if hidden_size is None else check_positive_int("hidden_size", hidden_size, name)
        self.proj = nn.Linear(input_size, self.hidden_size)
        self.v = nn.Linear(self.hidden_size, 1, bias=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: x must have shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        mask = None if lengths is None else lengths_to_mask(lengths, x.shape[1])  # (B, T)
        if mask is not None:
            # padding may hold anything; keep it out of the scores and the sum (0 * inf is NaN)
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        scores = self.v(torch.tanh(self.proj(x))).squeeze(-1)  # (B, T)
        weights = masked_softmax(scores, mask)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1), x).squeeze(1)  # (B, I)
        return pooled, weights

    def extra_repr(self) -> str:
        return f"{self.input_size}, hidden_size={self.hidden_size}"


class Pooling(nn.Module):
    """Pool (B, T, H) -> (B, H) by name: ``"last"``, ``"mean"``, ``"max"`` or ``"attention"``.

    Forward: ``x`` (B, T, H), ``lengths`` (B,) or None -> ``(pooled (B, H), weights)`` where
    ``weights`` is (B, T) for ``"attention"`` and None otherwise.

    ``input_size``: H. Required for ``"attention"`` (it sizes the parameters); for the other kinds
    it is optional and, when given, checked against ``x``. ``hidden_size``: the attention's score
    size (see :class:`AttentionPooling`); only for ``"attention"``. ``bidirectional``: ``x`` is a
    bidirectional output ``[forward; backward]``, so ``"last"`` uses :func:`bidirectional_last`;
    the other kinds are unchanged by it (they treat every feature alike).
    ``output_size`` is H (None when ``input_size`` was not given).
    """

    def __init__(
        self,
        kind: str,
        input_size: int | None = None,
        hidden_size: int | None = None,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if kind not in POOLING_KINDS:
            raise ValueError(f"{name}: kind must be one of {POOLING_KINDS}, got {kind!r}")
        self.kind = kind
        if input_size is not None:
            check_positive_int("input_size", input_size, name)
        self.input_size = self.output_size = input_size
        if not isinstance(bidirectional, bool):
            raise ValueError(f"{name}: bidirectional must be a bool, got {bidirectional!r}")
        if bidirectional and input_size is not None and input_size % 2:
            raise ValueError(f"{name}: bidirectional input_size must be even ([forward; backward]), got {input_size}")
        self.bidirectional = bidirectional
        if kind == "attention":
            if input_size is None:
                raise ValueError(f"{name}: kind='attention' needs input_size (it sizes the attention's parameters)")
            self.attention = AttentionPooling(input_size, hidden_size)
        elif hidden_size is not None:
            raise ValueError(f"{name}: hidden_size is only used by kind='attention', got it with kind={kind!r}")

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.input_size is not None and (x.dim() != 3 or x.shape[-1] != self.input_size):
            raise ValueError(
                f"{type(self).__name__}: x must have shape (B, T, {self.input_size}), got {tuple(x.shape)}"
            )
        if self.kind == "attention":
            return self.attention(x, lengths)
        if self.kind == "mean":
            return mean_pool(x, lengths), None
        if self.kind == "max":
            return max_pool(x, lengths), None
        if self.bidirectional:
            return bidirectional_last(x, lengths), None
        return last_pool(x, lengths), None

    def extra_repr(self) -> str:
        s = repr(self.kind)
        if self.input_size is not None:
            s += f", input_size={self.input_size}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s
