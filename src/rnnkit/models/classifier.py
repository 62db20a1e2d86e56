"""Many-to-one: a sequence (token ids or real-valued multichannel features) -> class logits or values.

``x`` (B, T) ids or (B, T, F) features -> :class:`SequenceEncoder` (B, T, D*H) -> pooling over each
sequence's real steps (last / mean / max / attention) (B, D*H) -> dropout -> an optional MLP head
(``head_hidden``) -> linear (B, C) logits, or (B, O) values for regression.

Used for sentiment and spam (text), time-series classification and speaker ID (features).
:class:`ClassifierEnsemble` trains ``size`` such classifiers side by side and averages their probabilities.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from ..config import StrictModel
from ..layers import Pooling
from ..layers.masking import check_lengths
from .base import Model, eval_mode, mixture_log_probs, refuse_one_class
from .encoder import EncoderConfig, SequenceEncoder

POOLINGS = ("last", "mean", "max", "attention")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class ClassifierConfig(StrictModel):
    encoder: EncoderConfig
    num_classes: int | None = Field(None, ge=2, description="classification: number of classes")
    output_size: int | None = Field(None, ge=1, description="regression: number of values per sequence")
    pooling: Literal["last", "mean", "max", "attention"] = "max"
    attention_hidden: int | None = Field(None, gt=0, description="attention pooling's hidden size")
    head_hidden: list[int] = Field(default_factory=list, description="hidden widths of the MLP head")
    head_activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="on the pooled features and between head layers")

    _one_class = field_validator("num_classes", mode="before")(refuse_one_class)

    @model_validator(mode="after")
    def _check(self):
        if (self.num_classes is None) == (self.output_size is None):
            raise ValueError("set exactly one of num_classes (classification) and output_size (regression)")
        if any(h <= 0 for h in self.head_hidden):
            raise ValueError(f"head_hidden must hold positive ints, got {self.head_hidden}")
        if self.attention_hidden is not None and self.pooling != "attention":
            raise ValueError("attention_hidden is only used with pooling='attention'")
        return self


def _lengths_and_targets(name: str, lengths: Tensor | None, y: Tensor | None) -> tuple[Tensor | None, Tensor]:
    """``loss(x, lengths, y)`` or ``loss(x, y)``: the second form passes the targets where lengths stand."""
    if y is None:
        if lengths is None:
            raise ValueError(f"{name}.loss: no targets; call loss(x, lengths, y) or loss(x, y)")
        return None, lengths
    return lengths, y


class Classifier(Model):
    """Sequence encoder + pooling + head. ``forward(x, lengths=None) -> (B, C)``.

    ``pooling="last"`` takes each direction where it has read the whole sequence (the forward half
    at ``length - 1``, the backward half at ``t = 0``); the others pool every real step.
    :meth:`forward_with_weights` also returns the attention-pooling weights (B, T) for plots.
    """

    kind = "classifier"
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        size = self.encoder.output_size
        self.pool = Pooling(
            cfg.pooling,
            input_size=size,
            hidden_size=cfg.attention_hidden,
            bidirectional=cfg.encoder.bidirectional,
        )
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        for width in cfg.head_hidden:
            layers += [nn.Linear(size, width), ACTIVATIONS[cfg.head_activation](), nn.Dropout(cfg.dropout)]
            size = width
        layers.append(nn.Linear(size, cfg.num_classes or cfg.output_size))
        self.head = nn.Sequential(*layers)

    @property
    def is_classifier(self) -> bool:
        return self.config.num_classes is not None

    def forward_with_weights(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, B, T, x.device)
        outputs, _ = self.encoder(x, lengths)  # (B, T, D*H)
        pooled, weights = self.pool(outputs, lengths)  # (B, D*H), (B, T) or None
        return self.head(pooled), weights

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.forward_with_weights(x, lengths)[0]

    def loss(self, x: Tensor, lengths: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """Cross-entropy on class ids (B,), or mean squared error on values (B, O) / (B,).

        ``loss(x, lengths, y)``, or ``loss(x, y)`` for sequences that fill the whole batch (a batch without
        ``lengths``)."""
        lengths, y = _lengths_and_targets(type(self).__name__, lengths, y)
        out = self(x, lengths)
        if self.is_classifier:
            return F.cross_entropy(out, y)
        return F.mse_loss(out, y.view_as(out).to(out.dtype))

    @torch.no_grad()
    def predict(self, x, lengths=None, *, batch_size: int = 256):
        """Class probabilities (B, C), or predicted values (B, O).

        ``x`` a padded batch tensor ``(B, T)`` / ``(B, T, F)`` (with ``lengths`` (B,) or none), or in-memory data
        in any form :meth:`fit` takes (a list of variable-length arrays, ...; computed in batches)."""
        if not isinstance(x, Tensor):
            return super().predict(x, lengths, batch_size=batch_size)
        with eval_mode(self):
            out = self(x, lengths)
        return out.softmax(-1) if self.is_classifier else out

    def example_inputs(self, batch_size: int = 2, length: int = 7):
        enc = self.config.encoder
        if enc.vocab_size:
            x = torch.randint(1, enc.vocab_size, (batch_size, length))
        else:
            x = torch.randn(batch_size, length, enc.input_size)
        lengths = torch.full((batch_size,), length, dtype=torch.long)
        lengths[1:] = max(1, length - 2)
        return (x, lengths), {}


class ClassifierEnsembleConfig(StrictModel):
    member: ClassifierConfig
    size: int = Field(ge=1, le=64, description="members, each initialised at random on its own")
    share_embedding: bool = Field(
        False, description="token input: the members read one embedding table (member 0's) instead of one each"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.share_embedding and not self.member.encoder.vocab_size:
            raise ValueError("share_embedding needs token input (member.encoder.vocab_size)")
        return self


class ClassifierEnsemble(Model):
    """``size`` independent :class:`Classifier` members with the same interface as one.

    Classification: ``forward`` returns the logits of the members' equal-weight mixture,
    ``log(mean_k softmax(logits_k))`` (B, C), so argmax, softmax and cross-entropy downstream are those of the
    averaged probabilities. Regression: the mean of the members' values. ``loss`` is the mean of the members'
    *own* losses (not the mixture's): each member learns on its own, its gradient being its own loss's divided
    by ``size``. Members share no parameter, except with ``share_embedding``: then every member reads member 0's
    token embedding (one table in memory and on disk; meant for a frozen pretrained table, which makes the members
    exactly those of an ensemble of separate models over it). The task trains them side by side on the same
    batches.
    """

    config_class = ClassifierEnsembleConfig
    kind = "classifier-ensemble"
    config: ClassifierEnsembleConfig

    def __init__(self, config: ClassifierEnsembleConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.members = nn.ModuleList(Classifier(self.config.member) for _ in range(self.config.size))
        if self.config.share_embedding:
            for m in self.members[1:]:
                m.encoder.embedding = self.members[0].encoder.embedding

    @property
    def is_classifier(self) -> bool:
        return self.config.member.num_classes is not None

    def _combine(self, outs: list[Tensor]) -> Tensor:
        if not self.is_classifier:
            return torch.stack(outs).mean(0)
        return mixture_log_probs(outs)

    def forward_with_weights(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The combined output and, with attention pooling, the members' mean attention weights (B, T)."""
        outs, weights = zip(*(m.forward_with_weights(x, lengths) for m in self.members), strict=True)
        mean_weights = None if weights[0] is None else torch.stack(weights).mean(0)
        return self._combine(list(outs)), mean_weights

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self._combine([m(x, lengths) for m in self.members])

    def loss(self, x: Tensor, lengths: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """The mean of the members' own losses (cross-entropy, or mean squared error); ``loss(x, y)`` without
        lengths works as for :class:`Classifier`."""
        lengths, y = _lengths_and_targets(type(self).__name__, lengths, y)
        return torch.stack([m.loss(x, lengths, y) for m in self.members]).mean()

    @torch.no_grad()
    def predict(self, x, lengths=None, *, batch_size: int = 256):
        """The members' mean class probabilities (B, C), or their mean values (B, O) (inputs as
        :meth:`Classifier.predict`)."""
        if not isinstance(x, Tensor):
            return super().predict(x, lengths, batch_size=batch_size)
        with eval_mode(self):
            out = self(x, lengths)
        return out.softmax(-1) if self.is_classifier else out

    def example_inputs(self, batch_size: int = 2, length: int = 7):
        return self.members[0].example_inputs(batch_size, length)
