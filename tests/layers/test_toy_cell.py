"""A cell defined and registered here, and nothing else edited, runs through ``Recurrent`` (stacked, both
directions, lengths, regularisers, ``step``) and through the models' configs (``cell=<its name>``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnkit.cells import RecurrentCell, cell_names, register_cell, unregister_cell
from rnnkit.config import format_validation_error
from rnnkit.layers import Recurrent
from rnnkit.models import Classifier
from rnnkit.models.base import load_model, save_model
from rnnkit.models.encoder import EncoderConfig, SequenceEncoder

NAME = "test_indrnn"


class IndRNNCell(RecurrentCell):
    """IndRNN (Li et al. 2018): ``h_t = relu(W_ih x_t + b + u * h_{t-1})``, one recurrent weight per unit."""

    recurrent_weight_name = None

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.output_size, self.state_sizes = hidden_size, (hidden_size,)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project_input(self, x):
        return nn.functional.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, xp, state, *, weight_hh=None, h_mask=None):
        h = torch.relu(xp + self.weight_hh * state[0])
        return h, (h,)


@pytest.fixture
def registered():
    register_cell(NAME)(IndRNNCell)
    yield NAME
    unregister_cell(NAME)
    assert NAME not in cell_names()


def test_recurrent_runs_the_toy_cell(registered):
    torch.manual_seed(0)
    layer = Recurrent(IndRNNCell, 4, 8, num_layers=2, bidirectional=True, dropout=0.2, zoneout=0.1).eval()
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 3, 1])
    out, (h,) = layer(x, lengths=lengths)
    assert layer.path == layer.last_path == "loop"
    assert layer._loop_reason(False) == "IndRNNCell has no fused kernel"
    assert out.shape == (3, 5, 16) and h.shape == (4, 3, 8)
    alone, _ = layer(x[1:2, :3])
    torch.testing.assert_close(out[1:2, :3], alone)
    assert bool((out[1, 3:] == 0).all())
    with pytest.raises(ValueError, match="recurrent_dropout and weight_drop need a hidden-to-hidden weight"):
        Recurrent(IndRNNCell, 4, 8, weight_drop=0.5)


def test_step_equals_forward_for_the_toy_cell(registered):
    torch.manual_seed(0)
    layer = Recurrent(IndRNNCell, 3, 5, num_layers=2).eval()
    x = torch.randn(2, 4, 3)
    out, final = layer(x)
    state = None
    for t in range(4):
        y, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y, out[:, t])
    torch.testing.assert_close(state, final)


def test_configs_take_the_registered_name(registered):
    torch.manual_seed(0)
    enc = SequenceEncoder(vocab_size=20, embed_dim=4, hidden_size=6, cell=NAME, bidirectional=True)
    (stack,) = enc.stacks
    assert isinstance(stack, Recurrent) and isinstance(stack.cells[0][0], IndRNNCell)
    assert EncoderConfig.model_json_schema()["properties"]["cell"]["enum"][-1] == NAME
    model = Classifier(encoder=dict(vocab_size=20, embed_dim=4, hidden_size=6, cell=NAME), num_classes=3).eval()
    ids, lengths = torch.randint(1, 20, (2, 7)), torch.tensor([7, 4])
    logits = model(ids, lengths)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(model(ids[1:, :4], lengths[1:]), logits[1:])


def test_a_model_with_the_toy_cell_saves_and_loads(registered, tmp_path):
    torch.manual_seed(0)
    model = Classifier(encoder=dict(input_size=3, hidden_size=4, cell=NAME), num_classes=2).eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m").eval()
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(again(x), model(x))


def test_an_unregistered_name_is_a_one_line_config_error():
    assert NAME not in cell_names()
    with pytest.raises(Exception) as e:
        EncoderConfig(vocab_size=5, cell=NAME)
    line = format_validation_error(e.value)
    assert line == (f"config: cell: Input should be a registered cell: {', '.join(cell_names())} (got '{NAME}')"), line
    with pytest.raises(Exception, match="forget_bias applies to LSTM cells, not 'gru'"):
        EncoderConfig(vocab_size=5, cell="gru", forget_bias=1.0)
