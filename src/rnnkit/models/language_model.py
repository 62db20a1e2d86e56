r"""Many-to-many, aligned: predict the next token at every step (char/word language models, generation).

::

    ids (B, T) -> SequenceEncoder (B, T, H) -> dropout -> [Linear H -> P] -> Linear -> logits (B, T, V)

``logits[:, t]`` scores token ``t + 1`` from tokens ``0..t``; train with ``targets = ids`` shifted
left by one. The encoder must be unidirectional (a backward direction would see the answer).

**Weight tying** (Press & Wolf 2017; Inan et al. 2017): with ``tie_weights`` the output matrix *is*
the input embedding (one tensor), so the decoder's input size — the top hidden size, or
``proj_size`` when set (a linear projection before the decoder) — must equal ``embed_dim``.

**State.** Everything the model hands out or takes back is batch-first, so search
(:mod:`rnnkit.decoding`) can expand and reorder it: a list with one tuple per encoder stack, each
component ``(B, L, S)`` (``L`` layers of that stack; ``(h, c)`` for LSTM cells, ``(h,)`` otherwise).
``state=None`` means zeros, the same as :meth:`LanguageModel.init_state`.

Truncated BPTT over a long stream split into chunks::

    state = None
    for ids, targets in chunks:
        logits, state = model(ids, state=state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        ...
        state = model.detach_state(state)  # keep the values, cut the graph

Generation with :mod:`rnnkit.decoding`: ``last, state = model.prime(prompt, lengths)`` then
``sample(model.step, state, bos=last, eos=..., max_len=...)`` continues each prompt.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..cells import State
from ..config import StrictModel
from ..layers import Recurrent, lengths_to_mask
from ..layers.masking import check_lengths
from .base import Model
from .encoder import EncoderConfig, SequenceEncoder

#: the batch-first state of :class:`LanguageModel`: one tuple of (B, L, S) tensors per encoder stack
LMState = list[State]


class LanguageModelConfig(StrictModel):
    """Configuration of :class:`LanguageModel` (unknown keys are errors, also inside ``encoder``)."""

    encoder: EncoderConfig
    tie_weights: bool = Field(False, description="share the embedding matrix with the output layer")
    proj_size: int | None = Field(None, gt=0, description="linear projection of the top hidden state first")
    dropout: float = Field(0.0, ge=0, lt=1, description="on the encoder's outputs, before projection/decoder")

    @model_validator(mode="after")
    def _check(self):
        enc = self.encoder
        if enc.vocab_size is None:
            raise ValueError("a language model reads token ids: set encoder.vocab_size, not encoder.input_size")
        if enc.bidirectional:
            raise ValueError(
                "a language model predicts each next token from the past only: encoder.bidirectional must be "
                "False (the backward direction would read the token it is asked to predict)"
            )
        if self.tie_weights and self.decoder_input_size != enc.embed_dim:
            what = f"proj_size ({self.proj_size})" if self.proj_size else f"top hidden size ({self.top_hidden_size})"
            raise ValueError(
                f"tie_weights needs the decoder input to equal encoder.embed_dim ({enc.embed_dim}), but the {what} "
                f"differs; set proj_size={enc.embed_dim} or make the top hidden size {enc.embed_dim}"
            )
        return self

    @property
    def top_hidden_size(self) -> int:
        h = self.encoder.hidden_size
        return h[-1] if isinstance(h, list) else h

    @property
    def decoder_input_size(self) -> int:
        return self.proj_size or self.top_hidden_size


def _zeros_like_stack(stack: nn.Module, batch_size: int, device, dtype) -> State:
    """The zero state of one encoder stack, in the encoder's layout ``(L, B, S)``."""
    if isinstance(stack, Recurrent):
        return stack.initial_state(batch_size, device=device, dtype=dtype)
    n = stack.num_layers * (2 if stack.bidirectional else 1)  # a drop-in torch.nn.RNN/LSTM/GRU
    k = 2 if stack.mode == "LSTM" else 1
    return tuple(torch.zeros(n, batch_size, stack.hidden_size, device=device, dtype=dtype) for _ in range(k))


class LanguageModel(Model):
    """Recurrent next-token model (module docstring).

    ``forward(ids (B, T), lengths=None, state=None) -> (logits (B, T, V), state)``;
    ``loss(ids, lengths, targets) -> scalar``; ``step(tokens (B,), state) -> (logits (B, V), state)``.
    """

    config_class = LanguageModelConfig
    kind = "language_model"
    config: LanguageModelConfig

    def __init__(self, config: LanguageModelConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.top_hidden_size, cfg.proj_size) if cfg.proj_size else None
        self.decoder = nn.Linear(cfg.decoder_input_size, cfg.encoder.vocab_size)
        if cfg.tie_weights:
            self.decoder.weight = self.encoder.embedding.weight  # one tensor: (V, E)

    # -- state layout -------------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LMState:
        """Zeros in the batch-first layout (module docstring), on the parameters' device and dtype
        unless given. Equivalent to passing ``state=None``."""
        p = self.decoder.weight
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        return [
            tuple(s.transpose(0, 1) for s in _zeros_like_stack(stack, batch_size, device, dtype))
            for stack in self.encoder.stacks
        ]

    @staticmethod
    def detach_state(state: LMState | None) -> LMState | None:
        """The same values cut from the autograd graph (truncated BPTT between chunks)."""
        if state is None:
            return None
        return [tuple(s.detach() for s in st) for st in state]

    def _to_encoder(self, state: LMState | None, batch_size: int) -> list[State] | None:
        """Batch-first ``(B, L, S)`` -> the encoder's ``(L, B, S)``, with a clear error on a wrong nest."""
        if state is None:
            return None
        n = len(self.encoder.stacks)
        ok = isinstance(state, (list, tuple)) and len(state) == n
        ok = ok and all(
            isinstance(st, tuple) and all(isinstance(s, Tensor) and s.dim() == 3 for s in st) for st in state
        )
        if not ok:
            raise ValueError(
                f"LanguageModel: state must be a list of {n} tuple(s) of (B, L, S) tensors (what forward/step/"
                f"init_state return), got {type(state).__name__}"
            )
        for st in state:
            for s in st:
                if s.shape[0] != batch_size:
                    raise ValueError(f"LanguageModel: state has batch size {s.shape[0]} but the input has {batch_size}")
        return [tuple(s.transpose(0, 1).contiguous() for s in st) for st in state]

    # -- whole sequences ----------------------------------------------------------------------
    def forward(
        self, ids: Tensor, lengths: Tensor | None = None, state: LMState | None = None
    ) -> tuple[Tensor, LMState]:
        """Logits (B, T, V) for the next token at every step (zero past each length), and the state
        after each sequence's last real step (batch-first; feed it to the next chunk or to :meth:`step`)."""
        if ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            got = f"{ids.dtype} {tuple(ids.shape)}"
            raise ValueError(f"LanguageModel: ids must be token ids (B, T) of integers, got {got}")
        B, T = ids.shape
        lengths = check_lengths(lengths, B, T, ids.device)
        h, finals = self.encoder(ids, lengths, self._to_encoder(state, B))  # (B, T, H)
        h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)  # (B, T, P)
        logits = self.decoder(h)  # (B, T, V)
        if lengths is not None:
            logits = logits.masked_fill(~lengths_to_mask(lengths, T).unsqueeze(-1), 0.0)
        return logits, [tuple(s.transpose(0, 1) for s in st) for st in finals]

    def loss(self, ids: Tensor, lengths: Tensor | None, targets: Tensor) -> Tensor:
        """Cross-entropy averaged over the real steps; ``targets`` (B, T) may hold anything past each length."""
        if tuple(targets.shape) != tuple(ids.shape):
            raise ValueError(f"LanguageModel: targets must match ids {tuple(ids.shape)}, got {tuple(targets.shape)}")
        logits, _ = self(ids, lengths)
        if lengths is None:
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten().long())
        mask = lengths_to_mask(check_lengths(lengths, *ids.shape, ids.device), ids.shape[1])
        return F.cross_entropy(logits[mask], targets[mask].long())

    # -- one step at a time (search) ----------------------------------------------------------
    def step(self, tokens: Tensor, state: LMState | None) -> tuple[Tensor, LMState]:
        """The current tokens (B,) -> logits for the next one (B, V) and the new batch-first state.

        Feeding a sequence token by token gives what :meth:`forward` gives over the whole of it.
        """
        if tokens.dim() != 1:
            raise ValueError(f"LanguageModel.step: tokens must have shape (B,), got {tuple(tokens.shape)}")
        logits, state = self(tokens.unsqueeze(1), state=state)
        return logits[:, 0], state

    def prime(self, prompt: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, LMState]:
        """Read all but the last real token of each prompt (B, T): returns those last tokens (B,) and
        the state before them, so ``step(last, state)`` scores the first new token. A prompt of length
        1 gets the zero state."""
        if prompt.dim() != 2:
            raise ValueError(f"LanguageModel.prime: prompt must be token ids (B, T), got {tuple(prompt.shape)}")
        B, T = prompt.shape
        lengths = check_lengths(lengths, B, T, prompt.device)
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=prompt.device)
        last = prompt.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        before = (lengths - 1).clamp(min=1)
        _, state = self(prompt[:, : int(before.max())], before)
        fresh = (lengths == 1).view(B, 1, 1)  # these read one token too many above: reset to zeros
        return last, [tuple(s.masked_fill(fresh, 0.0) for s in st) for st in state]

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        V = self.config.encoder.vocab_size
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(min(1, V - 1), V, (batch_size, length), generator=g)
        lengths = torch.tensor([max(1, length - i) for i in range(batch_size)])
        return (ids,), {"lengths": lengths}
