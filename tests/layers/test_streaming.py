"""``step(x_t, state)``: stepping a sequence equals the whole-sequence forward, for every layer kind."""

import pytest
import torch

from rnnkit.cells import GRUCell, LayerNormLSTMCell, LSTMCell, MinGRUCell, RNNCell
from rnnkit.layers import GRU, LSTM, RNN, Recurrent

I, H, B, T = 4, 5, 3, 7

LAYERS = {
    "lstm": lambda L: LSTM(I, H, num_layers=L, batch_first=True),
    "lstm_proj": lambda L: LSTM(I, H, num_layers=L, batch_first=True, proj_size=3),
    "gru": lambda L: GRU(I, H, num_layers=L, batch_first=True),
    "rnn_relu": lambda L: RNN(I, H, num_layers=L, batch_first=True, nonlinearity="relu"),
    "rnn_tanh_cell": lambda L: Recurrent(RNNCell, I, H, num_layers=L),
    "lstm_cell": lambda L: Recurrent(LSTMCell, I, H, num_layers=L),
    "gru_cell": lambda L: Recurrent(GRUCell, I, H, num_layers=L),
    "ln_lstm": lambda L: Recurrent(LayerNormLSTMCell, I, H, num_layers=L),
    "min_gru": lambda L: Recurrent(MinGRUCell, I, H, num_layers=L),
    "lstm_zoneout": lambda L: LSTM(I, H, num_layers=L, batch_first=True, zoneout=0.3, dropout=0.2 * (L > 1)),
    "ln_lstm_zoneout": lambda L: Recurrent(LayerNormLSTMCell, I, H, num_layers=L, zoneout=0.3),
}


def as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
def test_stepping_equals_forward(kind, num_layers, with_state):
    torch.manual_seed(0)
    layer = LAYERS[kind](num_layers).double().eval()
    x = torch.randn(B, T, I, dtype=torch.double)
    state = None
    if with_state:
        _, state = layer(torch.randn(B, 2, I, dtype=torch.double))  # any state of the right shapes
    out, final = layer(x, state)
    s = state
    ys = []
    for t in range(T):
        y, s = layer.step(x[:, t], s)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out, atol=1e-12, rtol=0)
    assert type(s) is type(final)
    for a, b in zip(as_tuple(s), as_tuple(final), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_step_under_inference_mode_and_gradients():
    layer = LSTM(I, H, num_layers=2).eval()
    x = torch.randn(B, I)
    with torch.inference_mode():
        y, (h, c) = layer.step(x)
    assert y.shape == (B, H) and h.shape == c.shape == (2, B, H)
    layer.train()  # no regulariser: stepping in training mode is allowed and differentiable
    y, _ = layer.step(x.requires_grad_())
    y.sum().backward()
    assert x.grad is not None and layer.weight_hh_l1.grad is not None


@pytest.mark.parametrize(
    "make, call, message",
    [
        (lambda: LSTM(I, H, bidirectional=True).eval(), lambda m: m.step(torch.randn(B, I)), "bidirectional"),
        (lambda: LSTM(I, H, zoneout=0.1), lambda m: m.step(torch.randn(B, I)), "eval"),
        (lambda: Recurrent(GRUCell, I, H, input_dropout=0.1), lambda m: m.step(torch.randn(B, I)), "eval"),
        (lambda: GRU(I, H).eval(), lambda m: m.step(torch.randn(B, T, I)), "expected input"),
        (lambda: GRU(I, H).eval(), lambda m: m.step(torch.randn(B, I + 1)), "expected input"),
        (lambda: GRU(I, H).eval(), lambda m: m.step(torch.randn(B, I), torch.zeros(2, B, H)), "expected state"),
        (
            lambda: LSTM(I, H).eval(),
            lambda m: m.step(torch.randn(B, I), (torch.zeros(1, B, H),)),
            "expected state",
        ),
    ],
)
def test_step_errors(make, call, message):
    with pytest.raises(ValueError, match=message):
        call(make())
