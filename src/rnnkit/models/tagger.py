r"""Many-to-many, aligned: one tag per input step (POS tagging, NER, chunking, per-step labels).

::

    x (B, T) ids or (B, T, F) features -> SequenceEncoder (B, T, D*H) -> dropout -> Linear -> emissions (B, T, K)
    with ``chars``: x (B, T) word ids + chars (B, T, W) -> [word embedding; CharWordEncoder] -> recurrent stack
    training:   masked token cross-entropy          |  CRF negative log-likelihood (crf=True)
    prediction: argmax per step                     |  Viterbi over the whole sequence

A 2-layer BiLSTM-CRF POS tagger (Huang et al. 2015; Lample et al. 2016) is::

    Tagger(encoder=dict(vocab_size=V, embed_dim=100, hidden_size=128, num_layers=2, bidirectional=True),
           num_tags=K, crf=True, dropout=0.5)

Character features (``chars=CharFeaturesConfig(kind="cnn"|"lstm", ...)``) give every word a vector built
from its spelling, joined to its embedding, which is what rare and unseen words need (Plank et al. 2016;
Ma & Hovy 2016). The task passes ``chars`` beside ``x`` to every method.

With ``crf=True``, ``tag_names`` (the tags in output order) and ``tag_scheme`` (``IOB2``, ``IOBES``, ...; the
tagging task detects it from the training tags), Viterbi never decodes a transition the scheme forbids
(``I-PER`` after ``O``): :func:`rnnkit.models.crf.allowed_transitions`.

Emissions are zero past each sequence's length, and :meth:`Tagger.predict` writes
:data:`PAD_TAG` (-100, PyTorch's ``ignore_index``) there. Tags given to :meth:`Tagger.loss` may
hold anything at padded steps: only ``lengths`` decides what is real.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..config import StrictModel
from ..layers import CharWordEncoder, lengths_to_mask
from ..layers.masking import check_lengths
from ..metrics.sequence import Scheme
from .base import Model, eval_mode
from .crf import CRF, allowed_transitions
from .encoder import EncoderConfig, SequenceEncoder

#: what :meth:`Tagger.predict` writes at padded steps
PAD_TAG = -100


class CharFeaturesConfig(StrictModel):
    """Character features of each word (:class:`~rnnkit.layers.CharWordEncoder`)."""

    num_chars: int = Field(gt=1, description="character vocabulary size (0 is padding)")
    kind: Literal["cnn", "lstm"] = Field("cnn", description="cnn: Ma & Hovy 2016; lstm: a BiLSTM (Lample et al.)")
    embed_dim: int = Field(32, gt=0)
    hidden_size: int = Field(64, gt=0, description="CNN filters, or BiLSTM units per direction")
    kernel_size: int = Field(3, gt=0, description="CNN window over characters (odd)")


class TaggerConfig(StrictModel):
    """Configuration of :class:`Tagger` (unknown keys are errors, also inside ``encoder``)."""

    encoder: EncoderConfig
    chars: CharFeaturesConfig | None = Field(None, description="character features joined to word embeddings")
    num_tags: int = Field(gt=1, description="number of tags (K)")
    crf: bool = Field(False, description="score whole tag sequences with a linear-chain CRF")
    dropout: float = Field(0.0, ge=0, lt=1, description="on the encoder's features, before the output layer")
    tag_names: list[str] | None = Field(None, description="the tags' names in output order (num_tags of them)")
    tag_scheme: Scheme | None = Field(
        None, description="entity tagging scheme of tag_names: with crf, Viterbi never decodes a forbidden move"
    )

    @model_validator(mode="after")
    def _names_fit(self) -> TaggerConfig:
        if self.tag_names is not None and len(self.tag_names) != self.num_tags:
            raise ValueError(f"tag_names has {len(self.tag_names)} names for num_tags={self.num_tags}")
        if self.tag_scheme is not None and self.tag_names is None:
            raise ValueError("tag_scheme needs tag_names (the constraints follow from the tags' names)")
        return self


class Tagger(Model):
    """Encoder -> per-step emissions, optionally with a CRF on top (module docstring).

    ``forward(x, lengths=None, chars=None) -> emissions (B, T, K)``; ``loss(x, lengths, tags, chars=None) ->
    scalar``; ``predict(x, lengths=None, chars=None) -> tags (B, T) long`` with :data:`PAD_TAG` at padded steps.
    ``chars`` (B, T, W) is required exactly when the config has ``chars``.
    """

    config_class = TaggerConfig
    kind = "tagger"
    config: TaggerConfig

    def __init__(self, config: TaggerConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.chars = None
        encoder = cfg.encoder
        if cfg.chars is not None:
            c = cfg.chars
            self.chars = CharWordEncoder(c.num_chars, c.kind, c.embed_dim, c.hidden_size, c.kernel_size)
            if encoder.vocab_size is None:
                raise ValueError("Tagger: character features go with word ids (encoder.vocab_size)")
            encoder = encoder.model_copy(update={"extra_features": self.chars.output_size})
        self.encoder = SequenceEncoder(encoder)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_size, cfg.num_tags)
        constraints = None
        if cfg.crf and cfg.tag_scheme is not None:
            constraints = allowed_transitions(cfg.tag_names, cfg.tag_scheme)
        self.crf = CRF(cfg.num_tags, constraints) if cfg.crf else None

    def _lengths(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        B, T = x.shape[:2]
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        return check_lengths(lengths, B, T, x.device)

    def _char_features(self, x: Tensor, chars: Tensor | None) -> Tensor | None:
        if self.chars is None:
            if chars is not None:
                raise ValueError("Tagger: chars given, but the model has no character features (config.chars)")
            return None
        if chars is None or chars.dim() != 3 or tuple(chars.shape[:2]) != tuple(x.shape[:2]):
            got = None if chars is None else tuple(chars.shape)
            raise ValueError(f"Tagger: expected chars ({x.shape[0]}, {x.shape[1]}, W) beside the words, got {got}")
        return self.chars(chars)

    def forward(self, x: Tensor, lengths: Tensor | None = None, chars: Tensor | None = None) -> Tensor:
        """Emissions (B, T, K): per-step tag scores (logits without a CRF), zero past each length."""
        lengths = self._lengths(x, lengths)
        h, _ = self.encoder(x, lengths, features=self._char_features(x, chars))  # (B, T, D*H)
        emissions = self.head(self.drop(h))  # (B, T, K)
        mask = lengths_to_mask(lengths, x.shape[1])
        return emissions.masked_fill(~mask.unsqueeze(-1), 0.0)

    def loss(self, x: Tensor, lengths: Tensor | None, tags: Tensor, chars: Tensor | None = None) -> Tensor:
        """Mean over real steps of the token cross-entropy, or with ``crf`` the CRF negative
        log-likelihood summed over the batch and divided by the number of real steps (so both
        losses have the same per-token scale)."""
        lengths = self._lengths(x, lengths)
        B, T = x.shape[:2]
        if tuple(tags.shape) != (B, T):
            raise ValueError(f"Tagger: expected tags ({B}, {T}), got {tuple(tags.shape)}")
        emissions = self(x, lengths, chars)
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
    def predict(self, x: Tensor, lengths: Tensor | None = None, chars: Tensor | None = None) -> Tensor:
        """Best tags (B, T) long — per-step argmax, or Viterbi with ``crf`` — and :data:`PAD_TAG` at
        padded steps. Runs in eval mode (no dropout) and restores the previous mode. In-memory data (a list of
        sequences, as :meth:`fit` takes) gives each sequence's tag list, as the labels ``fit`` was given."""
        if not isinstance(x, Tensor):
            return super().predict(x, lengths)
        with eval_mode(self):
            lengths = self._lengths(x, lengths)
            emissions = self(x, lengths, chars)
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
        if self.config.chars is None:
            return (x,), {"lengths": lengths}
        chars = torch.randint(1, self.config.chars.num_chars, (batch_size, length, 5), generator=g)
        chars[..., 3:] = 0  # words of 3 characters
        return (x,), {"lengths": lengths, "chars": chars}
