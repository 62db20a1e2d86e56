"""Whole-sequence layers: the generic loop, drop-in RNN/LSTM/GRU, attention, masking and pooling."""

from .masking import last_valid, lengths_to_mask, mask_padded, reverse_padded

__all__ = ["last_valid", "lengths_to_mask", "mask_padded", "reverse_padded"]
