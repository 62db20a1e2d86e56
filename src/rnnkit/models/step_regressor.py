r"""Many-to-many, aligned, real-valued: ``output_size`` values at every step (per-step regression).

::

    x (B, T) ids or (B, T, F) features -> SequenceEncoder (B, T, D*H) -> dropout -> Linear -> values (B, T, O)

The regression twin of :class:`~rnnkit.models.Tagger`: a value per step instead of a label per step (denoising
or smoothing a signal, per-frame pitch or energy, a sensor reading from the others at every step). A
bidirectional encoder reads the whole sequence before answering at any step; a unidirectional one answers from
the past only (a causal filter). Training minimises the mean squared error over the real steps.
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
from .base import Model
from .encoder import EncoderConfig, SequenceEncoder


class StepRegressorConfig(StrictModel):
    """Configuration of :class:`StepRegressor` (unknown keys are errors, also inside ``encoder``)."""

    encoder: EncoderConfig
    output_size: int = Field(1, gt=0, description="values per step (O)")
    dropout: float = Field(0.0, ge=0, lt=1, description="on the encoder's features, before the output layer")


class StepRegressor(Model):
    """Encoder -> per-step values.

    ``forward(x, lengths=None) -> (B, T, O)``, zero past each length; ``loss(x, lengths, y (B, T, O) or (B, T))``
    is the mean squared error over the real steps (``y`` may hold anything past each length).
    """

    config_class = StepRegressorConfig
    kind = "step_regressor"
    config: StepRegressorConfig

    def __init__(self, config: StepRegressorConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_size, cfg.output_size)

    def _lengths(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        B, T = x.shape[:2]
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        return check_lengths(lengths, B, T, x.device)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Values (B, T, O), zero past each length."""
        lengths = self._lengths(x, lengths)
        h, _ = self.encoder(x, lengths)  # (B, T, D*H)
        out = self.head(self.drop(h))  # (B, T, O)
        return out.masked_fill(~lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1), 0.0)

    def loss(self, x: Tensor, lengths: Tensor | None, y: Tensor) -> Tensor:
        """Mean squared error over the real steps (every value of every real step counts once)."""
        lengths = self._lengths(x, lengths)
        out = self(x, lengths)
        if y.dim() == 2 and out.shape[-1] == 1:
            y = y.unsqueeze(-1)
        if tuple(y.shape) != tuple(out.shape):
            raise ValueError(f"StepRegressor: expected targets {tuple(out.shape)}, got {tuple(y.shape)}")
        mask = lengths_to_mask(lengths, x.shape[1])
        return F.mse_loss(out[mask], y[mask].to(out.dtype))

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        enc = self.config.encoder
        g = torch.Generator().manual_seed(0)
        if enc.vocab_size is not None:
            x = torch.randint(min(1, enc.vocab_size - 1), enc.vocab_size, (batch_size, length), generator=g)
        else:
            x = torch.randn(batch_size, length, enc.input_size, generator=g)
        lengths = torch.tensor([max(1, length - i) for i in range(batch_size)])
        return (x,), {"lengths": lengths}
