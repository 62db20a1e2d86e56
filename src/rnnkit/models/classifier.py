"""Many-to-one: a sequence of token ids -> class logits.

``ids`` (B, T) -> embedding (B, T, E) -> dropout -> LSTM (B, T, D*H) -> pooling over real steps (B, D*H)
-> dropout -> linear (B, C).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.layers import LSTM, Pooling
from rnnkit.layers.masking import check_lengths
from rnnkit.layers.pooling import POOLING_KINDS

POOLINGS = POOLING_KINDS  # "last", "mean", "max", "attention"


class Classifier(nn.Module):
    """Embedding -> (Bi)LSTM -> pooling -> dropout -> linear.

    Args:
        vocab_size: number of token ids; id ``padding_idx`` is padding and gets a zero, frozen embedding.
        num_classes: number of output classes (>= 2).
        embed_dim, hidden_size, num_layers, bidirectional: the encoder's sizes.
        dropout: dropout on the embeddings, between LSTM layers and on the pooled features.
        pooling: ``"max"`` | ``"mean"`` | ``"last"`` | ``"attention"`` over each sequence's real steps
            (:class:`rnnkit.layers.Pooling`; ``"last"`` takes the backward direction at ``t = 0``).

    ``forward(ids (B, T) long, lengths (B,) long) -> logits (B, num_classes)``.
    :attr:`config` holds the constructor arguments, so ``Classifier(**model.config)`` rebuilds it.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        pooling: str = "max",
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in [
            ("vocab_size", vocab_size, 1),
            ("num_classes", num_classes, 2),
            ("embed_dim", embed_dim, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Classifier: {name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Classifier: dropout must be in [0, 1), got {dropout!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"Classifier: pooling must be one of {POOLINGS}, got {pooling!r}")
        if not 0 <= padding_idx < vocab_size:
            raise ValueError(f"Classifier: padding_idx must be in [0, {vocab_size}), got {padding_idx}")
        self.config: dict[str, Any] = dict(
            vocab_size=vocab_size,
            num_classes=num_classes,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            pooling=pooling,
            padding_idx=padding_idx,
        )
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.encoder = LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        features = hidden_size * (2 if bidirectional else 1)
        self.pool = Pooling(pooling, input_size=features, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"Classifier: ids must be (B, T), got shape {tuple(ids.shape)}")
        B, T = ids.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=ids.device)
        lengths = check_lengths(lengths, B, T, ids.device)
        x = self.dropout(self.embedding(ids))  # (B, T, E)
        outputs, _ = self.encoder(x, lengths=lengths)  # (B, T, D*H)
        pooled, _ = self.pool(outputs, lengths)  # (B, D*H)
        return self.head(self.dropout(pooled))  # (B, C)
