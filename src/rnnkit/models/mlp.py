"""One-to-one: a fixed-size input (a feature vector, or an image flattened) -> class logits or a regression output.

The baseline every recurrent model is compared against: if an MLP on the flattened input does as well,
the recurrence bought nothing. ``x`` (B, *input_shape) -> flatten (B, I) -> [linear -> activation ->
dropout] per hidden size -> linear (B, C) logits (``num_classes``) or (B, O) values (``output_size``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from ..config import StrictModel
from .base import Model, refuse_one_class

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLPConfig(StrictModel):
    """Configuration of :class:`MLP` (unknown keys are errors).

    Set exactly one of ``input_size`` (vectors) and ``input_shape`` (e.g. ``[28, 28]`` or ``[1, 28, 28]``
    for images, flattened by the model), and exactly one of ``num_classes`` (classification,
    cross-entropy) and ``output_size`` (regression, mean squared error).
    """

    input_size: int | None = Field(None, gt=0, description="features per example")
    input_shape: list[int] | None = Field(None, description="per-example shape, flattened by the model (images)")
    hidden_sizes: list[int] = Field(default_factory=lambda: [128], description="widths of the hidden layers")
    num_classes: int | None = Field(None, ge=2, description="classification: number of classes")
    output_size: int | None = Field(None, gt=0, description="regression: number of outputs")
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="after every hidden activation")

    _one_class = field_validator("num_classes", mode="before")(refuse_one_class)

    @model_validator(mode="after")
    def _check(self):
        if (self.input_size is None) == (self.input_shape is None):
            raise ValueError("set exactly one of input_size (vectors) and input_shape (e.g. images)")
        if self.input_shape is not None and (not self.input_shape or any(d <= 0 for d in self.input_shape)):
            raise ValueError(f"input_shape must be a non-empty list of positive ints, got {self.input_shape}")
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must hold positive ints, got {self.hidden_sizes}")
        if (self.num_classes is None) == (self.output_size is None):
            raise ValueError("set exactly one of num_classes (classification) and output_size (regression)")
        return self

    @property
    def features(self) -> int:
        """Flattened input size."""
        return self.input_size if self.input_size is not None else math.prod(self.input_shape)


class MLP(Model):
    """Flatten -> [linear -> activation -> dropout] x len(hidden_sizes) -> linear.

    ``forward(x (B, *input_shape) or (B, input_size)) -> (B, num_classes) logits or (B, output_size)``.
    ``hidden_sizes=[]`` is logistic (or linear) regression.
    """

    config_class = MLPConfig
    kind = "mlp"
    config: MLPConfig

    def __init__(self, config: MLPConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        layers: list[nn.Module] = []
        size = cfg.features
        for h in cfg.hidden_sizes:
            layers += [nn.Linear(size, h), ACTIVATIONS[cfg.activation]()]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            size = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(size, cfg.num_classes if cfg.num_classes is not None else cfg.output_size)

    @property
    def is_classifier(self) -> bool:
        return self.config.num_classes is not None

    def _flatten(self, x: Tensor) -> Tensor:
        cfg = self.config
        if not torch.is_floating_point(x):
            raise TypeError(f"MLP: expected a floating-point input, got {x.dtype} (scale images to floats first)")
        if cfg.input_shape is not None:
            if tuple(x.shape[1:]) != tuple(cfg.input_shape):
                raise ValueError(
                    f"MLP: expected input (B, {', '.join(map(str, cfg.input_shape))}), got {tuple(x.shape)}"
                )
        elif x.dim() != 2 or x.shape[1] != cfg.input_size:
            raise ValueError(f"MLP: expected input (B, {cfg.input_size}), got {tuple(x.shape)}")
        return x.flatten(1)  # (B, I)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self._flatten(x)))  # (B, C) or (B, O)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy against class ids ``y`` (B,), or mean squared error against ``y`` (B, O)
        (``(B,)`` is accepted when ``output_size`` is 1)."""
        out = self(x)
        if self.is_classifier:
            if y.shape != out.shape[:1] or torch.is_floating_point(y):
                raise ValueError(
                    f"MLP.loss: expected integer class ids ({out.shape[0]},), got {y.dtype} {tuple(y.shape)}"
                )
            return F.cross_entropy(out, y)
        if y.dim() == 1 and out.shape[1] == 1:
            y = y.unsqueeze(1)
        if y.shape != out.shape:
            raise ValueError(f"MLP.loss: expected targets {tuple(out.shape)}, got {tuple(y.shape)}")
        return F.mse_loss(out, y.to(out.dtype))

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        """A random batch of the configured input shape (``length`` does not apply to one-to-one)."""
        p = self.head.weight
        shape = self.config.input_shape if self.config.input_shape is not None else [self.config.input_size]
        return (torch.randn(batch_size, *shape, device=p.device, dtype=p.dtype),), {}
