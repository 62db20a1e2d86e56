r"""Many-to-many, aligned: one tag per input step (POS tagging, NER, chunking, per-step labels).

::

    x (B, T) ids or (B, T, F) features -> SequenceEncoder (B, T, D*H) -> dropout -> Linear -> emissions (B, T, K)
    training:   masked token cross-entropy          |  CRF negative log-likelihood (crf=True)
    prediction: argmax per step                     |  Viterbi over the whole sequence

A 2-layer BiLSTM-CRF POS tagger (Huang et al. 2015; Lample et al. 2016) is::

    Tagger(encoder=dict(vocab_size=V, embed_dim=100, hidden_size=128, num_layers=2, bidirectional=True),
           num_tags=K, crf=True, dropout=0.5)

Emissions are zero past each sequence's length, and :meth:`Tagger.predict` writes
:data:`PAD_TAG` (-100, PyTorch's ``ignore_index``) there. Tags given to :meth:`Tagger.loss` may
hold anything at padded steps: only ``lengths`` decides what is real.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import StrictModel
from ..layers import lengths_to_mask
from ..layers.masking import check_lengths
from .base import Model, eval_mode
from .crf import CRF
from .encoder import EncoderConfig, SequenceEncoder

#: what :meth:`Tagger.predict` writes at padded steps
PAD_TAG = -100


class TaggerConfig(StrictModel):
    """Configuration of :class:`Tagger` (unknown keys are errors, also inside ``encoder``)."""

    encoder: EncoderConfig
    num_tags: int = Field(gt=1, description="number of tags (K)")
    crf: bool = Field(False, description="score whole tag sequences with a linear-chain CRF")
    dropout: float = Field(0.0, ge=0, lt=1, description="on the encoder's features, before the output layer")


class Tagger(Model):
    """Encoder -> per-step emissions, optionally with a CRF on top (module docstring).

    ``forward(x, lengths=None) -> emissions (B, T, K)``; ``loss(x, lengths, tags) -> scalar``;
    ``predict(x, lengths=None) -> tags (B, T) long`` with :data:`PAD_TAG` at padded steps.
    """

    config_class = TaggerConfig
    kind = "tagger"
    config: TaggerConfig

    def __init__(self, config: TaggerConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_size, cfg.num_tags)
        self.crf = CRF(cfg.num_tags) if cfg.crf else None

    def _lengths(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        B, T = x.shape[:2]
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        return check_lengths(lengths, B, T, x.device)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Emissions (B, T, K): per-step tag scores (logits without a CRF), zero past each length."""
        lengths = self._lengths(x, lengths)
        h, _ = self.encoder(x, lengths)  # (B, T, D*H)
        emissions = self.head(self.drop(h))  # (B, T, K)
        mask = lengths_to_mask(lengths, x.shape[1])
        return emissions.masked_fill(~mask.unsqueeze(-1), 0.0)

    def loss(self, x: Tensor, lengths: Tensor | None, tags: Tensor) -> Tensor:
        """Mean over real steps of the token cross-entropy, or with ``crf`` the CRF negative
        log-likelihood summed over the batch and divided by the number of real steps (so both
        losses have the same per-token scale)."""
        lengths = self._lengths(x, lengths)
        B, T = x.shape[:2]
        if tuple(tags.shape) != (B, T):
            raise ValueError(f"Tagger: expected tags ({B}, {T}), got {tuple(tags.shape)}")
        emissions = self(x, lengths)
        mask = lengths_to_mask(lengths, T)
        if self.crf is not None:
            return self.crf.nll(emissions, tags, mask, reduction="token_mean")
        real = tags[mask].long()
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.config.num_tags):
            raise ValueError(
                f"Tagger: tags at real steps must lie in [0, {self.config.num_tags}), got min {int(real.min())}, "
                f"max {int(real.max())}"
            )
        return F.cross_entropy(emissions[mask], real)

    @torch.no_grad()
    def predict(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Best tags (B, T) long — per-step argmax, or Viterbi with ``crf`` — and :data:`PAD_TAG` at
        padded steps. Runs in eval mode (no dropout) and restores the previous mode."""
        with eval_mode(self):
            lengths = self._lengths(x, lengths)
            emissions = self(x, lengths)
            mask = lengths_to_mask(lengths, x.shape[1])
            if self.crf is not None:
                return self.crf.viterbi(emissions, mask, pad=PAD_TAG)[0]
            return emissions.argmax(-1).masked_fill(~mask, PAD_TAG)

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        enc = self.config.encoder
        g = torch.Generator().manual_seed(0)
        if enc.vocab_size is not None:
            x = torch.randint(min(1, enc.vocab_size - 1), enc.vocab_size, (batch_size, length), generator=g)
        else:
            x = torch.randn(batch_size, length, enc.input_size, generator=g)
        lengths = torch.tensor([max(1, length - i) for i in range(batch_size)])  # ragged, longest first
        return (x,), {"lengths": lengths}
