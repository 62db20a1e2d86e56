"""Classic cells written from their equations equal torch's cells, with seeded random weights."""

import pytest
import torch

from rnnkit.cells import GRUCell, LSTMCell, RNNCell

B, I, H = 3, 5, 7


def _pairs():
    yield "rnn_tanh", RNNCell(I, H, nonlinearity="tanh"), torch.nn.RNNCell(I, H, nonlinearity="tanh")
    yield "rnn_relu", RNNCell(I, H, nonlinearity="relu"), torch.nn.RNNCell(I, H, nonlinearity="relu")
    yield "lstm", LSTMCell(I, H), torch.nn.LSTMCell(I, H)
    yield "gru", GRUCell(I, H), torch.nn.GRUCell(I, H)
    yield "gru_nobias", GRUCell(I, H, bias=False), torch.nn.GRUCell(I, H, bias=False)


@pytest.mark.parametrize("name, ours, theirs", list(_pairs()), ids=[p[0] for p in _pairs()])
@pytest.mark.parametrize("direction", ["torch_to_rnnkit", "rnnkit_to_torch"])
def test_cell_equals_torch_cell(name, ours, theirs, direction):
    torch.manual_seed(0)
    ours, theirs = ours.double(), theirs.double()
    if direction == "torch_to_rnnkit":
        ours.load_state_dict(theirs.state_dict())
    else:
        theirs.load_state_dict(ours.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    x = torch.randn(B, I, dtype=torch.double, requires_grad=True)
    h = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    c = torch.randn(B, H, dtype=torch.double, requires_grad=True)
    if name == "lstm":
        y, (h1, c1) = ours(x, (h, c))
        h2, c2 = theirs(x, (h, c))
        torch.testing.assert_close(c1, c2)
        loss_ours, loss_theirs = (h1 * 1.3 + c1).sum(), (h2 * 1.3 + c2).sum()
        inputs = (x, h, c)
    else:
        y, (h1,) = ours(x, (h,))
        h2 = theirs(x, h)
        loss_ours, loss_theirs = (h1**2).sum(), (h2**2).sum()
        inputs = (x, h)
    torch.testing.assert_close(y, h1)
    torch.testing.assert_close(h1, h2)
    g1 = torch.autograd.grad(loss_ours, [*inputs, *ours.parameters()])
    g2 = torch.autograd.grad(loss_theirs, [*inputs, *theirs.parameters()])
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_lstm_cell_with_projection_equals_one_step_of_torch_lstm():
    torch.manual_seed(1)
    cell = LSTMCell(I, H, proj_size=3).double()
    ref = torch.nn.LSTM(I, H, proj_size=3, batch_first=True).double()
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in ref.state_dict().items()})
    x = torch.randn(B, I, dtype=torch.double)
    h0, c0 = torch.randn(1, B, 3, dtype=torch.double), torch.randn(1, B, H, dtype=torch.double)
    y, (h, c) = cell(x, (h0[0], c0[0]))
    out, (h_ref, c_ref) = ref(x[:, None], (h0, c0))
    assert y.shape == (B, 3)
    torch.testing.assert_close(y, out[:, 0])
    torch.testing.assert_close(c, c_ref[0])


def test_default_state_is_zeros_and_state_tuple():
    cell = LSTMCell(I, H)
    y, state = cell(torch.randn(B, I))
    assert isinstance(state, tuple) and len(state) == 2
    y0, _ = cell(torch.randn(B, I) * 0 + 1, (torch.zeros(B, H), torch.zeros(B, H)))
    y1, _ = cell(torch.ones(B, I))
    torch.testing.assert_close(y0, y1)


def test_gru_cell_accepts_bare_tensor_state():
    cell = GRUCell(I, H)
    h = torch.randn(B, H)
    torch.testing.assert_close(cell(torch.ones(B, I), h)[0], cell(torch.ones(B, I), (h,))[0])


def test_orthogonal_recurrent_init_makes_each_gate_block_orthogonal():
    torch.manual_seed(0)
    for cell, gates in [
        (LSTMCell(I, H, recurrent_init="orthogonal"), 4),
        (GRUCell(I, H, recurrent_init="orthogonal"), 3),
        (RNNCell(I, H, recurrent_init="orthogonal"), 1),
    ]:
        for block in cell.weight_hh.detach().chunk(gates):
            torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    default = LSTMCell(I, H).weight_hh.detach()[:H]
    assert not torch.allclose(default @ default.T, torch.eye(H), atol=1e-2)


def test_forget_bias_sets_total_forget_gate_bias():
    cell = LSTMCell(I, H, forget_bias=1.0)
    total = (cell.bias_ih + cell.bias_hh).detach()
    torch.testing.assert_close(total[H : 2 * H], torch.ones(H))
    assert not torch.allclose(total[:H], torch.ones(H))  # other gates keep the default init


def test_hooks_have_their_effect_and_identity_hooks_change_nothing():
    torch.manual_seed(0)
    for cell in (RNNCell(I, H), LSTMCell(I, H), GRUCell(I, H)):
        x = torch.randn(B, I)
        state = tuple(torch.randn(B, s) for s in cell.state_sizes)
        xp = cell.project_input(x)
        base, _ = cell.recur(xp, state)
        same, _ = cell.recur(xp, state, weight_hh=cell.weight_hh, h_mask=torch.ones(B, H))
        torch.testing.assert_close(base, same)
        dropped, _ = cell.recur(xp, state, weight_hh=torch.zeros_like(cell.weight_hh))
        assert not torch.allclose(base, dropped)
        masked, _ = cell.recur(xp, state, h_mask=torch.zeros(B, H))
        zero_h = (torch.zeros(B, H),) + state[1:]
        # masking h only in the hidden product equals a zero previous h for RNN/LSTM (GRU also
        # interpolates with the real h, so it must differ from a zero h there)
        ref, _ = cell.recur(xp, zero_h)
        if isinstance(cell, GRUCell):
            assert not torch.allclose(masked, ref)
        else:
            torch.testing.assert_close(masked, ref)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LSTMCell(0, 4), "input_size"),
        (lambda: GRUCell(3, -1), "hidden_size"),
        (lambda: RNNCell(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
        (lambda: LSTMCell(3, 4, proj_size=4), "proj_size"),
        (lambda: LSTMCell(3, 4, recurrent_init="xavier"), "recurrent_init"),
        (lambda: LSTMCell(3, 4, forget_bias="1"), "forget_bias"),
        (lambda: LSTMCell(3, 4, bias=False, forget_bias=1.0), "forget_bias"),
        (lambda: LSTMCell(3, 4.0), "hidden_size"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_input_shape_is_reported():
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 3 expected 5"):
        LSTMCell(5, 4)(torch.randn(2, 3))
