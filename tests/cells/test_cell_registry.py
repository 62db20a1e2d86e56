"""The cell registry: every rnnkit cell is known by its config name, and declares what the layers read from it
(its state components, its fused kernel, its fast loop); a bad registration or an unknown name is refused in
one line."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import (
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    RecurrentCell,
    RNNCell,
    cell_names,
    cell_spec,
    register_cell,
    unregister_cell,
)

BUILT_IN = {
    "lstm": (LSTMCell, True, "lstm"),
    "gru": (GRUCell, False, "gru"),
    "rnn_tanh": (RNNCell, False, "rnn_tanh"),
    "rnn_relu": (RNNCell, False, "rnn_relu"),
    "ln_lstm": (LayerNormLSTMCell, True, None),
    "ln_gru": (LayerNormGRUCell, False, None),
    "min_gru": (MinGRUCell, False, None),
    "min_lstm": (MinLSTMCell, False, None),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_cell_is_registered_with_its_capabilities(name):
    cls, has_c, fused = BUILT_IN[name]
    spec = cell_spec(name)
    assert spec.cls is cls and spec.name == name
    assert spec.has_cell_state is has_c and spec.num_states == (2 if has_c else 1)
    torch.manual_seed(0)
    cell = spec.build(3, 5)
    assert type(cell) is cls and cell.fused_kind() == fused
    assert len(cell.state_sizes) == spec.num_states  # state_names and state_sizes agree
    assert spec.accepts("forget_bias") is has_c  # the LSTMs take it, no other cell does


def test_names_list_every_cell_once():
    assert sorted(cell_names()) == sorted(BUILT_IN)


def test_a_name_fixes_constructor_arguments():
    assert cell_spec("rnn_relu").build(2, 3).nonlinearity == "relu"
    assert cell_spec("rnn_tanh").kwargs == {"nonlinearity": "tanh"}
    assert not cell_spec("rnn_relu").accepts("nonlinearity")  # fixed by the name, not an option


def test_fast_loop_and_fused_kernel_are_not_inherited():
    """A subclass that changes the equations must not run its parent's kernel or hand-written loop."""

    class Peephole(LSTMCell):
        pass

    assert LSTMCell.fused_mode == "lstm" and LSTMCell.fast_loop == "lstm"
    assert Peephole.fused_mode is None and Peephole.fast_loop is None
    assert Peephole(2, 3).fused_kind() is None
    assert Peephole.state_names == ("h", "c")  # the state layout is inherited

    class Relu(RNNCell):
        pass

    assert Relu(2, 3, nonlinearity="relu").fused_kind() is None


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown cell 'nope'; known cells: .*lstm.*min_gru") as e:
        cell_spec("nope")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        unregister_cell("nope")


@pytest.mark.parametrize("name", ["", "LSTM", "1cell", "with space", "x" * 33, 3])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="cell name must be lower case letters, digits and _"):
        register_cell(name)


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="cell name 'lstm' is taken by LSTMCell"):
        register_cell("lstm")(GRUCell)
    assert cell_spec("lstm").cls is LSTMCell


def test_only_cells_register():
    with pytest.raises(TypeError, match=r"register_cell\('not_a_cell'\): .* is not a RecurrentCell subclass"):
        register_cell("not_a_cell")(torch.nn.Linear)
    assert "not_a_cell" not in cell_names()


def test_register_and_unregister():
    class Copy(RecurrentCell):
        pass

    register_cell("test_copy")(Copy)
    try:
        assert cell_spec("test_copy").cls is Copy and cell_names()[-1] == "test_copy"
    finally:
        unregister_cell("test_copy")
    assert "test_copy" not in cell_names()
