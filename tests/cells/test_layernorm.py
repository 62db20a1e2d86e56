"""LayerNormLSTMCell / LayerNormGRUCell against hand-written steps from their documented equations."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from rnnkit.cells import LayerNormGRUCell, LayerNormLSTMCell

B, I, H = 3, 5, 4
EPS = 1e-5


def randomize_(cell: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random, LayerNorm gains and shifts included (1/0 would hide a misplaced norm)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return cell


def layer_norm(v, gain, shift=None, eps=EPS):
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    out = (v - mu) / torch.sqrt(var + eps) * gain
    return out if shift is None else out + shift


def _bias(cell, name, like):
    b = getattr(cell, name)
    return torch.zeros(like.shape[-1], dtype=like.dtype) if b is None else b


def ref_lstm_step(cell, x, h, c, h_in_product=None, w_hh=None):
    """gates = LN_ih(W_ih x) + b_ih + LN_hh(W_hh h) + b_hh; c' = s(f)c + s(i)tanh(g); h' = s(o)tanh(LN_c(c'))."""
    h_in_product = h if h_in_product is None else h_in_product
    w_hh = cell.weight_hh if w_hh is None else w_hh
    xw = x @ cell.weight_ih.T
    hw = h_in_product @ w_hh.T
    gates = (
        layer_norm(xw, cell.ln_ih.weight)
        + _bias(cell, "bias_ih", xw)
        + layer_norm(hw, cell.ln_hh.weight)
        + _bias(cell, "bias_hh", hw)
    )
    i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(layer_norm(c_new, cell.ln_c.weight, cell.ln_c.bias))
    return h_new, c_new


def ref_gru_step(cell, x, h, h_in_product=None, w_hh=None):
    """r, z from LN_ih(W_ih x)+b_ih + LN_hh(W_hh h)+b_hh; n = tanh(x_n + r h_n); h' = (1-z) n + z h."""
    h_in_product = h if h_in_product is None else h_in_product
    w_hh = cell.weight_hh if w_hh is None else w_hh
    xw = x @ cell.weight_ih.T
    hw = h_in_product @ w_hh.T
    xs = layer_norm(xw, cell.ln_ih.weight) + _bias(cell, "bias_ih", xw)
    hs = layer_norm(hw, cell.ln_hh.weight) + _bias(cell, "bias_hh", hw)
    r = torch.sigmoid(xs[:, :H] + hs[:, :H])
    z = torch.sigmoid(xs[:, H : 2 * H] + hs[:, H : 2 * H])
    n = torch.tanh(xs[:, 2 * H :] + r * hs[:, 2 * H :])
    return (1 - z) * n + z * h


def inputs(seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, I, generator=gen, dtype=dtype)
    h = torch.randn(B, H, generator=gen, dtype=dtype)
    c = torch.randn(B, H, generator=gen, dtype=dtype) * 2
    return x, h, c


def lstm(**kw):
    return randomize_(LayerNormLSTMCell(I, H, **kw).double())


def gru(**kw):
    return randomize_(LayerNormGRUCell(I, H, **kw).double())


# -- equations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_step_matches_equations(bias):
    cell = lstm(bias=bias)
    x, h, c = inputs()
    out, (h1, c1) = cell(x, (h, c))
    ref_h, ref_c = ref_lstm_step(cell, x, h, c)
    torch.testing.assert_close(c1, ref_c, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(h1, ref_h, atol=1e-12, rtol=1e-10)
    assert out is h1


@pytest.mark.parametrize("bias", [True, False])
def test_gru_step_matches_equations(bias):
    cell = gru(bias=bias)
    x, h, _ = inputs()
    out, (h1,) = cell(x, (h,))
    torch.testing.assert_close(h1, ref_gru_step(cell, x, h), atol=1e-12, rtol=1e-10)
    assert out is h1


def test_lstm_several_steps_with_hoisted_projection():
    cell = lstm()
    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(B, 6, I, generator=gen, dtype=torch.float64)
    xp = cell.project_input(xs)  # (B, T, 4H), one call for all steps
    h = torch.zeros(B, H, dtype=torch.float64)
    state, ref = (h, h), (h, h)
    for t in range(xs.shape[1]):
        _, state = cell.recur(xp[:, t], state)
        ref = ref_lstm_step(cell, xs[:, t], *ref)
    torch.testing.assert_close(state, ref, atol=1e-11, rtol=1e-9)


def test_parameter_and_submodule_names():
    assert [n for n, _ in LayerNormLSTMCell(I, H).named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih.weight", "ln_hh.weight", "ln_c.weight", "ln_c.bias",
    ]  # fmt: skip
    assert [n for n, _ in LayerNormGRUCell(I, H).named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih.weight", "ln_hh.weight",
    ]  # fmt: skip
    assert [n for n, _ in LayerNormLSTMCell(I, H, bias=False).named_parameters()] == [
        "weight_ih", "weight_hh", "ln_ih.weight", "ln_hh.weight", "ln_c.weight",
    ]  # fmt: skip
    cell = LayerNormLSTMCell(I, H)
    assert cell.weight_ih.shape == (4 * H, I) and cell.weight_hh.shape == (4 * H, H)
    assert cell.state_sizes == (H, H) and cell.output_size == H and cell.num_gates == 4
    g = LayerNormGRUCell(I, H)
    assert g.weight_ih.shape == (3 * H, I) and g.state_sizes == (H,) and g.num_gates == 3


def test_eps_is_used():
    x, h, c = inputs()
    small, big = lstm(eps=1e-5), lstm(eps=10.0)
    assert big.ln_ih.eps == 10.0 and big.ln_c.eps == 10.0
    assert not torch.allclose(small(x, (h, c))[0], big(x, (h, c))[0])


# -- gradients ---------------------------------------------------------------------------------


def _gradcheck_two_steps(cls):
    """gradcheck over both inputs, the state and every parameter; tiny sizes keep it fast."""
    cell = randomize_(cls(3, 2).double(), seed=5)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    n_state = len(cell.state_sizes)
    gen = torch.Generator().manual_seed(6)
    x1, x2 = (torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    state = tuple(torch.randn(2, 2, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(n_state))

    def two_steps(x1, x2, *rest):
        st, pd = rest[:n_state], dict(zip(names, rest[n_state:], strict=True))
        _, st = functional_call(cell, pd, (x1, st))
        _, st = functional_call(cell, pd, (x2, st))
        return st

    assert torch.autograd.gradcheck(two_steps, (x1, x2, *state, *params), eps=1e-6, atol=1e-5)


def test_lstm_gradcheck_inputs_state_and_parameters():
    _gradcheck_two_steps(LayerNormLSTMCell)


def test_gru_gradcheck_inputs_state_and_parameters():
    _gradcheck_two_steps(LayerNormGRUCell)


# -- hooks -------------------------------------------------------------------------------------


def test_lstm_h_mask_only_enters_the_hidden_product():
    cell = lstm()
    x, h, c = inputs()
    xp = cell.project_input(x)
    base = cell.recur(xp, (h, c))
    ones = cell.recur(xp, (h, c), h_mask=torch.ones(B, H, dtype=h.dtype))
    torch.testing.assert_close(ones, base, atol=0, rtol=0)
    mask = torch.bernoulli(torch.full((B, H), 0.5, dtype=h.dtype), generator=torch.Generator().manual_seed(4)) * 2
    _, (h1, c1) = cell.recur(xp, (h, c), h_mask=mask)
    assert not torch.allclose(h1, base[0])
    ref_h, ref_c = ref_lstm_step(cell, x, h, c, h_in_product=h * mask)
    torch.testing.assert_close((h1, c1), (ref_h, ref_c), atol=1e-12, rtol=1e-10)


def test_gru_h_mask_only_enters_the_hidden_product():
    cell = gru()
    x, h, _ = inputs()
    xp = cell.project_input(x)
    base = cell.recur(xp, (h,))
    torch.testing.assert_close(cell.recur(xp, (h,), h_mask=torch.ones(B, H, dtype=h.dtype)), base, atol=0, rtol=0)
    zeros = torch.zeros(B, H, dtype=h.dtype)
    _, (h1,) = cell.recur(xp, (h,), h_mask=zeros)
    assert not torch.allclose(h1, base[0])
    # the interpolation still uses the real h
    torch.testing.assert_close(h1, ref_gru_step(cell, x, h, h_in_product=zeros), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("make", [lstm, gru])
def test_weight_hh_hook_replaces_the_recurrent_weight(make):
    cell = make()
    x, h, c = inputs()
    state = (h, c)[: len(cell.state_sizes)]
    xp = cell.project_input(x)
    base = cell.recur(xp, state)
    torch.testing.assert_close(cell.recur(xp, state, weight_hh=cell.weight_hh), base, atol=0, rtol=0)
    dropped = cell.weight_hh * torch.bernoulli(torch.full_like(cell.weight_hh, 0.7))
    out, new_state = cell.recur(xp, state, weight_hh=dropped)
    assert not torch.allclose(out, base[0])
    ref = ref_lstm_step(cell, x, h, c, w_hh=dropped) if make is lstm else (ref_gru_step(cell, x, h, w_hh=dropped),)
    torch.testing.assert_close(new_state, ref, atol=1e-12, rtol=1e-10)
    out.sum().backward()  # weight drop needs the gradient to reach the source weight
    assert cell.weight_hh.grad is not None and cell.weight_hh.grad.abs().sum() > 0


# -- initialisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LayerNormLSTMCell, LayerNormGRUCell])
def test_reset_parameters_sets_layernorm_to_identity(cls):
    cell = randomize_(cls(I, H))
    cell.reset_parameters()
    lns = [m for m in cell.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(lns) == (3 if cls is LayerNormLSTMCell else 2)
    for ln in lns:
        assert torch.equal(ln.weight, torch.ones_like(ln.weight))
        if ln.bias is not None:
            assert torch.equal(ln.bias, torch.zeros_like(ln.bias))
    bound = H**-0.5
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        p = getattr(cell, name)
        assert p.abs().max() <= bound and p.std() > 0.1 * bound


def test_forget_bias_sets_the_forget_gates_total_bias():
    cell = LayerNormLSTMCell(I, H, forget_bias=1.5).double()
    assert torch.all(cell.bias_ih[H : 2 * H] == 1.5) and torch.all(cell.bias_hh[H : 2 * H] == 0)
    # with x = 0 and h = 0 both norms output 0, so each gate's pre-activation is its total bias
    _, _, c0 = inputs()
    zeros = torch.zeros(B, H, dtype=torch.float64)
    _, (_, c1) = cell.recur(cell.project_input(torch.zeros(B, I, dtype=torch.float64)), (zeros, c0))
    b = cell.bias_ih + cell.bias_hh
    expect = torch.sigmoid(torch.tensor(1.5)) * c0 + torch.sigmoid(b[:H]) * torch.tanh(b[2 * H : 3 * H])
    torch.testing.assert_close(c1, expect.to(c1.dtype))
    plain = LayerNormLSTMCell(I, H)
    assert not torch.all(plain.bias_ih[H : 2 * H] == 1.5)


@pytest.mark.parametrize("cls,gates", [(LayerNormLSTMCell, 4), (LayerNormGRUCell, 3)])
def test_orthogonal_recurrent_init(cls, gates):
    torch.manual_seed(0)
    eye = torch.eye(H)
    for block in cls(I, H, recurrent_init="orthogonal").weight_hh.detach().chunk(gates, dim=0):
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
    default = cls(I, H).weight_hh.detach()[:H]
    assert not torch.allclose(default @ default.T, eye, atol=1e-2)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,argname",
    [
        ({"input_size": 0}, "input_size"),
        ({"hidden_size": -2}, "hidden_size"),
        ({"hidden_size": 2.0}, "hidden_size"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-5}, "eps"),
        ({"eps": "1e-5"}, "eps"),
        ({"recurrent_init": "xavier"}, "recurrent_init"),
    ],
)
@pytest.mark.parametrize("cls", [LayerNormLSTMCell, LayerNormGRUCell])
def test_bad_arguments_name_the_argument(cls, kwargs, argname):
    args = {"input_size": I, "hidden_size": H, **kwargs}
    with pytest.raises(ValueError, match=argname):
        cls(**args)


@pytest.mark.parametrize(
    "kwargs,argname",
    [
        ({"forget_bias": "1"}, "forget_bias"),
        ({"forget_bias": True}, "forget_bias"),
        ({"forget_bias": 1.0, "bias": False}, "forget_bias"),
    ],
)
def test_bad_forget_bias(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        LayerNormLSTMCell(I, H, **kwargs)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 6 expected 5"):
        LayerNormGRUCell(I, H)(torch.zeros(2, I + 1))
