r"""A linear-chain conditional random field over per-step tag scores (batch-first, masking-aware).

Shape legend: ``B`` batch, ``T`` time, ``K`` tags. ``emissions`` (B, T, K) are the per-step scores
``e_t(y)`` a tagger's encoder produces; ``mask`` (B, T) bool is True at real steps, which must be a
non-empty prefix of each row (lengths ``n_b >= 1``). Parameters: ``start_transitions`` ``a`` (K),
``end_transitions`` ``b`` (K), ``transitions`` ``A`` (K, K) with ``A[i, j]`` the score of moving
from tag ``i`` to tag ``j``.

The score of a tag sequence ``y_1..y_n`` of one example (``n`` its length) is

.. math::

    s(y) = a_{y_1} + \sum_{t=1}^{n} e_t(y_t) + \sum_{t=2}^{n} A_{y_{t-1}, y_t} + b_{y_n}

and ``p(y | x) = exp(s(y)) / Z`` with the partition function ``Z = sum_y exp(s(y))`` over all ``K^n``
sequences. ``log Z`` comes from the forward algorithm in log space:

.. math::

    \alpha_1(j) = a_j + e_1(j), \qquad
    \alpha_t(j) = e_t(j) + \operatorname{logsumexp}_i \big(\alpha_{t-1}(i) + A_{i, j}\big), \qquad
    \log Z = \operatorname{logsumexp}_j \big(\alpha_n(j) + b_j\big)

and the negative log-likelihood is ``nll = log Z - s(y) >= 0``. Viterbi replaces ``logsumexp`` by
``max`` and follows the argmax back-pointers from the best final tag.

The whole batch runs one loop over ``T``: at a padded step the recursion keeps ``alpha`` as it was,
so each row's result is read at the end, whatever its length. Emissions at padded steps are replaced
by zeros before anything else, so garbage there (even ``inf``/``nan``) changes neither the values
nor the gradients, and those positions get zero gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from ..metrics.sequence import OUTSIDE, SCHEMES, split_label

Reduction = Literal["mean", "token_mean", "sum", "none"]
REDUCTIONS = ("mean", "token_mean", "sum", "none")
#: (start (K,), end (K,), transitions (K, K) from i to j): which first tags, last tags and moves are allowed
Constraints = tuple[Tensor, Tensor, Tensor]


def _allowed(prev: tuple[str, str] | None, cur: tuple[str, str] | None, scheme: str) -> bool:
    """May tag ``cur`` follow tag ``prev`` under ``scheme``? ``prev`` None: ``cur`` is the first tag; ``cur``
    None: ``prev`` is the last. Tags are ``(prefix, type)``; ``O`` (and any tag outside the scheme) is
    ``("O", "")``."""
    p_prefix, p_kind = prev or (OUTSIDE, "")
    c_prefix, c_kind = cur or (OUTSIDE, "")
    continues = p_kind == c_kind  # same entity type (never true between O and a typed tag)
    if scheme == "IOB2":  # I-X only inside an entity of type X
        return c_prefix != "I" or (p_prefix in "BI" and continues)
    if scheme == "IOB1":  # B-X only right after an entity of type X
        return c_prefix != "B" or (p_prefix in "BI" and continues and prev is not None)
    if scheme == "IOE2":  # an entity closes with E-X: after I-X comes I-X or E-X
        return p_prefix != "I" or (c_prefix in "IE" and continues and cur is not None)
    if scheme == "IOE1":  # E-X only between two entities of type X (as seqeval reads IOE1: after I-X or E-X)
        if c_prefix == "E" and not (p_prefix in "IE" and continues and prev is not None):
            return False
        return p_prefix != "E" or (c_prefix in "IE" and continues and cur is not None)
    inside, last = ("I", "E") if scheme == "IOBES" else ("I", "L")
    if c_prefix in (inside, last) and not (p_prefix in ("B", inside) and continues and prev is not None):
        return False  # I-X / E-X continue B-X or I-X
    # B-X / I-X are followed by I-X or E-X
    return p_prefix not in ("B", inside) or (c_prefix in (inside, last) and continues and cur is not None)


def allowed_transitions(tags: list[str], scheme: str) -> Constraints:
    """The moves ``scheme`` allows between ``tags`` (names in output order, e.g. ``["O", "B-PER", "I-PER"]``):
    ``start`` (K,), ``end`` (K,) and ``transitions`` (K, K) bool, ``transitions[i, j]`` for ``i`` -> ``j``.
    A tag outside the scheme (neither ``O`` nor ``P-TYPE``) is treated like ``O``."""
    if scheme not in SCHEMES:
        raise ValueError(f"CRF: unknown tagging scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    parts = [split_label(t) or (OUTSIDE, "") for t in tags]
    start = [_allowed(None, c, scheme) for c in parts]
    end = [_allowed(p, None, scheme) for p in parts]
    if not any(start) or not any(end):
        raise ValueError(f"CRF: no tag of {tags} may {'start' if not any(start) else 'end'} a sequence in {scheme}")
    moves = [[_allowed(p, c, scheme) for c in parts] for p in parts]
    return torch.tensor(start), torch.tensor(end), torch.tensor(moves)


class CRF(nn.Module):
    """Linear-chain CRF with ``num_tags`` tags (equations in the module docstring).

    * ``log_partition(emissions, mask) -> (B,)`` — ``log Z`` by the forward algorithm;
    * ``score(emissions, tags, mask) -> (B,)`` — ``s(y)`` of the given tags;
    * ``nll(emissions, tags, mask, reduction="mean") -> log Z - s(y)``, reduced: ``"mean"`` over
      sequences, ``"token_mean"`` = sum / number of real steps, ``"sum"``, or ``"none"`` (B,);
    * ``viterbi(emissions, mask, pad=-100, constrained=True) -> (tags (B, T) long, scores (B,))`` — the best
      tag sequence, ``pad`` at padded steps, and its score ``s(y*)``; with ``constraints`` (and
      ``constrained``), the best among the sequences they allow (module docstring).

    ``mask`` may be None (every step real). ``tags`` may hold anything at padded steps (e.g. -100).
    ``constraints``: :func:`allowed_transitions`' masks (bool ``(K,)``, ``(K,)``, ``(K, K)``), kept as buffers
    that are not saved with the weights (they follow from the tag names and the scheme).
    """

    def __init__(self, num_tags: int, constraints: Constraints | None = None) -> None:
        super().__init__()
        self.num_tags = check_positive_int("num_tags", num_tags, "CRF")
        self.start_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.end_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (K, K): from i to j
        self.constrained = constraints is not None
        if constraints is not None:
            shapes = tuple(tuple(c.shape) for c in constraints)
            if shapes != ((num_tags,), (num_tags,), (num_tags, num_tags)):
                raise ValueError(f"CRF: constraints for {num_tags} tags are (K,), (K,), (K, K); got {shapes}")
        for name, c in zip(("allowed_first", "allowed_last", "allowed_moves"), constraints or (None,) * 3, strict=True):
            self.register_buffer(name, None if c is None else c.to(torch.bool), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # small, so an untrained CRF starts close to independent per-step softmaxes
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}" + (", constrained" if self.constrained else "")

    # -- validation ---------------------------------------------------------------------------
    def _prepare(self, emissions: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Check shapes; return emissions with zeros at padded steps and the bool mask."""
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"CRF: expected emissions (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        B, T, _ = emissions.shape
        if T == 0:
            raise ValueError("CRF: emissions must have at least one time step")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        else:
            if tuple(mask.shape) != (B, T):
                raise ValueError(f"CRF: expected mask ({B}, {T}), got {tuple(mask.shape)}")
            mask = mask.to(device=emissions.device, dtype=torch.bool)
            if B and not bool(mask[:, 0].all()):
                raise ValueError("CRF: every sequence needs at least one real step (mask[:, 0] must be True)")
            if T > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise ValueError("CRF: the real steps must be a prefix of each row (mask True then False)")
        return emissions.masked_fill(~mask.unsqueeze(-1), 0.0), mask

    def _check_tags(self, tags: Tensor, mask: Tensor) -> Tensor:
        """Tags (B, T) with anything at padded steps -> long tags with 0 there (for gather)."""
        if tuple(tags.shape) != tuple(mask.shape):
            raise ValueError(f"CRF: expected tags {tuple(mask.shape)}, got {tuple(tags.shape)}")
        if tags.dtype.is_floating_point or tags.dtype == torch.bool:
            raise ValueError(f"CRF: tags must be integers, got {tags.dtype}")
        tags = tags.to(torch.long).masked_fill(~mask, 0)
        if tags.numel() and (int(tags.min()) < 0 or int(tags.max()) >= self.num_tags):
            raise ValueError(
                f"CRF: tags at real steps must lie in [0, {self.num_tags}), got min {int(tags.min())}, "
                f"max {int(tags.max())}"
            )
        return tags

    # -- the three quantities -----------------------------------------------------------------
    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log Z`` (B,) by the forward algorithm."""
        emissions, mask = self._prepare(emissions, mask)
        alpha = self.start_transitions + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            # (B, K, 1) + (K, K) -> logsumexp over the previous tag i -> (B, K)
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """``s(y)`` (B,) of ``tags`` (B, T); entries at padded steps are ignored."""
        emissions, mask = self._prepare(emissions, mask)
        tags = self._check_tags(tags, mask)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (
            self.start_transitions[tags[:, 0]]
            + (emit * m).sum(1)
            + (trans * m[:, 1:]).sum(1)
            + self.end_transitions[last]
        )

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None, reduction: Reduction = "mean") -> Tensor:
        """Negative log-likelihood ``log Z - s(y)``; see the class docstring for ``reduction``."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"CRF: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        _, mask = self._prepare(emissions, mask)
        nll = self.log_partition(emissions, mask) - self.score(emissions, tags, mask)  # (B,)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        return nll.sum() / mask.sum()

    def forward(
        self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None, reduction: Reduction = "mean"
    ) -> Tensor:
        """Same as :meth:`nll`."""
        return self.nll(emissions, tags, mask, reduction)

    @torch.no_grad()
    def viterbi(
        self, emissions: Tensor, mask: Tensor | None = None, pad: int = -100, constrained: bool = True
    ) -> tuple[Tensor, Tensor]:
        """The best tag sequences (B, T) long (``pad`` at padded steps) and their scores (B,); with constraints
        and ``constrained``, the best sequence the constraints allow (``constrained=False`` ignores them)."""
        emissions, mask = self._prepare(emissions, mask)
        B, T, K = emissions.shape
        start, end, moves = self.start_transitions, self.end_transitions, self.transitions
        if constrained and self.constrained:
            never = float("-inf")
            start = start.masked_fill(~self.allowed_first, never)
            end = end.masked_fill(~self.allowed_last, never)
            moves = moves.masked_fill(~self.allowed_moves, never)
        delta = start + emissions[:, 0]  # (B, K)
        keep = torch.arange(K, device=emissions.device).expand(B, K)  # back-pointer "stay" at padding
        pointers = []
        for t in range(1, T):
            best, arg = (delta.unsqueeze(2) + moves).max(dim=1)  # (B, K): best previous tag
            real = mask[:, t, None]
            delta = torch.where(real, best + emissions[:, t], delta)
            pointers.append(torch.where(real, arg, keep))
        scores, tag = (delta + end).max(dim=1)  # (B,)
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        return tags.masked_fill(~mask, pad), scores
