"""One time step each, written from the equations (see :mod:`rnnkit.cells.base` for the protocol and for
exactly how ``cell(x, state)`` differs from ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``)."""

from .base import RecurrentCell, ShapeError, State
from .classic import GRUCell, LSTMCell, RNNCell
from .layernorm import LayerNormGRUCell, LayerNormLSTMCell
from .minimal import MinGRUCell, MinLSTMCell

__all__ = [
    "RecurrentCell",
    "State",
    "ShapeError",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "MinGRUCell",
    "MinLSTMCell",
]
