"""The truncated-BPTT stream of a language model: one long token stream as ``rows`` parallel rows, in windows.

::

    ids   = [b, t1, t2, ..., tN]          b: a boundary token (the first input), t1..tN: the text's tokens
    row r = the contiguous slice ids[s_r : s_r + n_r + 1]; inputs are its first n_r ids, targets its last n_r
    rows  = min(rows, N) rows of n_r = N // rows tokens, the first N % rows rows one token longer
    windows: columns [0, bptt), [bptt, 2*bptt), ...; the last window also takes the longer rows' extra column

Row ``r + 1`` continues exactly where row ``r`` stops, so every token ``t1..tN`` is a target exactly
once per pass (nothing is dropped to make the rows equal: the longer rows' last window carries
``lengths``). Window ``k + 1`` of a row continues window ``k``, so a model can carry its state from
one window to the next and see further back than ``bptt`` steps, while gradients stop at the window
edge. Every window has at least one real step in every row. The batches are the same every pass, and
they split along dim 0 (rows) for data parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from .text import PAD_ID


class BPTTStream:
    """``BPTTStream(ids, rows, bptt)``: iterate ``{"x" (R, W), "y" (R, W), "window": k}`` batches, plus
    ``"lengths" (R,)`` in a window whose rows are not all ``W`` long. Padding is :data:`PAD_ID`."""

    def __init__(self, ids: Sequence[int] | Tensor, rows: int, bptt: int) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() != 1 or len(ids) < 2:
            raise ValueError(
                f"BPTTStream: need a 1-D stream of at least 2 ids (a boundary and a token), got {len(ids)}"
            )
        if rows < 1 or bptt < 1:
            raise ValueError(f"BPTTStream: rows and bptt must be >= 1, got rows={rows}, bptt={bptt}")
        n = len(ids) - 1  # tokens to predict
        R = min(rows, n)
        L, extra = divmod(n, R)
        self.row_lengths = torch.full((R,), L, dtype=torch.long)
        self.row_lengths[:extra] += 1
        starts = torch.cumsum(self.row_lengths, 0) - self.row_lengths  # (R,)
        width = L + (extra > 0)
        pos = starts[:, None] + torch.arange(width)[None, :]  # (R, width) index of each input in ids
        real = torch.arange(width)[None, :] < self.row_lengths[:, None]
        self.inputs = torch.where(real, ids[pos.clamp(max=n - 1)], PAD_ID)  # (R, width)
        self.targets = torch.where(real, ids[(pos + 1).clamp(max=n)], PAD_ID)
        edges = list(range(0, L, bptt)) + [width]
        self.windows = list(zip(edges[:-1], edges[1:], strict=True))
        self.num_tokens = n

    @property
    def rows(self) -> int:
        return len(self.row_lengths)

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[dict]:
        for k, (a, b) in enumerate(self.windows):
            batch = {"x": self.inputs[:, a:b].contiguous(), "y": self.targets[:, a:b].contiguous(), "window": k}
            lengths = (self.row_lengths - a).clamp(max=b - a)
            if bool((lengths < b - a).any()):
                batch["lengths"] = lengths
            yield batch
