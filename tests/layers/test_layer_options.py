"""Every option of the layers has its effect, picks the right path, and bad arguments fail clearly."""

import pytest
import torch

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.layers import GRU, LSTM, RNN, Recurrent, fastloop, locked_dropout

I, H = 4, 6


def x_batch(B=4, T=7, seed=0):
    torch.manual_seed(seed)
    return torch.randn(B, T, I)


def run(m, x, **kw):
    out, _ = m(x, **kw)
    return out


@pytest.mark.parametrize(
    "option, path_in_training",
    [
        ("input_dropout", "fused"),
        ("output_dropout", "fused"),
        ("weight_drop", "fused"),
        ("recurrent_dropout", "loop"),
        ("dropout", "fused"),
    ],
)
def test_dropout_options_act_in_training_only(option, path_in_training):
    torch.manual_seed(0)
    plain = LSTM(I, H, num_layers=2, batch_first=True)
    reg = LSTM(I, H, num_layers=2, batch_first=True, **{option: 0.5})
    reg.load_state_dict(plain.state_dict())
    x = x_batch()
    reg.train()
    plain.train()
    torch.manual_seed(1)
    a = run(reg, x)
    assert reg.last_path == path_in_training
    torch.manual_seed(2)
    b = run(reg, x)
    assert not torch.allclose(a, b), "two training calls should draw different masks"
    assert not torch.allclose(a, run(plain, x))
    reg.eval()
    plain.eval()
    torch.testing.assert_close(run(reg, x), run(plain, x))
    assert reg.last_path == "fused"


def test_zoneout_mixes_old_and_new_state():
    torch.manual_seed(0)
    plain = GRU(I, H, batch_first=True)
    zo = GRU(I, H, batch_first=True, zoneout=0.3)
    zo.load_state_dict(plain.state_dict())
    x = x_batch()
    # evaluation: h_t = p * h_{t-1} + (1 - p) * GRU(x_t, h_{t-1}), checked step by step with the cell
    zo.eval()
    out, h = zo(x)
    assert zo.last_path == "loop"
    cell = GRUCell(I, H)
    cell.load_state_dict({k[:-3]: v for k, v in plain.state_dict().items()})
    state = torch.zeros(x.shape[0], H)
    for t in range(x.shape[1]):
        new, _ = cell(x[:, t], (state,))
        state = 0.3 * state + 0.7 * new
        torch.testing.assert_close(out[:, t], state)
    # training: every unit is either its old value or the fresh update
    zo.train()
    torch.manual_seed(3)
    out, _ = zo(x)
    prev = torch.zeros(x.shape[0], H)
    kept = 0
    for t in range(x.shape[1]):
        fresh, _ = cell(x[:, t], (prev,))
        is_old = torch.isclose(out[:, t], prev)
        is_new = torch.isclose(out[:, t], fresh)
        assert bool((is_old | is_new).all())
        kept += int((is_old & ~is_new).sum())
        prev = out[:, t]
    assert kept > 0
    with pytest.raises(ValueError, match="fused"):
        LSTM(I, H, zoneout=0.1, implementation="fused")


def test_locked_dropout_shares_the_mask_over_time():
    torch.manual_seed(0)
    x = torch.ones(8, 20, 10)
    y = locked_dropout(x, 0.5, training=True)
    assert bool((y == y[:, :1]).all())  # same mask at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)


def test_variational_dropout_between_layers_is_locked(monkeypatch):
    seen = []
    # the reference path calls each cell's project_input (which the spy below watches)
    m = Recurrent(LSTMCell, I, H, num_layers=2, dropout=0.5, variational_dropout=True, implementation="reference")
    second = m.cells[1][0]
    original = second.project_input

    def spy(inp):
        seen.append(inp.detach())
        return original(inp)

    monkeypatch.setattr(second, "project_input", spy)
    m.train()
    m(x_batch())
    zeros = seen[0] == 0
    assert zeros.any()
    assert bool((zeros == zeros[:, :1]).all())  # dropped features are dropped at every step


def test_recurrent_dropout_mask_is_fixed_within_a_sequence(monkeypatch):
    masks = []
    m = Recurrent(GRUCell, I, H, recurrent_dropout=0.5)
    cell = m.cells[0][0]
    original = cell.recur

    def spy(xp, state, **kw):
        masks.append(kw.get("h_mask"))
        return original(xp, state, **kw)

    monkeypatch.setattr(cell, "recur", spy)
    monkeypatch.setattr(fastloop, "BACKEND", "python")  # the per-step loop (the native GRU loop calls no recur)
    m.train()
    m(x_batch(T=5))
    assert len(masks) == 5 and all(torch.equal(k, masks[0]) for k in masks)
    assert set(masks[0].unique().tolist()) == {0.0, 2.0}


def test_weight_drop_reaches_weight_hh_gradient():
    torch.manual_seed(0)
    m = LSTM(I, H, batch_first=True, weight_drop=0.9)
    m.train()
    run(m, x_batch()).sum().backward()
    g = m.weight_hh_l0.grad
    assert (g == 0).float().mean() > 0.5  # dropped connections get no gradient
    assert g.abs().sum() > 0


def test_init_options():
    m = LSTM(I, H, num_layers=2, bidirectional=True, recurrent_init="orthogonal", forget_bias=1.0)
    for name, p in m.named_parameters():
        if name.startswith("weight_hh"):
            for block in p.detach().chunk(4):
                torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
        if name.startswith("bias_ih"):
            assert torch.equal(p.detach()[H : 2 * H], torch.ones(H))
        if name.startswith("bias_hh"):
            assert torch.equal(p.detach()[H : 2 * H], torch.zeros(H))
    g = GRU(I, H, recurrent_init="orthogonal")
    for block in g.weight_hh_l0.detach().chunk(3):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)


def test_proj_size_shapes():
    m = LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, batch_first=True)
    out, (h, c) = m(x_batch(), lengths=torch.tensor([7, 1, 3, 7]))
    assert out.shape == (4, 7, 4) and h.shape == (4, 4, 2) and c.shape == (4, 4, H)


def test_path_property_and_forced_loop():
    m = LSTM(I, H)
    assert m.path == "fused"
    assert LSTM(I, H, implementation="loop").path == "loop"
    rd = LSTM(I, H, recurrent_dropout=0.2)
    assert rd.path == "loop"
    rd.eval()
    assert rd.path == "fused"  # recurrent dropout is the identity at evaluation


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LSTM(I, H, dropout=1.5), "dropout"),
        (lambda: LSTM(I, H, input_dropout=-0.1), "input_dropout"),
        (lambda: LSTM(I, H, zoneout=1.0), "zoneout"),
        (lambda: GRU(I, H, forget_bias=1.0), "forget_bias"),
        (lambda: RNN(I, H, recurrent_init="he"), "recurrent_init"),
        (lambda: LSTM(I, H, implementation="cuda"), "implementation"),
        (lambda: Recurrent(LSTMCell, I, 0), "hidden_size"),
        (lambda: Recurrent(LSTMCell, I, H, num_layers=0), "num_layers"),
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(torch.randn(2, 3, I + 1)), "input_size"),
        (lambda m: m(torch.randn(2, 3, I), lengths=torch.tensor([3, 4])), r"lengths must lie in \[1, 3\]"),
        (lambda m: m(torch.randn(2, 3, I), lengths=torch.tensor([3, 0])), "lengths must lie"),
        (lambda m: m(torch.randn(2, 3, I), lengths=torch.tensor([3])), "shape"),
        (lambda m: m(torch.randn(2, 3, I), lengths=torch.tensor([3.0, 2.0])), "integers"),
        (lambda m: m(torch.randn(2, 3, I), (torch.zeros(1, 3, H), torch.zeros(1, 3, H))), r"Expected hidden\[0\] size"),
        (lambda m: m(torch.randn(3, I), lengths=torch.tensor([3])), "batched"),
        (lambda m: m(torch.randn(2, 3, 3, I)), "Expected input to be 2D or 3D, got 4D"),
    ],
)
def test_bad_forward_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(LSTM(I, H, batch_first=True))


def test_generic_recurrent_validates_state_and_input():
    m = Recurrent(GRUCell, I, H, num_layers=2)
    with pytest.raises(ValueError, match=r"expected state of shapes \(2, 4, 6\)"):
        m(x_batch(), torch.zeros(1, 4, H))
    with pytest.raises(ValueError, match="expected input"):
        m(torch.randn(4, I))
    out, (h,) = m(x_batch(), torch.zeros(2, 4, H))
    assert out.shape == (4, 7, H) and h.shape == (2, 4, H)
