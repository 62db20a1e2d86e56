"""The body every topology shares: token embedding or feature projection -> recurrent stack.

``SequenceEncoder`` takes token ids ``(B, T)`` (when ``vocab_size`` is set) or real-valued
features ``(B, T, F)`` (when ``input_size`` is set), runs any registered rnnkit cell over them
(``cell`` is a name from :func:`rnnkit.cells.cell_names`) — the fused drop-in ``LSTM/GRU/RNN`` for the classic
cells (:func:`rnnkit.layers.dropin_for`), the generic :class:`~rnnkit.layers.Recurrent` loop for the others —
and returns every step's output and the final state.

``hidden_size`` may be a list to stack layers of different widths (e.g. ``[64, 32]`` for the
classic "SimpleRNN(64, return_sequences) -> SimpleRNN(32)" stack); ``num_layers`` then must be 1.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn

from ..cells import State, cell_names, cell_spec
from ..config import StrictModel
from ..layers import Recurrent, dropin_for


def _registered_cell(name: str) -> str:
    if name not in cell_names():
        raise PydanticCustomError("cell_name", "Input should be a registered cell: {names}", {"names": _known()})
    return name


def _known() -> str:
    return ", ".join(cell_names())


class _CellNameSchema:
    """JSON schema of :data:`CellName`: the names registered when the schema is made."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        return {**handler(core_schema), "enum": list(cell_names())}


#: a config's ``cell``: a name registered with :func:`rnnkit.cells.register_cell`, checked when the config is built
CellName = Annotated[str, AfterValidator(_registered_cell), _CellNameSchema()]


class EncoderConfig(StrictModel):
    """Configuration of :class:`SequenceEncoder` (unknown keys are errors)."""

    vocab_size: int | None = Field(None, gt=0, description="token input: number of ids (0 is padding)")
    input_size: int | None = Field(None, gt=0, description="real-valued input: features per step")
    embed_dim: int = Field(128, gt=0, description="embedding size for token input")
    extra_features: int = Field(
        0, ge=0, description="token input: features per step joined to the embeddings (e.g. a word's characters)"
    )
    padding_idx: int = Field(0, ge=0)
    cell: CellName = "lstm"
    hidden_size: int | list[int] = Field(128, description="per-layer width; a list stacks layers of different widths")
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, lt=1, description="between recurrent layers")
    variational_dropout: bool = Field(False, description="the between-layer dropout is locked (one mask per sequence)")
    embed_dropout: float = Field(0.0, ge=0, lt=1, description="locked dropout on the embedded/projected input")
    output_dropout: float = Field(0.0, ge=0, lt=1, description="locked dropout on the encoder's outputs")
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)
    weight_drop: float = Field(0.0, ge=0, lt=1)
    zoneout: float = Field(0.0, ge=0, lt=1)
    forget_bias: float | None = Field(None, description="LSTM cells: initial forget-gate bias")
    recurrent_init: Literal["default", "orthogonal"] = "default"

    @model_validator(mode="after")
    def _check(self):
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError("set exactly one of vocab_size (token input) and input_size (real-valued input)")
        if self.extra_features and self.vocab_size is None:
            raise ValueError("extra_features goes with token input (vocab_size); real-valued input has input_size")
        if self.vocab_size is not None and self.padding_idx >= self.vocab_size:
            raise ValueError(f"padding_idx must be < vocab_size ({self.vocab_size}), got {self.padding_idx}")
        if isinstance(self.hidden_size, list):
            if not self.hidden_size or any(h <= 0 for h in self.hidden_size):
                raise ValueError(f"hidden_size list must hold positive ints, got {self.hidden_size}")
            if self.num_layers != 1:
                raise ValueError("give either a hidden_size list or num_layers, not both")
        elif self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if self.forget_bias is not None and not cell_spec(self.cell).accepts("forget_bias"):
            raise ValueError(f"forget_bias applies to LSTM cells, not {self.cell!r}")
        return self


def _make_stack(cfg: EncoderConfig, input_size: int, hidden: int, num_layers: int, first: bool, last: bool):
    common = dict(
        num_layers=num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout if num_layers > 1 else 0.0,
        variational_dropout=cfg.variational_dropout,
        input_dropout=cfg.embed_dropout if first else 0.0,
        output_dropout=cfg.output_dropout if last else 0.0,
        recurrent_dropout=cfg.recurrent_dropout,
        weight_drop=cfg.weight_drop,
        zoneout=cfg.zoneout,
    )
    spec = cell_spec(cfg.cell)
    cell_kw: dict = dict(spec.kwargs)
    # recurrent_init goes to the cells that have a recurrent weight to initialise and take the argument
    if spec.cls.recurrent_weight_name is not None and spec.accepts("recurrent_init"):
        cell_kw["recurrent_init"] = cfg.recurrent_init
    if cfg.forget_bias is not None:
        cell_kw["forget_bias"] = cfg.forget_bias
    layer = dropin_for(spec.cls)
    if layer is not None:  # torch.nn's parameter layout and its fused kernels
        return layer(input_size, hidden, batch_first=True, **common, **cell_kw)
    return Recurrent(spec.cls, input_size, hidden, **common, **cell_kw)


class SequenceEncoder(nn.Module):
    """Embedding (or identity for features) -> one or more recurrent stacks.

    ``forward(x, lengths=None, state=None) -> (outputs (B, T, D*H_last), states)`` where ``states``
    is a list with one state tuple per stack (each component ``(L*D, B, S)``). Outputs past each
    length are zero. ``output_size`` is ``D * H_last``.
    """

    def __init__(self, config: EncoderConfig | dict | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = EncoderConfig(**kwargs)
        elif isinstance(config, dict):
            config = EncoderConfig(**{**config, **kwargs})
        elif kwargs:
            config = EncoderConfig(**{**config.model_dump(), **kwargs})
        self.config = config
        cfg = config
        self.embedding = (
            nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.padding_idx) if cfg.vocab_size else None
        )
        size = cfg.embed_dim + cfg.extra_features if cfg.vocab_size else cfg.input_size
        widths = cfg.hidden_size if isinstance(cfg.hidden_size, list) else [cfg.hidden_size]
        D = 2 if cfg.bidirectional else 1
        stacks = []
        for i, h in enumerate(widths):
            stacks.append(_make_stack(cfg, size, h, cfg.num_layers, i == 0, i == len(widths) - 1))
            size = D * (h)
        self.stacks = nn.ModuleList(stacks)
        self.output_size = size
        self.num_directions = D

    def embed(self, x: Tensor, features: Tensor | None = None) -> Tensor:
        """The recurrent stack's input: embeddings (joined with ``features`` (B, T, extra_features) when the
        config has ``extra_features``), or the real-valued features themselves."""
        extra = self.config.extra_features
        if self.embedding is not None:
            if x.dim() != 2 or x.dtype not in (torch.long, torch.int32, torch.int64):
                raise ValueError(
                    f"SequenceEncoder: expected token ids (B, T) of integers, got {x.dtype} {tuple(x.shape)}"
                )
            e = self.embedding(x)
            if not extra:
                if features is not None:
                    raise ValueError("SequenceEncoder: features given, but the config has no extra_features")
                return e
            if features is None or tuple(features.shape) != (*x.shape, extra):
                got = None if features is None else tuple(features.shape)
                raise ValueError(f"SequenceEncoder: expected features {(*x.shape, extra)} beside the ids, got {got}")
            return torch.cat([e, features.to(e.dtype)], dim=-1)
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(
                f"SequenceEncoder: expected features (B, T, {self.config.input_size}), got {tuple(x.shape)}"
            )
        return x

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, state: list[State] | None = None, features: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        h = self.embed(x, features)
        finals: list[State] = []
        for i, stack in enumerate(self.stacks):
            s0 = None if state is None else state[i]
            if isinstance(stack, Recurrent):
                h, s = stack(h, s0, lengths=lengths)
            else:
                if s0 is not None and len(s0) == 1:
                    s0 = s0[0]
                h, s = stack(h, s0, lengths=lengths)
                s = s if isinstance(s, tuple) else (s,)
            finals.append(s)
        return h, finals

    def top_hidden(self, states: list[State]) -> Tensor:
        """The last stack's top-layer ``h`` of every direction, concatenated: (B, D*H)."""
        h = states[-1][0]  # (L*D, B, H)
        D = self.num_directions
        return h[-D:].transpose(0, 1).reshape(h.shape[1], -1)
