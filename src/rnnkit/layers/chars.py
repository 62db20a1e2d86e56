r"""Character-level word features: each word's characters -> one vector, for taggers and other word models.

::

    chars (B, T, W) char ids, 0 = padding -> embedding (B, T, W, E)
      "cnn":  Conv1d over the characters (kernel k, F filters, tanh) -> max over each word's real characters
      "lstm": BiLSTM over each word's characters -> [last forward state; last backward state]
    -> (B, T, output_size), zero for padded words (a word with no characters)

The CNN is Ma & Hovy (2016)'s character encoder; the BiLSTM is Lample et al. (2016)'s and Plank, Søgaard &
Goldberg (2016)'s. Both see each word alone (no padding characters leak in: the CNN masks them before the
max, the BiLSTM runs on each word's own length), so a word's vector does not depend on the batch around it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .rnn import LSTM


class CharWordEncoder(nn.Module):
    """``forward(chars (B, T, W) long) -> (B, T, output_size)``; see the module docstring.

    Args:
        num_chars: size of the character vocabulary (id 0 is padding).
        kind: ``"cnn"`` or ``"lstm"``.
        embed_dim: character embedding size E.
        hidden_size: CNN filters F (output F), or BiLSTM units per direction H (output 2H).
        kernel_size: CNN window over characters (odd; padded so every character is a window centre).
    """

    def __init__(
        self,
        num_chars: int,
        kind: Literal["cnn", "lstm"] = "cnn",
        embed_dim: int = 32,
        hidden_size: int = 64,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if num_chars < 2:
            raise ValueError(f"CharWordEncoder: num_chars must be >= 2 (0 is padding), got {num_chars}")
        if kind not in ("cnn", "lstm"):
            raise ValueError(f"CharWordEncoder: kind must be 'cnn' or 'lstm', got {kind!r}")
        if embed_dim <= 0 or hidden_size <= 0:
            raise ValueError(f"CharWordEncoder: sizes must be positive, got {embed_dim}, {hidden_size}")
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"CharWordEncoder: kernel_size must be a positive odd number, got {kernel_size}")
        self.kind = kind
        self.embedding = nn.Embedding(num_chars, embed_dim, padding_idx=0)
        if kind == "cnn":
            self.conv = nn.Conv1d(embed_dim, hidden_size, kernel_size, padding=kernel_size // 2)
            self.output_size = hidden_size
        else:
            self.lstm = LSTM(embed_dim, hidden_size, batch_first=True, bidirectional=True)
            self.output_size = 2 * hidden_size

    def forward(self, chars: Tensor) -> Tensor:
        if chars.dim() != 3 or chars.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"CharWordEncoder: expected char ids (B, T, W) of integers, got {chars.dtype} "
                             f"{tuple(chars.shape)}")  # fmt: skip
        B, T, W = chars.shape
        word_len = (chars != 0).sum(-1)  # (B, T)
        out = chars.new_zeros((B, T, self.output_size), dtype=self.embedding.weight.dtype)
        real = word_len > 0
        if W == 0 or not bool(real.any()):
            return out
        words = chars[real]  # (N, W): only real words, so padding words cost nothing
        lengths = word_len[real]
        words = words[:, : int(lengths.max())]
        e = self.embedding(words)  # (N, W', E)
        if self.kind == "cnn":
            h = torch.tanh(self.conv(e.transpose(1, 2)))  # (N, F, W')
            pad = (words == 0).unsqueeze(1)  # (N, 1, W')
            vec = h.masked_fill(pad, float("-inf")).amax(-1)
        else:
            # characters are left-aligned (ids then zeros), so each word's own length is its real span
            _, (h_n, _) = self.lstm(e, lengths=lengths)  # h_n (2, N, H): the forward state at the word's end,
            vec = torch.cat([h_n[0], h_n[1]], dim=-1)  # the backward one at its first character
        out[real] = vec.to(out.dtype)
        return out
