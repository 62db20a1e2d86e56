"""Lengths, masks and padded-sequence helpers (batch-first: ``(B, T, ...)``).

``lengths`` is a ``(B,)`` integer tensor of real steps; positions ``t >= lengths[b]`` are padding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_lengths(lengths: Tensor | list[int] | None, batch_size: int, max_len: int, device) -> Tensor | None:
    """Validate ``lengths`` against a ``(B, T, ...)`` batch and return it as a long tensor on ``device``."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(f"lengths must have shape ({batch_size},), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if batch_size and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(
            f"lengths must lie in [1, {max_len}] (the padded length), got min {int(lengths.min())}, "
            f"max {int(lengths.max())}"
        )
    return lengths.to(device=device, dtype=torch.long)


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool mask, True at real steps."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def mask_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero ``x`` (B, T, ...) at padded steps."""
    if lengths is None:
        return x
    mask = lengths_to_mask(lengths, x.shape[1]).to(x.dtype)
    return x * mask.view(*mask.shape, *([1] * (x.dim() - 2)))


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length; padding stays where it is.

    ``[a, b, c, pad] -> [c, b, a, pad]``. Applying it twice gives back ``x``.
    """
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]  # (1, T)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def last_valid(x: Tensor, lengths: Tensor | None) -> Tensor:
    """The output at each sequence's last real step: ``(B, T, H) -> (B, H)``."""
    if lengths is None:
        return x[:, -1]
    idx = (lengths - 1).view(-1, 1, *([1] * (x.dim() - 2))).expand(-1, 1, *x.shape[2:])
    return x.gather(1, idx).squeeze(1)
