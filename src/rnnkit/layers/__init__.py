"""Whole-sequence layers: the generic loop, drop-in RNN/LSTM/GRU, attention, masking and pooling."""

from .masking import last_valid, lengths_to_mask, mask_padded, reverse_padded
from .recurrent import Recurrent, locked_dropout
from .rnn import GRU, LSTM, RNN

__all__ = [
    "Recurrent",
    "locked_dropout",
    "RNN",
    "LSTM",
    "GRU",
    "last_valid",
    "lengths_to_mask",
    "mask_padded",
    "reverse_padded",
]
