r"""Search over a decoder's single step: greedy, beam search (batched, length penalty, n-best), sampling.

Search knows nothing of any model. It only calls::

    logits, state = step(tokens, state)      # tokens (B,) long -> logits (B, V), new state

where ``state`` is a *nest* — tuples, lists and dicts of tensors (``None`` and non-tensor leaves
allowed) — with the batch on dim 0 of every tensor. Beam search widens the batch with
:func:`expand_state` and reorders it with :func:`select_state`, both of which work on any nest.

Conventions shared by all three searches:

* ``bos`` is an int or a ``(B,)`` tensor (one start token per example); ``eos`` an int.
* Returned sequences hold the generated tokens **without** ``bos`` and **without** ``eos``;
  :attr:`Hypothesis.finished` says whether ``eos`` was produced (False when ``max_len`` steps ran
  out first). ``max_len`` counts steps, ``eos`` included.
* ``log_prob`` is the sum of the model's log-probabilities (``log_softmax`` of the logits, no
  temperature or filtering) of every emitted token, ``eos`` included when finished.
* Attention for plotting: if the state returned by ``step`` is a dict with a tensor under
  ``"attention"`` (B, Ts) — the weights that produced those logits — it is collected:
  :attr:`Hypothesis.attention` is ``(n, Ts)`` with one row per emitted token, the ``eos`` row
  included when finished (``n = len(tokens) + finished``). Otherwise it is None.
* All searches run under ``torch.no_grad()``; call ``step`` yourself to sample with gradients.
* Cancellation: inside ``with stop_at(deadline):`` (a :func:`time.monotonic` time) every search raises
  :class:`SearchCancelled` at its next step once the deadline has passed (the server stops a generation
  whose request timed out this way). The deadline belongs to the calling thread (a context variable).

Shape legend: ``B`` examples, ``K`` beam size, ``V`` vocabulary, ``Ts`` source steps.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Step = Callable[[Tensor, Any], tuple[Tensor, Any]]

#: the key under which a dict state may carry the last step's attention weights (B, Ts)
ATTENTION_KEY = "attention"


# -- cancellation ---------------------------------------------------------------------------------
class SearchCancelled(Exception):
    """A search stopped at a step because the deadline set by :func:`stop_at` had passed."""


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("rnnkit_search_deadline", default=None)


@contextlib.contextmanager
def stop_at(deadline: float | None) -> Iterator[None]:
    """Searches run inside this block raise :class:`SearchCancelled` at the first step after ``deadline``
    (a :func:`time.monotonic` time; None: no deadline)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _check_deadline() -> None:
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise SearchCancelled("the search was cancelled: its deadline passed")


# -- nests ----------------------------------------------------------------------------------------
def map_state(fn: Callable[[Tensor], Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor leaf of a nest, keeping its structure (namedtuples included)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, v) for v in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, v) for v in state)
    return state  # ints, strings ...: not batched


def expand_state(state: Any, k: int) -> Any:
    """Repeat every example ``k`` times on dim 0: rows ``[a, b] -> [a, a, .., b, b, ..]`` (B -> B*k)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"expand_state: k must be a positive int, got {k!r}")
    return map_state(lambda t: t.repeat_interleave(k, dim=0), state)


def select_state(state: Any, index: Tensor) -> Any:
    """Rows ``index`` (1-D long) of every tensor leaf, on dim 0 (reorders / duplicates beams)."""
    return map_state(lambda t: t.index_select(0, index.to(t.device)), state)


def _first_tensor(state: Any) -> Tensor | None:
    if isinstance(state, Tensor):
        return state
    values = state.values() if isinstance(state, dict) else state if isinstance(state, (tuple, list)) else ()
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def _attention_of(state: Any) -> Tensor | None:
    if isinstance(state, dict) and isinstance(state.get(ATTENTION_KEY), Tensor):
        return state[ATTENTION_KEY]
    return None


# -- results --------------------------------------------------------------------------------------
@dataclass
class Hypothesis:
    """One decoded sequence (without ``bos`` and ``eos``)."""

    tokens: list[int]
    #: what the ranking used: ``log_prob`` for greedy and sampling; ``log_prob / lp(n)`` for beam search
    score: float
    #: sum of the model's token log-probabilities, ``eos`` included when finished
    log_prob: float
    #: True when ``eos`` was produced within ``max_len``
    finished: bool
    #: (len(tokens) + finished, Ts) when the step's state carries attention weights, else None
    attention: Tensor | None = None


@dataclass
class SearchResult:
    """Per example, its hypotheses best first (one for greedy and sampling, ``n_best`` for beam)."""

    hypotheses: list[list[Hypothesis]] = field(default_factory=list)

    @property
    def sequences(self) -> list[list[int]]:
        """The best sequence of every example."""
        return [h[0].tokens for h in self.hypotheses]

    @property
    def scores(self) -> list[float]:
        return [h[0].score for h in self.hypotheses]

    @property
    def finished(self) -> list[bool]:
        return [h[0].finished for h in self.hypotheses]

    @property
    def attention(self) -> list[Tensor] | None:
        """The best hypothesis' attention of every example, or None when the step gives none."""
        if any(h[0].attention is None for h in self.hypotheses):
            return None
        return [h[0].attention for h in self.hypotheses]


# -- shared checks --------------------------------------------------------------------------------
def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return value


def _start(owner: str, state: Any, bos: int | Tensor, batch_size: int | None, max_len: int) -> Tensor:
    """The first tokens (B,) on the state's device; validates ``bos``, ``batch_size`` and ``max_len``."""
    _check_int(owner, "max_len", max_len, 1)
    ref = _first_tensor(state)
    device = ref.device if ref is not None else None
    if isinstance(bos, Tensor):
        if bos.dim() != 1 or bos.dtype.is_floating_point or bos.dtype == torch.bool:
            raise ValueError(
                f"{owner}: bos must be an int or a (B,) integer tensor, got {bos.dtype} {tuple(bos.shape)}"
            )
        if batch_size is not None and bos.shape[0] != batch_size:
            raise ValueError(f"{owner}: bos has {bos.shape[0]} entries but batch_size is {batch_size}")
        return bos.to(device=device if device is not None else bos.device, dtype=torch.long)
    _check_int(owner, "bos", bos, 0)
    if batch_size is None:
        if ref is None:
            raise ValueError(f"{owner}: give batch_size (the state holds no tensor to read it from)")
        batch_size = ref.shape[0]
    _check_int(owner, "batch_size", batch_size, 1)
    return torch.full((batch_size,), bos, dtype=torch.long, device=device)


# -- greedy and sampling --------------------------------------------------------------------------
def _one_path(step: Step, state: Any, tokens: Tensor, eos: int, max_len: int, choose) -> SearchResult:
    """Run ``step`` feeding back ``choose(logits)`` until every example has emitted ``eos``."""
    B = tokens.shape[0]
    out, logps, attn = [], [], []
    finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    steps = torch.full((B,), max_len, dtype=torch.long, device=tokens.device)  # tokens emitted, eos included
    for t in range(max_len):
        _check_deadline()
        logits, state = step(tokens, state)
        tokens = choose(logits)  # (B,)
        logps.append(F.log_softmax(logits.float(), -1).gather(1, tokens[:, None]).squeeze(1))
        out.append(tokens)
        a = _attention_of(state)
        if a is not None:
            attn.append(a)
        newly = ~finished & (tokens == eos)
        steps = torch.where(newly, t + 1, steps)
        finished |= newly
        if bool(finished.all()):
            break
    n = len(out)
    seqs = torch.stack(out, 1).tolist()  # (B, n)
    keep = torch.arange(n, device=tokens.device)[None, :] < steps[:, None]  # (B, n)
    log_prob = (torch.stack(logps, 1) * keep).sum(1).tolist()
    att = torch.stack(attn, 1) if len(attn) == n else None  # (B, n, Ts)
    hyps = []
    for b in range(B):
        m, fin = int(steps[b]), bool(finished[b])
        hyps.append(
            [
                Hypothesis(
                    tokens=seqs[b][: m - fin],
                    score=log_prob[b],
                    log_prob=log_prob[b],
                    finished=fin,
                    attention=None if att is None else att[b, :m],
                )
            ]
        )
    return SearchResult(hyps)


@torch.no_grad()
def greedy(
    step: Step, state: Any, bos: int | Tensor, eos: int, max_len: int, batch_size: int | None = None
) -> SearchResult:
    """Feed back the most likely token at every step (ties go to the lowest id).

    ``batch_size`` is needed only when ``bos`` is an int and ``state`` holds no tensor.
    """
    tokens = _start("greedy", state, bos, batch_size, max_len)
    return _one_path(step, state, tokens, eos, max_len, lambda logits: logits.argmax(-1))


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to ``-inf`` every logit outside the top ``k`` and outside the nucleus ``p``.

    The nucleus (Holtzman et al. 2020) is the smallest set of most likely tokens whose probability
    sums to at least ``p``; the most likely token is always kept. ``logits`` (B, V).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def sample(
    step: Step,
    state: Any,
    bos: int | Tensor,
    eos: int,
    max_len: int,
    batch_size: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> SearchResult:
    """Ancestral sampling from ``softmax(logits / temperature)``, optionally restricted to the top
    ``k`` tokens and/or the nucleus ``p`` (see :func:`filter_logits`).

    ``temperature=0`` is greedy decoding. ``generator`` (on the logits' device) makes draws
    reproducible: the same seed gives the same samples. Scores are the model's own log-probabilities
    of the drawn tokens (temperature 1, unfiltered).
    """
    owner = "sample"
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"{owner}: temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None:
        _check_int(owner, "top_k", top_k, 1)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"{owner}: top_p must be in (0, 1], got {top_p!r}")
    tokens = _start(owner, state, bos, batch_size, max_len)

    def choose(logits: Tensor) -> Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        scores = filter_logits(logits.float() / temperature, top_k, top_p)
        return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)

    return _one_path(step, state, tokens, eos, max_len, choose)


# -- beam search ----------------------------------------------------------------------------------
def length_penalty_factor(length: int, alpha: float, style: str = "gnmt") -> float:
    r"""The divisor of a hypothesis' log-probability: ``gnmt``: :math:`((5 + n) / 6)^\alpha` (Wu et al. 2016);
    ``simple``: :math:`n^\alpha`. ``alpha = 0`` ranks by raw log-probability; larger ``alpha`` favours
    longer outputs. ``n`` counts emitted tokens, ``eos`` included."""
    if style == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return float(length) ** alpha


@dataclass(frozen=True)
class BeamOptions:
    """How :func:`beam_search` searches (its arguments of the same names; checked when made)."""

    beam_size: int
    max_len: int
    length_penalty: float = 1.0
    n_best: int = 1
    length_penalty_style: Literal["gnmt", "simple"] = "gnmt"
    early_stopping: Literal["exact", "heuristic"] = "exact"

    def __post_init__(self) -> None:
        owner = "beam_search"
        _check_int(owner, "beam_size", self.beam_size, 1)
        _check_int(owner, "n_best", self.n_best, 1)
        if self.n_best > self.beam_size:
            raise ValueError(f"{owner}: n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        if self.length_penalty_style not in ("gnmt", "simple"):
            raise ValueError(
                f"{owner}: length_penalty_style must be 'gnmt' or 'simple', got {self.length_penalty_style!r}"
            )
        if self.early_stopping not in ("exact", "heuristic"):
            raise ValueError(f"{owner}: early_stopping must be 'exact' or 'heuristic', got {self.early_stopping!r}")
        if isinstance(self.length_penalty, bool) or not isinstance(self.length_penalty, (int, float)):
            raise ValueError(f"{owner}: length_penalty must be a number, got {self.length_penalty!r}")
        _check_int(owner, "max_len", self.max_len, 1)

    def lp(self, n: int) -> float:
        """The penalty factor of a hypothesis of ``n`` emitted tokens."""
        return length_penalty_factor(n, self.length_penalty, self.length_penalty_style)

    def reach(self, t: int) -> float:
        """The penalty factor that bounds the score of a beam still live after step ``t`` (0-based)."""
        if self.early_stopping == "heuristic":
            return self.lp(t + 2)
        return max(self.lp(t + 2), self.lp(self.max_len))


class _Beams:
    """The state a batched beam search carries from step to step (``B`` examples, ``K`` beams each).

    * ``tokens (B*K,)`` — each live beam's last token: the next step's input;
    * ``scores (B, K)`` — each live beam's summed log-probability, best first (``-inf``: no beam there);
    * ``history (B*K, t)`` — the tokens each live beam emitted so far (without ``bos``);
    * ``attention (B*K, t, Ts)`` — their attention rows, or None when the step gives none;
    * ``finished`` — per example, a list of finished :class:`Hypothesis` (never extended again);
    * ``done`` — per example, True once no live beam can beat its ``n_best``-th finished hypothesis.

    Row ``b * K + j`` of a ``(B*K, ...)`` tensor is beam ``j`` of example ``b``.
    """

    def __init__(self, start: Tensor, eos: int, opts: BeamOptions) -> None:
        B, K, device = start.shape[0], opts.beam_size, start.device
        self.B, self.K, self.eos, self.opts = B, K, eos, opts
        self.tokens = start.repeat_interleave(K)
        # only beam 0 is live at the start, so the first step does not pick K copies of one extension
        self.scores = torch.full((B, K), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.history = torch.zeros(B * K, 0, dtype=torch.long, device=device)
        self.attention: Tensor | None = None
        self.finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        self.done = [False] * B
        self.base = (torch.arange(B, device=device) * K)[:, None]  # (B, 1): first row of each example
        self.steps = 0  # steps run

    def advance(self, t: int, logits: Tensor, state: Any) -> Any:
        """Extend the beams by step ``t``'s ``logits (B*K, V)``; returns ``state (B*K, ...)`` reordered to
        follow the beams kept live."""
        B, K = self.B, self.K
        self.steps = t + 1
        V = logits.shape[-1]
        logp = F.log_softmax(logits.float(), -1).view(B, K, V)
        cand = (self.scores.unsqueeze(-1) + logp).view(B, K * V)
        n_cand = min(2 * K, K * V)
        top_s, top_i = cand.topk(n_cand, dim=1)  # (B, 2K), best first
        tok = top_i % V  # (B, 2K)
        origin = self.base + top_i // V  # (B, 2K) row in the B*K batch each extension comes from
        is_eos = tok == self.eos  # (B, 2K)
        a = _attention_of(state)  # (B*K, Ts) or None
        attn = None
        if a is not None:
            a = a.unsqueeze(1)
            attn = a if self.attention is None else torch.cat([self.attention, a], 1)  # (B*K, t+1, Ts)
        self._finish(t, top_s, origin, is_eos, attn)
        state = self._keep_live(top_s, tok, origin, is_eos, attn, state)
        self._update_done(t)
        return state

    def _finish(self, t: int, top_s: Tensor, origin: Tensor, is_eos: Tensor, attn: Tensor | None) -> None:
        """Extensions ending in ``eos`` among the top K of ``top_s (B, 2K)`` become finished hypotheses."""
        fin = is_eos[:, : self.K] & torch.isfinite(top_s[:, : self.K])
        if not bool(fin.any()):
            return
        for b, r in fin.nonzero().tolist():
            if self.done[b]:
                continue
            row, s = int(origin[b, r]), float(top_s[b, r])
            self.finished[b].append(
                Hypothesis(
                    tokens=self.history[row].tolist(),
                    score=s / self.opts.lp(t + 1),
                    log_prob=s,
                    finished=True,
                    attention=None if attn is None else attn[row],
                )
            )

    def _keep_live(
        self, top_s: Tensor, tok: Tensor, origin: Tensor, is_eos: Tensor, attn: Tensor | None, state: Any
    ) -> Any:
        """The K best extensions that do not end in ``eos`` stay live (at most K of the 2K end in eos)."""
        n_cand = top_s.shape[1]
        rank = is_eos.long() * n_cand + torch.arange(n_cand, device=top_s.device)
        keep = rank.argsort(dim=1)[:, : self.K]  # (B, K), still best first
        self.scores = top_s.gather(1, keep)
        self.tokens = tok.gather(1, keep).view(-1)
        rows = origin.gather(1, keep).view(-1)  # (B*K,)
        self.history = torch.cat([self.history.index_select(0, rows), self.tokens[:, None]], 1)
        if attn is not None:
            self.attention = attn.index_select(0, rows)
        return select_state(state, rows)

    def _update_done(self, t: int) -> None:
        """An example is done when its ``n_best`` finished hypotheses all score at least what its best live beam
        can still reach (log-probabilities only fall)."""
        n_best = self.opts.n_best
        best_live = self.scores[:, 0].tolist()  # <= 0, and only falls from here
        reach = self.opts.reach(t)
        for b in range(self.B):
            if not self.done[b] and len(self.finished[b]) >= n_best:
                nth = sorted((h.score for h in self.finished[b]), reverse=True)[n_best - 1]
                self.done[b] = best_live[b] == float("-inf") or best_live[b] / reach <= nth

    def result(self) -> SearchResult:
        """``n_best`` hypotheses per example, best first; an example not done also ranks its live beams."""
        live = self.scores.tolist()
        results = []
        for b in range(self.B):
            hyps = list(self.finished[b])
            if not self.done[b]:
                for j in range(self.K):
                    s = live[b][j]
                    if math.isfinite(s):
                        row = b * self.K + j
                        hyps.append(
                            Hypothesis(
                                tokens=self.history[row].tolist(),
                                score=s / self.opts.lp(self.steps),
                                log_prob=s,
                                finished=False,
                                attention=None if self.attention is None else self.attention[row],
                            )
                        )
            hyps.sort(key=lambda h: h.score, reverse=True)
            results.append(hyps[: self.opts.n_best])
        return SearchResult(results)


def beam_search(
    step: Step,
    state: Any,
    bos: int | Tensor,
    eos: int,
    beam_size: int,
    max_len: int,
    batch_size: int | None = None,
    length_penalty: float = 1.0,
    n_best: int = 1,
    length_penalty_style: Literal["gnmt", "simple"] = "gnmt",
    early_stopping: Literal["exact", "heuristic"] = "exact",
) -> SearchResult:
    """Beam search over all examples at once (one ``(B*K, ...)`` batch), with a length penalty.

    At every step each of an example's ``K`` live beams is extended by every token; of the ``2K``
    best extensions (by summed log-probability), those ending in ``eos`` that rank within the top
    ``K`` become finished hypotheses, scored ``log_prob / lp(n)`` (:func:`length_penalty_factor`,
    ``alpha = length_penalty``), and the ``K`` best others stay live. Finished hypotheses are never
    extended. An example is done when it has ``n_best`` finished hypotheses that its best live beam
    can no longer beat; search stops when every example is done. Log-probabilities only fall, so a
    live beam's score is bounded by its current log-probability over a penalty factor:

    * ``early_stopping="exact"`` (default) — the largest factor it can still reach (at ``max_len``
      for ``alpha > 0``): the result is the best of every hypothesis the beam kept, but with
      ``alpha > 0`` examples usually run until ``max_len``;
    * ``"heuristic"`` — the factor of the shortest length it can still end at (the next step), as
      in Hugging Face's default: stops as soon as ending now would not help, which may cut a live
      beam that a larger ``alpha`` would have rewarded for going on. Same as exact for ``alpha <= 0``.

    Examples still open after ``max_len`` steps also rank their live beams, as unfinished hypotheses.

    Returns ``n_best`` hypotheses per example, best first (fewer only if fewer than ``n_best``
    finite-scored hypotheses exist). With ``beam_size=1`` and ``length_penalty=0`` this is greedy
    decoding; with ``alpha > 0`` a width-1 beam may go past greedy's ``eos`` with its runner-up token
    when the penalty rewards the longer ending. The options may also be given as one
    :class:`BeamOptions` to :func:`beam_search_with`.
    """
    opts = BeamOptions(beam_size, max_len, length_penalty, n_best, length_penalty_style, early_stopping)
    return beam_search_with(step, state, bos, eos, opts, batch_size)


@torch.no_grad()
def beam_search_with(
    step: Step, state: Any, bos: int | Tensor, eos: int, options: BeamOptions, batch_size: int | None = None
) -> SearchResult:
    """:func:`beam_search` with its options in one :class:`BeamOptions`."""
    start = _start("beam_search", state, bos, batch_size, options.max_len)  # (B,)
    beams = _Beams(start, eos, options)
    state = expand_state(state, options.beam_size)  # (B*K, ...)
    for t in range(options.max_len):
        _check_deadline()
        logits, state = step(beams.tokens, state)  # (B*K, V)
        state = beams.advance(t, logits, state)
        if all(beams.done):
            break
    return beams.result()
