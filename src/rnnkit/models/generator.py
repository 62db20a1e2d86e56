r"""One-to-many: a conditioning input -> a token sequence (image captioning, sequence from a class).

::

    cond ─ vector (B, cond_size)                     ┐
         ─ image (B, C, H, W) -> [conv3x3+ReLU+pool]* -> flatten -> Linear ┤-> z (B, Z)
         ─ class id (B,) -> embedding                 ┘
    z -> Linear + tanh -> every decoder layer's h_0 (and c_0 for an LSTM)
    tgt_in (B, T) -> embedding [; z at every step if feed_condition] -> LSTM/GRU -> dropout -> Linear -> (B, T, V)

``Z`` is ``cond_size`` for vectors and ``cond_dim`` for images and classes. Exactly one of
``cond_size``, ``image_channels`` (with ``image_size``) and ``num_classes`` is set.

Images have two encoders (``image_encoder``). ``"flat"`` (above) maps the whole feature map with one linear
layer, so every place in the image has its own read-out. ``"columns"`` reads the feature map as a sequence of
columns, left to right: each column (all its channels and rows, ``C' * H'`` values) is one step of a
bidirectional GRU (``column_hidden`` per direction), and ``[forward state after the last column; backward state
after the first]`` -> Linear -> LayerNorm is ``z``. One reader serves every position: a pattern moved right by
``2 ** len(cnn_channels)`` pixels gives the same column features one column later (text lines, digit strips).
With ``attend_columns`` every decoder output ``h_t`` also attends (additive score) over the GRU's column outputs
``(B, W', 2 * column_hidden)`` and the logits come from ``tanh(W_c [h_t; context_t])`` (Luong et al. 2015,
without input feeding, so whole sequences still run in one call): each word can look at its own digit. The
state then also holds ``memory`` (B, W', 2Hc) and ``keys`` (its projection), which search reorders like the rest.

Decoding one step at a time (:meth:`ConditionalGenerator.step`) gives what :meth:`forward` gives.
The state is a dict, batch first: ``hidden`` (tuple of (B, L, H)) and, with ``feed_condition``,
``cond`` (B, Z).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..cells import cell_spec
from ..config import StrictModel
from ..layers import GRU, Attention, dropin_for, lengths_to_mask
from ..layers.masking import check_lengths
from .base import Model


class GeneratorConfig(StrictModel):
    """Configuration of :class:`ConditionalGenerator` (unknown keys are errors)."""

    vocab_size: int = Field(gt=1, description="output ids, including padding, bos and eos")
    cond_size: int | None = Field(None, gt=0, description="vector conditioning: its size")
    image_channels: int | None = Field(None, gt=0, description="image conditioning: input channels")
    image_size: tuple[int, int] | None = Field(None, description="image conditioning: (H, W)")
    cnn_channels: list[int] = Field([16, 32], description="image encoder: one conv3x3+ReLU+maxpool2 block each")
    image_encoder: Literal["flat", "columns"] = Field(
        "flat", description="flat: one linear map of the feature map; columns: a BiGRU over its columns"
    )
    column_hidden: int | None = Field(None, gt=0, description="columns encoder: GRU size per direction (default 128)")
    attend_columns: bool = Field(False, description="columns encoder: the decoder attends over the columns each step")
    num_classes: int | None = Field(None, gt=0, description="class conditioning: number of classes")
    cond_dim: int | None = Field(None, gt=0, description="image/class conditioning vector size (default 64)")
    embed_dim: int = Field(64, gt=0)
    padding_idx: int = Field(0, ge=0)
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    feed_condition: bool = Field(False, description="also concatenate the conditioning vector to every input")
    dropout: float = Field(0.0, ge=0, lt=1, description="on embeddings, between layers, on outputs")

    @model_validator(mode="after")
    def _check(self):
        given = [k for k in ("cond_size", "image_channels", "num_classes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"set exactly one of cond_size (vector), image_channels (image) and num_classes (class), got {given}"
            )
        if self.padding_idx >= self.vocab_size:
            raise ValueError(f"padding_idx must be < vocab_size ({self.vocab_size}), got {self.padding_idx}")
        if self.cond_size is not None and self.cond_dim is not None:
            raise ValueError("cond_dim sizes the image/class encoders; a vector's size is cond_size")
        if self.image_channels is None:
            if self.image_size is not None:
                raise ValueError("image_size needs image_channels")
            if self.image_encoder != "flat":
                raise ValueError(f"image_encoder={self.image_encoder!r} needs image conditioning (image_channels)")
        else:
            if self.image_size is None:
                raise ValueError("image conditioning needs image_size (H, W)")
            if not self.cnn_channels or any(c <= 0 for c in self.cnn_channels):
                raise ValueError(f"cnn_channels must be a non-empty list of positive ints, got {self.cnn_channels}")
            smallest = 2 ** len(self.cnn_channels)
            if min(self.image_size) < smallest:
                raise ValueError(
                    f"image_size {tuple(self.image_size)} is too small for {len(self.cnn_channels)} pooling blocks "
                    f"(each halves H and W; need at least {smallest} x {smallest})"
                )
        for key in ("column_hidden", "attend_columns"):
            if getattr(self, key) not in (None, False) and self.image_encoder != "columns":
                raise ValueError(f"{key} needs image_encoder='columns', got {self.image_encoder!r}")
        return self

    @property
    def condition_size(self) -> int:
        """``Z``: the size of the conditioning vector."""
        return self.cond_size if self.cond_size is not None else (self.cond_dim or 64)


def conv_blocks(in_channels: int, image_size: tuple[int, int], channels: list[int]) -> tuple[nn.Sequential, tuple]:
    """conv3x3 + ReLU + 2x2 max-pool per entry of ``channels`` -> (the stack, its output (C', H', W'))."""
    layers: list[nn.Module] = []
    c, (h, w) = in_channels, image_size
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = out, h // 2, w // 2
    return nn.Sequential(*layers), (c, h, w)


class ImageEncoder(nn.Module):
    """``(B, C, H, W)`` -> ``(B, Z)``: blocks of conv3x3 + ReLU + 2x2 max-pool, a linear map, LayerNorm."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], channels: list[int], out_size: int) -> None:
        super().__init__()
        self.features, (c, h, w) = conv_blocks(in_channels, image_size, channels)
        self.proj = nn.Linear(c * h * w, out_size)
        self.norm = nn.LayerNorm(out_size)
        self.input_shape = (in_channels, *image_size)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            want = ", ".join(map(str, self.input_shape))
            raise ValueError(f"{type(self).__name__}: expected images (B, {want}), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        # normalised so the decoder's tanh initial state starts unsaturated whatever the image statistics
        return self.norm(self.proj(self.features(x).flatten(1)))


class ColumnImageEncoder(ImageEncoder):
    """``(B, C, H, W)`` -> ``(B, Z)``: the conv blocks, their feature map's columns (``C' * H'`` values each,
    left to right) through a bidirectional GRU, ``[last forward state; last backward state]`` -> Linear -> LayerNorm.

    Every column is read by the same weights, so a digit is recognised alike wherever it stands in the image.
    """

    def __init__(
        self, in_channels: int, image_size: tuple[int, int], channels: list[int], out_size: int, hidden_size: int
    ) -> None:
        nn.Module.__init__(self)
        self.features, (c, h, w) = conv_blocks(in_channels, image_size, channels)
        self.reader = GRU(c * h, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, out_size)
        self.norm = nn.LayerNorm(out_size)
        self.input_shape = (in_channels, *image_size)

    def columns(self, x: Tensor) -> Tensor:
        """Images -> the column sequence ``(B, W', C' * H')`` the reader sees."""
        self._check(x)
        f = self.features(x)  # (B, C', H', W')
        return f.flatten(1, 2).transpose(1, 2)

    def read(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images -> ``z`` (B, Z) and the reader's outputs per column (B, W', 2 * hidden)."""
        out, h_n = self.reader(self.columns(x))  # h_n (2, B, hidden): forward after the last column, backward first
        return self.norm(self.proj(torch.cat([h_n[0], h_n[1]], -1))), out

    def forward(self, x: Tensor) -> Tensor:
        return self.read(x)[0]


class ConditionalGenerator(Model):
    """Conditioning vector / image / class -> recurrent decoder -> token logits (module docstring).

    ``forward(cond, tgt_in (B, T)) -> logits (B, T, V)``; ``tgt_in`` starts with ``bos``.
    """

    config_class = GeneratorConfig
    kind = "conditional_generator"
    config: GeneratorConfig

    def __init__(self, config: GeneratorConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        Z, H, L = cfg.condition_size, cfg.hidden_size, cfg.num_layers
        if cfg.image_channels is not None and cfg.image_encoder == "columns":
            self.cond_encoder: nn.Module | None = ColumnImageEncoder(
                cfg.image_channels, cfg.image_size, cfg.cnn_channels, Z, cfg.column_hidden or 128
            )
        elif cfg.image_channels is not None:
            self.cond_encoder = ImageEncoder(cfg.image_channels, cfg.image_size, cfg.cnn_channels, Z)
        elif cfg.num_classes is not None:
            self.cond_encoder = nn.Embedding(cfg.num_classes, Z)
        else:
            self.cond_encoder = None  # the vector is used as given
        self.init_h = nn.Linear(Z, L * H)
        self.init_c = nn.Linear(Z, L * H) if cell_spec(cfg.cell).has_cell_state else None
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.padding_idx)
        memory = 2 * (cfg.column_hidden or 128)
        self.attention = Attention(H, memory, score="additive") if cfg.attend_columns else None
        self.attention_out = nn.Linear(H + memory, H) if cfg.attend_columns else None
        rnn = dropin_for(cell_spec(cfg.cell).cls)
        self.decoder = rnn(
            cfg.embed_dim + (Z if cfg.feed_condition else 0),
            H,
            num_layers=L,
            batch_first=True,
            dropout=cfg.dropout if L > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(H, cfg.vocab_size)

    def condition(self, cond: Tensor) -> Tensor:
        """The conditioning input -> its vector ``z`` (B, Z)."""
        cfg = self.config
        if cfg.num_classes is not None:
            if cond.dim() != 1 or cond.dtype.is_floating_point or cond.dtype == torch.bool:
                raise ValueError(f"ConditionalGenerator: expected class ids (B,), got {cond.dtype} {tuple(cond.shape)}")
            return self.cond_encoder(cond)
        if cfg.cond_size is not None:
            if cond.dim() != 2 or cond.shape[1] != cfg.cond_size:
                raise ValueError(
                    f"ConditionalGenerator: expected vectors (B, {cfg.cond_size}), got {tuple(cond.shape)}"
                )
            return cond
        return self.cond_encoder(cond)

    def encode(self, cond: Tensor) -> dict[str, Any]:
        """The decoder's initial state nest: ``hidden`` (tuple of (B, L, H)), ``cond`` (B, Z) if fed,
        ``memory`` and ``keys`` (B, W', 2Hc) with ``attend_columns``."""
        state: dict[str, Any] = {}
        if self.attention is not None:
            z, memory = self.cond_encoder.read(cond)
            state.update(memory=memory, keys=self.attention.project_keys(memory))
        else:
            z = self.condition(cond)  # (B, Z)
        B, L, H = z.shape[0], self.config.num_layers, self.config.hidden_size
        hidden = (torch.tanh(self.init_h(z)).view(B, L, H),)
        if self.init_c is not None:
            hidden = (*hidden, torch.tanh(self.init_c(z)).view(B, L, H))
        state["hidden"] = hidden
        if self.config.feed_condition:
            state["cond"] = z
        return state

    def _decode(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Tokens (B, T) -> logits (B, T, V), next state."""
        x = self.drop(self.embedding(tokens))  # (B, T, E)
        if "cond" in state:
            x = torch.cat([x, state["cond"].unsqueeze(1).expand(-1, x.shape[1], -1)], -1)
        hx = tuple(h.transpose(0, 1).contiguous() for h in state["hidden"])  # (L, B, H)
        out, final = self.decoder(x, hx if len(hx) == 2 else hx[0])
        final = final if isinstance(final, tuple) else (final,)
        if self.attention is not None:  # every h_t looks at the columns
            context, _ = self.attention(out, state["memory"], projected_keys=state["keys"])  # (B, T, 2Hc)
            out = torch.tanh(self.attention_out(torch.cat([out, context], -1)))
        return self.output(self.drop(out)), dict(state, hidden=tuple(h.transpose(0, 1) for h in final))

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Previous tokens (B,) -> logits (B, V), next state (for :mod:`rnnkit.decoding`)."""
        if tokens.dim() != 1:
            raise ValueError(f"ConditionalGenerator.step: tokens must have shape (B,), got {tuple(tokens.shape)}")
        logits, state = self._decode(tokens.unsqueeze(1), state)
        return logits[:, 0], state

    def forward(self, cond: Tensor, tgt_in: Tensor) -> Tensor:
        if tgt_in.dim() != 2:
            raise ValueError(f"ConditionalGenerator: tgt_in must be token ids (B, T), got {tuple(tgt_in.shape)}")
        state = self.encode(cond)
        if tgt_in.shape[0] != state["hidden"][0].shape[0]:
            raise ValueError(
                f"ConditionalGenerator: tgt_in has batch {tgt_in.shape[0]} but cond has {state['hidden'][0].shape[0]}"
            )
        return self._decode(tgt_in, state)[0]

    def loss(self, cond: Tensor, tgt_in: Tensor, tgt_out: Tensor, tgt_lengths: Tensor) -> Tensor:
        """Cross-entropy averaged over the real target tokens."""
        logits = self(cond, tgt_in)
        tgt_lengths = check_lengths(tgt_lengths, tgt_out.shape[0], tgt_out.shape[1], tgt_out.device)
        mask = lengths_to_mask(tgt_lengths, tgt_out.shape[1])
        return F.cross_entropy(logits[mask], tgt_out[mask])

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        cfg = self.config
        g = torch.Generator().manual_seed(0)
        if cfg.num_classes is not None:
            cond = torch.randint(0, cfg.num_classes, (batch_size,), generator=g)
        elif cfg.cond_size is not None:
            cond = torch.randn(batch_size, cfg.cond_size, generator=g)
        else:
            cond = torch.randn(batch_size, cfg.image_channels, *cfg.image_size, generator=g)
        tgt = torch.randint(1, cfg.vocab_size, (batch_size, length), generator=g)
        return (cond, tgt), {}
