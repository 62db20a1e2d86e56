"""PyTorch's cell tests, run on torch.nn's cells (the control) and rnnkit's, called torch's way (see
``Cells.call`` in conftest.py: rnnkit's cells return ``(y, state)``, the only documented difference).

Mirrors test/test_nn.py (``test_RNN_cell``, ``test_LSTM_cell``, ``test_RNN_cell_no_broadcasting``,
``test_LSTM_cell_forward_input_size``, ``test_LSTM_cell_forward_hidden_size``,
``test_lstmcell_backward_only_one_output_grad``) and test/test_modules.py's ``module_db`` entries
(``module_inputs_torch_nn_RNN_GRU_Cell`` / ``_LSTMCell``: the no-batch-dim samples;
``module_error_inputs_torch_nn_RNN_GRU_Cell`` / ``_LSTMCell``: the error messages).
"""

from __future__ import annotations

import pytest
import torch

CELLS = ("RNNCell", "GRUCell", "LSTMCell")


def state(mode, *shape, requires_grad=False):
    make = lambda: torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)  # noqa: E731
    return (make(), make()) if mode == "LSTMCell" else make()


def flat(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize(
    "mode, kwargs",
    [(m, {}) for m in CELLS] + [(m, {"bias": False}) for m in CELLS] + [("RNNCell", {"nonlinearity": "relu"})],
)
def test_cells_match_torch_batched_and_unbatched(cells, mode, kwargs):
    """test_RNN_cell / test_LSTM_cell (six steps, then backward) and module_db's no-batch-dim samples: a 1-D
    input gives 1-D states equal to the batched call's row, all equal to torch's cell in float64."""
    cell = cells(mode, 5, 10, dtype=torch.float64, **kwargs)
    ref = getattr(torch.nn, mode)(5, 10, dtype=torch.float64, **kwargs)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    hx = state(mode, 3, 10, requires_grad=True)
    ours, theirs = hx, hx
    for _ in range(6):
        ours, theirs = cells.call(cell, x, ours), ref(x, theirs)
    for a, b in zip(flat(ours), flat(theirs), strict=True):
        torch.testing.assert_close(a, b)
    leaves = [x, *flat(hx), *cell.parameters()]
    g_ours = torch.autograd.grad(sum(s.sum() for s in flat(ours)), leaves)
    g_theirs = torch.autograd.grad(sum(s.sum() for s in flat(theirs)), [x, *flat(hx), *ref.parameters()])
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b)
    # unbatched: (I,) with (H,) states -> (H,) states, equal to the batched row
    x1 = torch.randn(5, dtype=torch.float64)
    hx1 = state(mode, 10)
    one = cells.call(cell, x1, hx1)
    row = cells.call(
        cell, x1.unsqueeze(0), tuple(h.unsqueeze(0) for h in flat(hx1)) if mode == "LSTMCell" else hx1.unsqueeze(0)
    )
    for a, b, c in zip(flat(one), flat(row), flat(ref(x1, hx1)), strict=True):
        assert a.shape == (10,)
        torch.testing.assert_close(a, b.squeeze(0))
        torch.testing.assert_close(a, c)
    assert all(s.shape == (10,) for s in flat(cells.call(cell, x1)))  # no state: zeros


@pytest.mark.parametrize("mode", CELLS)
def test_RNN_cell_no_broadcasting(cells, mode):
    """test_RNN_cell_no_broadcasting, module_error_inputs_torch_nn_RNN_GRU_Cell / _LSTMCell: a state of batch 1
    for a batch of 3, a (3, 1) state, a (3, 1) input or a 4-D state is an error with torch's message, never a
    broadcast."""
    cell = cells(mode, 10, 20)
    lstm = mode == "LSTMCell"
    good = torch.randn(3, 20)

    def hx(bad, where=0):
        return ((bad, good) if where == 0 else (good, bad)) if lstm else bad

    cases = [
        (
            torch.randn(3, 10),
            hx(torch.randn(1, 20)),
            RuntimeError,
            "Input batch size 3 doesn't match hidden0 batch size 1",
        ),
        (
            torch.randn(3, 10),
            hx(torch.randn(5, 20)),
            RuntimeError,
            "Input batch size 3 doesn't match hidden0 batch size 5",
        ),
        (
            torch.randn(3, 10),
            hx(torch.randn(3, 1)),
            RuntimeError,
            "hidden0 has inconsistent hidden_size: got 1, expected 20",
        ),
        (
            torch.randn(3, 10),
            hx(torch.randn(3, 21)),
            RuntimeError,
            "hidden0 has inconsistent hidden_size: got 21, expected 20",
        ),
        (torch.randn(3, 1), hx(good), RuntimeError, "input has inconsistent input_size: got 1 expected 10"),
        (torch.randn(3, 11), hx(good), RuntimeError, "input has inconsistent input_size: got 11 expected 10"),
        (
            torch.randn(3, 10),
            hx(torch.randn(3, 1, 1, 20)),
            ValueError,
            r"Expected (hidden|hx\[0\]) to be 1D or 2D, got 4D instead",
        ),
        (torch.randn(2, 3, 10), None, ValueError, "Expected input to be 1D or 2D, got 3D instead"),
    ]
    if lstm:
        cases += [
            (
                torch.randn(3, 10),
                hx(torch.randn(1, 20), 1),
                RuntimeError,
                "Input batch size 3 doesn't match hidden1 batch size 1",
            ),
            (
                torch.randn(3, 10),
                hx(torch.randn(3, 1), 1),
                RuntimeError,
                "hidden1 has inconsistent hidden_size: got 1, expected 20",
            ),
        ]
    for x, h, error, message in cases:
        with pytest.raises(error, match=message):
            cells.call(cell, x, h)
        if not cells.is_torch and error is RuntimeError:
            with pytest.raises(ValueError):  # rnnkit's shape errors are ValueErrors too
                cells.call(cell, x, h)


@pytest.mark.parametrize("mode", CELLS)
def test_cell_factory_kwargs(cells, mode):
    """device= and dtype= as in torch's cells; the meta device allocates (and draws) nothing."""
    cell = cells(mode, 4, 6, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in cell.parameters())
    before = torch.get_rng_state()
    meta = cells(mode, 4, 6, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert torch.equal(before, torch.get_rng_state())


def test_lstmcell_backward_only_one_output_grad(cells):
    """test_lstmcell_backward_only_one_output_grad: a loss on h alone or c alone reaches the input."""
    cell = cells("LSTMCell", 2, 3).double()
    x = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    for i in range(2):
        (g,) = torch.autograd.grad(cells.call(cell, x)[i].sum(), x)
        assert g.abs().sum() > 0
