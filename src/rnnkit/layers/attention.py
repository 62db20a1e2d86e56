r"""Global attention over a sequence of keys: Luong dot and general, Bahdanau additive.

One module, :class:`Attention`, with the score function chosen by name (as in OpenNMT-py's
``GlobalAttention``). Only the scores differ; masking, softmax and the weighted sum are shared.

Shape legend: ``B`` batch, ``Tq`` query steps, ``Tk`` key (source) steps, ``Q`` query size,
``K`` key size, ``V`` value size, ``A`` the additive score's hidden size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int

SCORES = ("dot", "general", "additive")


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last dim that gives exactly zero weight where ``mask`` is False.

    ``mask`` (bool, True at real positions) must broadcast against ``scores``. A row with no real
    position gets all-zero weights, not NaN: masked scores are filled with the dtype's smallest
    finite value (so ``exp`` underflows to exactly 0 beside any real score) and the result is
    zeroed at masked positions (which only matters for a fully masked row, whose softmax would
    otherwise be uniform). Gradients stay finite in both cases.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)


class Attention(nn.Module):
    r"""Global attention: score every key against the query, softmax over keys, average the values.

    .. math::
        \begin{aligned}
        \mathrm{score}(q, k_s) &=
        \begin{cases}
            q^\top k_s & \text{dot (Luong et al. 2015), needs } Q = K \\
            q^\top W_a k_s & \text{general (Luong et al. 2015)} \\
            v_a^\top \tanh(W_q q + b_q + W_k k_s) & \text{additive (Bahdanau et al. 2015)}
        \end{cases} \\
        a_s &= \frac{\exp \mathrm{score}(q, k_s)}{\sum_{s'} \exp \mathrm{score}(q, k_{s'})}
        \quad(\text{over real positions only; } a_s = 0 \text{ on padding}) \\
        c &= \sum_s a_s\, v_s \qquad(v_s = k_s \text{ when no values are given})
        \end{aligned}

    Parameters: ``general`` has ``weight`` (Q, K) (= :math:`W_a`); ``additive`` has
    ``query_proj`` (Linear Q -> A, with bias :math:`b_q`), ``key_proj`` (Linear K -> A, no bias) and
    ``v`` (Linear A -> 1, no bias); ``dot`` has none. ``hidden_size`` (``A``, default ``K``) is only
    meaningful for ``additive`` and is rejected for the others.

    The module returns the context and the weights only; the Luong output layer
    :math:`\tilde h = \tanh(W_c [c; h])` and input feeding belong to the decoder.

    Decoding one step at a time: the key side of the additive score does not change between
    steps, so project it once with :meth:`project_keys` and pass it back in::

        pk = attn.project_keys(memory)                     # (B, Tk, A), once per source batch
        for t in range(steps):
            ctx, w = attn(h_t, memory, mask=src_mask, projected_keys=pk)   # (B, V), (B, Tk)

    For ``dot`` and ``general``, :meth:`project_keys` returns ``keys`` unchanged (``general``
    projects the query instead, which is cheaper per step), so decoder code can be written once.
    """

    def __init__(self, query_size: int, key_size: int, score: str = "dot", hidden_size: int | None = None):
        super().__init__()
        name = type(self).__name__
        self.query_size = check_positive_int("query_size", query_size, name)
        self.key_size = check_positive_int("key_size", key_size, name)
        if score not in SCORES:
            raise ValueError(f"{name}: score must be one of {SCORES}, got {score!r}")
        self.score = score
        if score == "dot" and query_size != key_size:
            raise ValueError(
                f"{name}: score='dot' needs query_size == key_size, got query_size={query_size}, "
                f"key_size={key_size} (use score='general' or 'additive' for different sizes)"
            )
        if hidden_size is not None and score != "additive":
            raise ValueError(f"{name}: hidden_size is only used by score='additive', got it with score={score!r}")
        self.hidden_size: int | None = None
        if score == "additive":
            self.hidden_size = key_size if hidden_size is None else check_positive_int("hidden_size", hidden_size, name)
        if score == "general":
            self.weight = nn.Parameter(torch.empty(query_size, key_size))
        elif score == "additive":
            self.query_proj = nn.Linear(query_size, self.hidden_size)
            self.key_proj = nn.Linear(key_size, self.hidden_size, bias=False)
            self.v = nn.Linear(self.hidden_size, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``general``: ``W_a ~ U(-1/sqrt(K), 1/sqrt(K))``; ``additive``: ``nn.Linear``'s default."""
        if self.score == "general":
            bound = 1.0 / math.sqrt(self.key_size)
            nn.init.uniform_(self.weight, -bound, bound)
        elif self.score == "additive":
            for m in (self.query_proj, self.key_proj, self.v):
                m.reset_parameters()

    # -- shapes ---------------------------------------------------------------------------------
    def _check_keys(self, keys: Tensor) -> None:
        if keys.dim() != 3 or keys.shape[-1] != self.key_size:
            raise ValueError(
                f"{type(self).__name__}: keys must have shape (B, Tk, {self.key_size}), got {tuple(keys.shape)}"
            )

    def _projected_size(self) -> int:
        return self.hidden_size if self.score == "additive" else self.key_size

    # -- API ------------------------------------------------------------------------------------
    def project_keys(self, keys: Tensor) -> Tensor:
        """The per-source part of the score, to compute once and reuse at every decoder step.

        ``additive``: ``W_k keys`` (B, Tk, K) -> (B, Tk, A). ``dot`` / ``general``: ``keys`` itself.
        """
        self._check_keys(keys)
        if self.score == "additive":
            return self.key_proj(keys)
        return keys

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        mask: Tensor | None = None,
        projected_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend ``query`` over ``keys``.

        Args:
            query: (B, Q) for one decoder step, or (B, Tq, Q) for several at once.
            keys: (B, Tk, K).
            values: (B, Tk, V); defaults to ``keys``.
            mask: (B, Tk) bool, True at real source positions. Padded positions get weight exactly
                0 and may hold any finite values. A row with no real position gets zero weights
                and a zero context.
            projected_keys: the output of :meth:`project_keys` for these ``keys``; computed here
                when not given.

        Returns:
            ``(context, weights)``: (B, V) and (B, Tk) for a 2-D query; (B, Tq, V) and
            (B, Tq, Tk) for a 3-D query.
        """
        name = type(self).__name__
        if query.dim() not in (2, 3) or query.shape[-1] != self.query_size:
            raise ValueError(
                f"{name}: query must have shape (B, {self.query_size}) or (B, Tq, {self.query_size}), "
                f"got {tuple(query.shape)}"
            )
        self._check_keys(keys)
        B, Tk = keys.shape[0], keys.shape[1]
        if query.shape[0] != B:
            raise ValueError(f"{name}: query has batch size {query.shape[0]} but keys have {B}")
        if values is None:
            values = keys
        elif values.dim() != 3 or values.shape[:2] != keys.shape[:2]:
            raise ValueError(f"{name}: values must have shape ({B}, {Tk}, V) like keys, got {tuple(values.shape)}")
        if mask is not None:
            if mask.dtype != torch.bool:
                raise ValueError(f"{name}: mask must be a bool tensor (True at real positions), got {mask.dtype}")
            if tuple(mask.shape) != (B, Tk):
                raise ValueError(f"{name}: mask must have shape ({B}, {Tk}), got {tuple(mask.shape)}")
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        elif tuple(projected_keys.shape) != (B, Tk, self._projected_size()):
            raise ValueError(
                f"{name}: projected_keys must have shape ({B}, {Tk}, {self._projected_size()}) "
                f"(from project_keys), got {tuple(projected_keys.shape)}"
            )

        one_step = query.dim() == 2
        q = query.unsqueeze(1) if one_step else query  # (B, Tq, Q)
        scores = self._scores(q, projected_keys)  # (B, Tq, Tk)
        weights = masked_softmax(scores, None if mask is None else mask.unsqueeze(1))  # (B, Tq, Tk)
        context = torch.bmm(weights, values)  # (B, Tq, V)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def _scores(self, q: Tensor, pk: Tensor) -> Tensor:  # (B, Tq, Q), (B, Tk, K or A) -> (B, Tq, Tk)
        if self.score == "dot":
            return torch.bmm(q, pk.transpose(1, 2))
        if self.score == "general":
            return torch.bmm(q @ self.weight, pk.transpose(1, 2))  # (q W_a) k
        pq = self.query_proj(q)  # (B, Tq, A)
        hidden = torch.tanh(pq.unsqueeze(2) + pk.unsqueeze(1))  # (B, Tq, Tk, A)
        return self.v(hidden).squeeze(-1)

    def extra_repr(self) -> str:
        s = f"{self.query_size}, {self.key_size}, score={self.score!r}"
        if self.score == "additive":
            s += f", hidden_size={self.hidden_size}"
        return s
