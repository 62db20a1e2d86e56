"""One time step each, written from the equations (see :mod:`rnnkit.cells.base` for the protocol)."""

from .base import RecurrentCell, State
from .classic import GRUCell, LSTMCell, RNNCell

__all__ = ["RecurrentCell", "State", "RNNCell", "LSTMCell", "GRUCell"]
