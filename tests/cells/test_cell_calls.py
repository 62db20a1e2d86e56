"""``cell(x, state)`` for every rnnkit cell: unbatched input, strict state shapes, device= / dtype=."""

import pytest
import torch

from rnnkit.cells import (
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    RNNCell,
    ShapeError,
)

I, H = 3, 5
CELLS = [RNNCell, GRUCell, LSTMCell, LayerNormLSTMCell, LayerNormGRUCell, MinGRUCell, MinLSTMCell]


def zero_state(cell, *batch):
    return tuple(torch.randn(*batch, s, dtype=torch.float64) for s in cell.state_sizes)


@pytest.mark.parametrize("cls", CELLS)
def test_unbatched_input_gives_unbatched_output(cls):
    torch.manual_seed(0)
    cell = cls(I, H, dtype=torch.float64)
    x = torch.randn(I, dtype=torch.float64)
    state = zero_state(cell)
    y, new = cell(x, state)
    y_b, new_b = cell(x.unsqueeze(0), tuple(s.unsqueeze(0) for s in state))
    assert y.shape == (cell.output_size,)
    torch.testing.assert_close(y, y_b.squeeze(0))
    for a, b in zip(new, new_b, strict=True):
        torch.testing.assert_close(a, b.squeeze(0))
    y0, _ = cell(x)  # zeros
    assert y0.shape == (cell.output_size,)


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize(
    "batch, message",
    [
        ((1,), "Input batch size 3 doesn't match hidden0 batch size 1"),
        (("size",), "hidden0 has inconsistent hidden_size: got 1"),
        ((3, 1, 1), "to be 1D or 2D, got 4D instead"),
        (("1-D",), "a 2-D input needs 2-D states"),
    ],
)
def test_wrong_state_shapes_are_errors_not_broadcasts(cls, batch, message):
    cell = cls(I, H)
    x = torch.randn(3, I)
    good = [torch.zeros(3, s) for s in cell.state_sizes]
    if batch == ("size",):
        bad = torch.zeros(3, 1)
    elif batch == ("1-D",):
        bad = torch.zeros(cell.state_sizes[0])
    else:
        bad = torch.zeros(*batch, cell.state_sizes[0])
    with pytest.raises(ValueError, match=message):
        cell(x, (bad, *good[1:]))


def test_lstm_cell_state_of_batch_one_is_rejected():
    """A (B, 1) cell state used to broadcast silently over the hidden units."""
    cell = LSTMCell(I, H)
    with pytest.raises(ShapeError, match="hidden1 has inconsistent hidden_size: got 1, expected 5"):
        cell(torch.randn(3, I), (torch.zeros(3, H), torch.zeros(3, 1)))
    with pytest.raises(ShapeError, match="expected a state of 2 tensor"):
        cell(torch.randn(3, I), (torch.zeros(3, H),))
    proj = LSTMCell(I, H, proj_size=2)
    y, (h, c) = proj(torch.randn(3, I), (torch.zeros(3, 2), torch.zeros(3, H)))
    assert y.shape == h.shape == (3, 2) and c.shape == (3, H)
    with pytest.raises(ShapeError, match="hidden0 has inconsistent hidden_size: got 5, expected 2"):
        proj(torch.randn(3, I), (torch.zeros(3, H), torch.zeros(3, H)))


def test_shape_error_is_both_runtime_and_value_error():
    assert issubclass(ShapeError, RuntimeError) and issubclass(ShapeError, ValueError)


@pytest.mark.parametrize("cls", CELLS)
def test_device_and_dtype_arguments(cls):
    cell = cls(I, H, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in cell.parameters())
    y, _ = cell(torch.randn(2, I, dtype=torch.float64))
    assert y.dtype == torch.float64
    before = torch.get_rng_state()
    meta = cls(I, H, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert torch.equal(before, torch.get_rng_state())  # nothing drawn for meta tensors
