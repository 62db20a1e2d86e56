"""One time step each, written from the equations (see :mod:`rnnkit.cells.base` for the protocol)."""

from .base import RecurrentCell, State
from .classic import GRUCell, LSTMCell, RNNCell
from .layernorm import LayerNormGRUCell, LayerNormLSTMCell
from .minimal import MinGRUCell, MinLSTMCell

__all__ = [
    "RecurrentCell",
    "State",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "MinGRUCell",
    "MinLSTMCell",
]
