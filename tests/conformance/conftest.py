"""The ``module`` fixture of the conformance suite: torch.nn's recurrent layers (the control: every test must
pass on them) and rnnkit's drop-ins under each ``implementation`` that serves a plain configuration.

The tests are PyTorch's own recurrent-layer tests (test/test_nn.py and the RNN/LSTM/GRU and cell entries of
test/test_modules.py's ``module_db``) restated for this suite; each names the test it mirrors.
"""

from __future__ import annotations

import pytest
import torch

import rnnkit.cells as rk_cells
import rnnkit.layers as rk_layers

IMPLEMENTATIONS = ("auto", "fused", "loop", "reference")


class Layers:
    """Builds ``RNN`` / ``LSTM`` / ``GRU`` from one family: ``torch.nn`` or rnnkit with a fixed ``implementation``."""

    def __init__(self, name: str, implementation: str | None) -> None:
        self.name, self.implementation = name, implementation

    @property
    def is_torch(self) -> bool:
        return self.implementation is None

    def __call__(self, mode: str, *args, **kwargs) -> torch.nn.RNNBase:
        if self.is_torch:
            return getattr(torch.nn, mode)(*args, **kwargs)
        return getattr(rk_layers, mode)(*args, implementation=self.implementation, **kwargs)

    def __repr__(self) -> str:
        return self.name


class Cells:
    """Builds ``RNNCell`` / ``LSTMCell`` / ``GRUCell`` and calls them torch's way: ``call(cell, x, hx)`` returns
    ``h`` (RNN, GRU) or ``(h, c)`` (LSTM) for both families (rnnkit's cells return ``(y, state)``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_torch(self) -> bool:
        return self.name == "torch"

    def __call__(self, mode: str, *args, **kwargs) -> torch.nn.Module:
        return getattr(torch.nn if self.is_torch else rk_cells, mode)(*args, **kwargs)

    def call(self, cell, x, hx=None):
        if self.is_torch:
            return cell(x, hx)
        _, state = cell(x, hx)
        return state[0] if len(state) == 1 else state

    def __repr__(self) -> str:
        return self.name


LAYER_FAMILIES = [Layers("torch", None)] + [Layers(f"rnnkit-{impl}", impl) for impl in IMPLEMENTATIONS]


@pytest.fixture(params=LAYER_FAMILIES, ids=repr)
def module(request) -> Layers:
    return request.param


@pytest.fixture(params=[Cells("torch"), Cells("rnnkit")], ids=repr)
def cells(request) -> Cells:
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
