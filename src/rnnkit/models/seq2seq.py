r"""Many-to-many, encoder–decoder: source tokens (or real-valued frames) -> target tokens, with optional attention.

::

    src (B, Ts) ids or (B, Ts, F) frames -> SequenceEncoder -> memory (B, Ts, K), final state
                                        │ bridge (linear+tanh | zeros | copy)
    tgt_in (B, Tt) -> embedding -> [; h̃_{t-1}] -> decoder LSTM/GRU (L layers, H) -> h_t
        h_t, memory -> Attention -> c_t;   h̃_t = tanh(W_c [c_t; h_t])   (h̃_t = h_t without attention)
        h̃_t -> dropout -> Linear -> logits (B, Tt, V)

The attentional layer and input feeding are Luong et al. (2015): with ``input_feeding`` the
previous attentional vector :math:`\tilde h_{t-1}` (zeros at ``t = 0``) is concatenated to the next
input, so the decoder knows what it attended to. ``attention="additive"`` gives Bahdanau-style
scores (Bahdanau et al. 2015) in the same layer; ``"none"`` is the plain encoder–decoder of
Sutskever et al. (2014) (the source reaches the decoder only through the bridged state).

Bridge (the encoder's final state -> the decoder's initial state, for every layer):

* ``linear`` — :math:`h^{(l)}_0 = \tanh(W^{(l)}_h s_h + b)` from the encoder's top-layer ``h``
  of both directions concatenated (``s_h``, size ``K = D * H_enc``), and for an LSTM decoder
  :math:`c^{(l)}_0 = \tanh(W^{(l)}_c s_c + b)` from the top ``c`` when the encoder has one (LSTM
  cells), else from ``s_h``. Works for any sizes, directions, layer counts and cell types.
* ``copy`` — decoder layer ``l`` starts from encoder layer ``L_enc - L_dec + l`` (the top ones),
  directions concatenated; needs ``hidden_size == K`` and ``num_layers <= L_enc``. An LSTM decoder
  gets ``c = 0`` from an encoder without cell state.
* ``zeros`` — zeros.

Decoding one step at a time (:meth:`Seq2Seq.step`, used by :mod:`rnnkit.decoding`) gives exactly
what :meth:`Seq2Seq.forward` gives under full teacher forcing. The state is a dict, batch first::

    hidden     tuple of (B, L, H)     decoder state (h,) or (h, c)
    memory     (B, Ts, K)             encoder outputs            (with attention)
    mask       (B, Ts) bool           True at real source steps  (with attention)
    keys       (B, Ts, K or A)        Attention.project_keys(memory), once per source
    feed       (B, H)                 previous h̃                 (with input feeding)
    attention  (B, Ts)                the last step's weights    (after the first step; for plots)

Teacher forcing: ``forward`` feeds the gold previous token with probability ``teacher_forcing``
per example and step, else the model's own argmax (scheduled sampling, Bengio et al. 2015). The
ratio is the attribute :attr:`Seq2Seq.teacher_forcing` (initialised from the config; a trainer
sets it per epoch for a schedule); it applies in training mode only, evaluation always feeds gold.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..cells import cell_spec
from ..config import StrictModel
from ..layers import Attention, dropin_for, lengths_to_mask
from ..layers.masking import check_lengths
from .base import Model, mixture_log_probs
from .encoder import EncoderConfig, SequenceEncoder


def encoder_output_size(cfg: EncoderConfig) -> int:
    """``D * H`` of the encoder's last stack: the size of its outputs and of its top state."""
    top = cfg.hidden_size[-1] if isinstance(cfg.hidden_size, list) else cfg.hidden_size
    return (2 if cfg.bidirectional else 1) * top


def top_layers(s: Tensor, num_directions: int, num_layers: int) -> Tensor:
    """``(L_enc*D, B, H)`` -> the top ``num_layers`` layers, directions concatenated: ``(B, num_layers, D*H)``."""
    LD, B, H = s.shape
    s = s.view(LD // num_directions, num_directions, B, H).permute(2, 0, 1, 3)  # (B, L_enc, D, H)
    return s.reshape(B, LD // num_directions, num_directions * H)[:, -num_layers:]


def _check_src(src: Tensor, cfg: EncoderConfig) -> None:
    if cfg.vocab_size is not None and src.dim() != 2:
        raise ValueError(f"Seq2Seq: src must be token ids (B, Ts), got shape {tuple(src.shape)}")
    if cfg.input_size is not None and (src.dim() != 3 or src.shape[-1] != cfg.input_size):
        raise ValueError(f"Seq2Seq: src must be feature frames (B, Ts, {cfg.input_size}), got shape {tuple(src.shape)}")


class Seq2SeqConfig(StrictModel):
    """Configuration of :class:`Seq2Seq` (unknown keys are errors)."""

    encoder: EncoderConfig = Field(
        description="the source side: vocab_size for token ids, or input_size for real-valued frames (B, Ts, F)"
    )
    tgt_vocab_size: int = Field(gt=1, description="target ids, including padding, bos and eos")
    embed_dim: int = Field(128, gt=0, description="target embedding size")
    padding_idx: int = Field(0, ge=0, description="target padding id (zero, frozen embedding)")
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    attention: Literal["none", "dot", "general", "additive"] = "general"
    attention_hidden_size: int | None = Field(None, gt=0, description="additive scores' hidden size (default K)")
    input_feeding: bool = Field(False, description="Luong: feed the previous attentional vector h̃ with the input")
    dropout: float = Field(0.0, ge=0, lt=1, description="on target embeddings, between layers, on h̃")
    bridge: Literal["linear", "zeros", "copy"] = "linear"
    teacher_forcing: float = Field(1.0, ge=0, le=1, description="probability of feeding the gold token")

    @model_validator(mode="after")
    def _check(self):
        enc = self.encoder
        if self.padding_idx >= self.tgt_vocab_size:
            raise ValueError(f"padding_idx must be < tgt_vocab_size ({self.tgt_vocab_size}), got {self.padding_idx}")
        K = encoder_output_size(enc)
        if self.attention == "dot" and self.hidden_size != K:
            raise ValueError(
                f"attention='dot' needs the decoder's hidden_size ({self.hidden_size}) to equal the encoder's "
                f"output size {K} (directions x top hidden size); use 'general' or 'additive' for different sizes"
            )
        if self.attention_hidden_size is not None and self.attention != "additive":
            raise ValueError(f"attention_hidden_size is only used by attention='additive', not {self.attention!r}")
        if self.input_feeding and self.attention == "none":
            raise ValueError("input_feeding feeds the attentional vector, so it needs attention != 'none'")
        if self.bridge == "copy":
            enc_layers = 1 if isinstance(enc.hidden_size, list) else enc.num_layers
            if self.hidden_size != K:
                raise ValueError(
                    f"bridge='copy' needs the decoder's hidden_size ({self.hidden_size}) to equal the encoder's "
                    f"state size {K} (directions x top hidden size); use bridge='linear'"
                )
            if self.num_layers > enc_layers:
                raise ValueError(
                    f"bridge='copy' needs num_layers ({self.num_layers}) <= the encoder's top stack layers "
                    f"({enc_layers}); use bridge='linear'"
                )
        return self


class Seq2Seq(Model):
    """Encoder–decoder with optional Luong/Bahdanau attention, input feeding and scheduled sampling.

    ``forward(src (B, Ts), src_lengths (B,) | None, tgt_in (B, Tt), teacher_forcing=None)
    -> (logits (B, Tt, V), attention weights (B, Tt, Ts) or None)``. ``tgt_in`` starts with ``bos``;
    its padding is harmless (mask it in the loss: :meth:`loss`). See the module docstring.
    """

    config_class = Seq2SeqConfig
    kind = "seq2seq"
    config: Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        K, H, L = self.encoder.output_size, cfg.hidden_size, cfg.num_layers
        self.embedding = nn.Embedding(cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=cfg.padding_idx)
        rnn = dropin_for(cell_spec(cfg.cell).cls)
        self.decoder = rnn(
            cfg.embed_dim + (H if cfg.input_feeding else 0),
            H,
            num_layers=L,
            batch_first=True,
            dropout=cfg.dropout if L > 1 else 0.0,
        )
        if cfg.attention == "none":
            self.attention, self.combine = None, None
        else:
            self.attention = Attention(H, K, score=cfg.attention, hidden_size=cfg.attention_hidden_size)
            self.combine = nn.Linear(K + H, H, bias=False)  # W_c of h̃ = tanh(W_c [c; h])
        self.bridge_h = self.bridge_c = None
        if cfg.bridge == "linear":
            self.bridge_h = nn.Linear(K, L * H)
            if cell_spec(cfg.cell).has_cell_state:
                self.bridge_c = nn.Linear(K, L * H)
        self.drop = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(H, cfg.tgt_vocab_size)
        #: probability of feeding the gold previous token in training (scheduled sampling)
        self.teacher_forcing: float = cfg.teacher_forcing

    # -- encoding ---------------------------------------------------------------------------------
    def _bridge(self, enc_state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """The encoder's last stack's final state (each ``(L_enc*D, B, S)``) -> decoder state, each (B, L, H)."""
        cfg = self.config
        D, L, H = self.encoder.num_directions, cfg.num_layers, cfg.hidden_size
        h_enc = enc_state[0]
        B = h_enc.shape[1]
        has_c = cell_spec(cfg.encoder.cell).has_cell_state  # the encoder's state carries a memory cell c
        n = cell_spec(cfg.cell).num_states
        if cfg.bridge == "zeros":
            return tuple(h_enc.new_zeros(B, L, H) for _ in range(n))
        if cfg.bridge == "copy":
            h = top_layers(h_enc, D, L)
            if n == 1:
                return (h,)
            return h, (top_layers(enc_state[1], D, L) if has_c else torch.zeros_like(h))
        s_h = top_layers(h_enc, D, 1)[:, 0]  # (B, K)
        h = torch.tanh(self.bridge_h(s_h)).view(B, L, H)
        if n == 1:
            return (h,)
        s_c = top_layers(enc_state[1], D, 1)[:, 0] if has_c else s_h
        return h, torch.tanh(self.bridge_c(s_c)).view(B, L, H)

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> dict[str, Any]:
        """Run the encoder once; returns the decoder's initial state nest (module docstring), batch first."""
        _check_src(src, self.config.encoder)
        B, Ts = src.shape[:2]
        src_lengths = check_lengths(src_lengths, B, Ts, src.device)
        memory, states = self.encoder(src, src_lengths)  # (B, Ts, K)
        state: dict[str, Any] = {"hidden": self._bridge(states[-1])}
        if self.attention is not None:
            mask = (
                lengths_to_mask(src_lengths, Ts)
                if src_lengths is not None
                else torch.ones(B, Ts, dtype=torch.bool, device=src.device)
            )
            state.update(memory=memory, mask=mask, keys=self.attention.project_keys(memory))
        if self.config.input_feeding:
            state["feed"] = memory.new_zeros(B, self.config.hidden_size)
        return state

    # -- decoding ---------------------------------------------------------------------------------
    def _recur(self, x: Tensor, hidden: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Decoder layer over ``x`` (B, T, I) from batch-first ``hidden`` -> outputs (B, T, H), new hidden."""
        hx = tuple(h.transpose(0, 1).contiguous() for h in hidden)  # (L, B, H)
        out, final = self.decoder(x, hx if len(hx) == 2 else hx[0])
        final = final if isinstance(final, tuple) else (final,)
        return out, tuple(h.transpose(0, 1) for h in final)

    def _attend(self, h: Tensor, state: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """Decoder outputs ``h`` (B, T, H) -> attentional vectors h̃ (B, T, H) (dropout applied), weights."""
        if self.attention is None:
            return self.drop(h), None
        ctx, w = self.attention(h, state["memory"], mask=state["mask"], projected_keys=state["keys"])
        return self.drop(torch.tanh(self.combine(torch.cat([ctx, h], -1)))), w  # (B, T, H), (B, T, Ts)

    def _one_step(self, emb: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Embedded tokens (B, E) -> logits (B, V) and the next state."""
        x = emb if "feed" not in state else torch.cat([emb, state["feed"]], -1)
        out, hidden = self._recur(x.unsqueeze(1), state["hidden"])
        att, w = self._attend(out, state)  # (B, 1, H), (B, 1, Ts)
        new = dict(state, hidden=hidden)
        if "feed" in state:
            new["feed"] = att[:, 0]
        if w is not None:
            new["attention"] = w[:, 0]
        return self.output(att[:, 0]), new

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """One decoder step: previous tokens (B,) -> logits (B, V), next state (for :mod:`rnnkit.decoding`)."""
        if tokens.dim() != 1:
            raise ValueError(f"Seq2Seq.step: tokens must have shape (B,), got {tuple(tokens.shape)}")
        return self._one_step(self.drop(self.embedding(tokens)), state)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt_in: Tensor,
        teacher_forcing: float | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits (B, Tt, V) for every target position and the attention weights (B, Tt, Ts) (or None).

        ``teacher_forcing`` overrides the ratio; by default :attr:`teacher_forcing` in training and 1.0
        in evaluation.
        """
        _check_src(src, self.config.encoder)
        if tgt_in.dim() != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"Seq2Seq: tgt_in must have shape ({src.shape[0]}, Tt) like src's batch, got {tuple(tgt_in.shape)}"
            )
        ratio = teacher_forcing if teacher_forcing is not None else (self.teacher_forcing if self.training else 1.0)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"Seq2Seq: teacher_forcing must be in [0, 1], got {ratio!r}")
        state = self.encode(src, src_lengths)
        emb = self.drop(self.embedding(tgt_in))  # (B, Tt, E)
        if ratio >= 1.0 and not self.config.input_feeding:
            # every input is known: one call of the (fused) decoder over the whole target
            out, _ = self._recur(emb, state["hidden"])  # (B, Tt, H)
            att, w = self._attend(out, state)
            return self.output(att), w
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            emb_t = emb[:, t]
            if t > 0 and ratio < 1.0:
                own = self.drop(self.embedding(logits[-1].argmax(-1)))  # the model's own previous choice
                gold = torch.rand(tgt_in.shape[0], 1, device=tgt_in.device) < ratio
                emb_t = torch.where(gold, emb_t, own)
            step_logits, state = self._one_step(emb_t, state)
            logits.append(step_logits)
            if "attention" in state:
                weights.append(state["attention"])
        return torch.stack(logits, 1), (torch.stack(weights, 1) if weights else None)

    def loss(
        self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor, tgt_lengths: Tensor
    ) -> Tensor:
        """Cross-entropy averaged over the real target tokens (``tgt_out`` padding past ``tgt_lengths`` ignored)."""
        logits, _ = self(src, src_lengths, tgt_in)
        tgt_lengths = check_lengths(tgt_lengths, tgt_out.shape[0], tgt_out.shape[1], tgt_out.device)
        mask = lengths_to_mask(tgt_lengths, tgt_out.shape[1])  # (B, Tt)
        return F.cross_entropy(logits[mask], tgt_out[mask])

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(0)
        enc = self.config.encoder
        if enc.vocab_size is not None:
            src = torch.randint(1, enc.vocab_size, (batch_size, length), generator=g)
        else:
            src = torch.randn(batch_size, length, enc.input_size, generator=g)
        lengths = torch.linspace(length, max(1, length // 2), batch_size).round().long()
        tgt = torch.randint(1, self.config.tgt_vocab_size, (batch_size, length), generator=g)
        return (src, lengths, tgt), {}


class Seq2SeqEnsembleConfig(StrictModel):
    member: Seq2SeqConfig
    size: int = Field(ge=1, le=64, description="members, each initialised at random on its own")


class Seq2SeqEnsemble(Model):
    """``size`` independent :class:`Seq2Seq` members behind the interface of one, for decoding and evaluation.

    Every output is the members' equal-weight mixture: ``forward`` returns ``log(mean_k softmax(logits_k))``
    (B, Tt, V) and :meth:`step` the same for one step, so greedy and beam search rank by the averaged
    next-token probabilities (each member keeps its own decoder state, under ``state["members"]``; the
    members' mean attention rides under ``"attention"`` for plots). Training is not the mixture's: use
    :meth:`member_outputs` (or :meth:`loss`, the mean of the members' own losses) so that each member learns
    on its own, its gradient being its own loss's divided by ``size``. Members share no parameter.
    """

    config_class = Seq2SeqEnsembleConfig
    kind = "seq2seq-ensemble"
    config: Seq2SeqEnsembleConfig

    def __init__(self, config: Seq2SeqEnsembleConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.members = nn.ModuleList(Seq2Seq(self.config.member) for _ in range(self.config.size))

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> dict[str, Any]:
        return {"members": [m.encode(src, src_lengths) for m in self.members]}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """One step of every member from its own state -> the mixture's log-probabilities (B, V), next state."""
        pairs = [m.step(tokens, s) for m, s in zip(self.members, state["members"], strict=True)]
        logits, states = [x for x, _ in pairs], [s for _, s in pairs]
        new: dict[str, Any] = {"members": states}
        if all("attention" in s for s in states):
            new["attention"] = torch.stack([s["attention"] for s in states]).mean(0)
        return mixture_log_probs(logits), new

    def member_outputs(
        self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, teacher_forcing: float | None = None
    ) -> list[tuple[Tensor, Tensor | None]]:
        """Each member's own ``forward``: logits (B, Tt, V) and attention weights (each member feeding its own
        choices under scheduled sampling)."""
        return [m(src, src_lengths, tgt_in, teacher_forcing=teacher_forcing) for m in self.members]

    def forward(
        self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, teacher_forcing: float | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The mixture's log-probabilities (B, Tt, V) and the members' mean attention weights (or None)."""
        logits, weights = zip(*self.member_outputs(src, src_lengths, tgt_in, teacher_forcing), strict=True)
        mean = None if weights[0] is None else torch.stack(weights).mean(0)
        return mixture_log_probs(list(logits)), mean

    def loss(
        self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor, tgt_lengths: Tensor
    ) -> Tensor:
        """The mean of the members' own losses (not the mixture's)."""
        return torch.stack([m.loss(src, src_lengths, tgt_in, tgt_out, tgt_lengths) for m in self.members]).mean()

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        return self.members[0].example_inputs(batch_size, length)
