"""Whole-sequence layers: the generic loop, drop-in RNN/LSTM/GRU, attention, masking and pooling."""

from .attention import Attention, masked_softmax
from .chars import CharWordEncoder
from .masking import last_valid, lengths_to_mask, mask_padded, reverse_padded
from .pooling import AttentionPooling, Pooling, bidirectional_last, last_pool, max_pool, mean_pool
from .recurrent import Recurrent, locked_dropout
from .regularisation import Regularisation
from .rnn import GRU, LSTM, RNN, dropin_for

__all__ = [
    "Recurrent",
    "Regularisation",
    "dropin_for",
    "locked_dropout",
    "RNN",
    "LSTM",
    "GRU",
    "last_valid",
    "lengths_to_mask",
    "mask_padded",
    "reverse_padded",
    "Attention",
    "CharWordEncoder",
    "masked_softmax",
    "AttentionPooling",
    "Pooling",
    "bidirectional_last",
    "last_pool",
    "max_pool",
    "mean_pool",
]
