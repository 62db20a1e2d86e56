"""One time step each, written from the equations (see :mod:`rnnkit.cells.base` for the protocol and for
exactly how ``cell(x, state)`` differs from ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``).

Every cell registers itself under its config name (:func:`register_cell`); :func:`cell_names` lists them and
:func:`cell_spec` looks one up."""

from .base import (
    CellSpec,
    RecurrentCell,
    ShapeError,
    State,
    cell_names,
    cell_spec,
    register_cell,
    unregister_cell,
)
from .classic import GRUCell, LSTMCell, RNNCell
from .layernorm import LayerNormGRUCell, LayerNormLSTMCell
from .minimal import MinGRUCell, MinLSTMCell

__all__ = [
    "RecurrentCell",
    "State",
    "ShapeError",
    "CellSpec",
    "cell_names",
    "cell_spec",
    "register_cell",
    "unregister_cell",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "MinGRUCell",
    "MinLSTMCell",
]
