"""MinGRUCell / MinLSTMCell: the chunked and the log-space scans against the sequential step (the oracle)."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import MinGRUCell, MinLSTMCell
from rnnkit.cells.minimal import chunk_size_for, chunked_scan, g, log_g, log_space_scan

B, T, I, H = 4, 11, 3, 5
CELLS = [MinGRUCell, MinLSTMCell]
F64 = torch.float64


def make(cls, seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    cell = cls(I, H, **kw).to(dtype)
    with torch.no_grad():  # wider than the default init, so gates and g() visit both regimes
        for p in cell.parameters():
            p.mul_(3.0)
    return cell


def data(seed=1, dtype=F64, t=T):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, t, I, generator=gen, dtype=dtype)
    h0 = torch.randn(B, H, generator=gen, dtype=dtype)  # mixed sign
    return x, h0


def step_all(cell, xp, h0, mask=None):
    """The reference: recur one step at a time; a masked-out step leaves the state unchanged."""
    h, outs = h0, []
    for t in range(xp.shape[1]):
        new, _ = cell.recur(xp[:, t], (h,))
        h = new if mask is None else torch.where(mask[:, t, None], new, h)
        outs.append(h)
    return torch.stack(outs, 1), h  # (B, T, H), (B, H)


def ragged_mask(seed=2, t=T):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (B,), generator=gen)
    lengths[0] = t
    return torch.arange(t)[None, :] < lengths[:, None], lengths  # (B, T), (B,)


# -- parallel == sequential --------------------------------------------------------------------


@pytest.mark.parametrize("cls", CELLS)
def test_scan_equals_stepping_float64(cls):
    cell = make(cls)
    x, h0 = data()
    assert (h0 > 0).any() and (h0 < 0).any()
    xp = cell.project_input(x)  # (B, T, G)
    out, (hT,) = cell.scan(xp, (h0,))
    ref, ref_hT = step_all(cell, xp, h0)
    assert out.shape == (B, T, H) and out.dtype == F64
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(hT, ref_hT, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("cls", CELLS)
def test_scan_equals_stepping_float32(cls):
    # float32 error grows with |log A_t| (the cumulative log-decay); at T = 64 it stays ~1e-5
    cell = make(cls, dtype=torch.float32)
    x, h0 = data(dtype=torch.float32, t=64)
    xp = cell.project_input(x)
    out, _ = cell.scan(xp, (h0,))
    ref, _ = step_all(cell.double(), xp.double(), h0.double())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", CELLS)
def test_forward_is_one_recur_step(cls):
    cell = make(cls)
    x, h0 = data()
    out, (h1,) = cell(x[:, 0], (h0,))
    torch.testing.assert_close(out, cell.scan(cell.project_input(x[:, :1]), (h0,))[0][:, 0], atol=1e-12, rtol=0)
    assert out is h1


@pytest.mark.parametrize("cls", CELLS)
def test_scan_with_ragged_lengths_matches_each_sequence_alone(cls):
    cell = make(cls)
    x, h0 = data()
    mask, lengths = ragged_mask()
    xp = cell.project_input(x)
    out, (hT,) = cell.scan(xp, (h0,), mask=mask)
    for b in range(B):
        n = int(lengths[b])
        ref, ref_h = step_all(cell, xp[b : b + 1, :n], h0[b : b + 1])
        torch.testing.assert_close(out[b, :n], ref[0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(hT[b], ref_h[0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(out[b, n:], ref_h.expand(T - n, H), atol=1e-10, rtol=1e-10)  # carried


@pytest.mark.parametrize("cls", CELLS)
def test_scan_with_any_mask_pattern_carries_the_state(cls):
    cell = make(cls)
    x, h0 = data()
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(B, T, generator=gen) < 0.6
    mask[0, :4] = False  # leading masked steps: log b = -inf at the start of the sum
    mask[1] = False  # no real step at all: the state stays h0
    xp = cell.project_input(x)
    out, (hT,) = cell.scan(xp, (h0,), mask=mask)
    ref, ref_hT = step_all(cell, xp, h0, mask)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(hT, ref_hT, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(hT[1], h0[1], atol=0, rtol=0)


# -- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CELLS)
def test_scan_gradients_equal_stepping_gradients(cls):
    cell = make(cls)
    x, h0 = data()
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(4)) < 0.7
    mask[0, :3] = False
    mask[1] = False
    weights = torch.randn(B, T, H, dtype=F64)

    def grads(run):
        cell.zero_grad()
        xx, hh = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, hT = run(cell.project_input(xx), hh)
        ((out * weights)[mask].sum() + hT.pow(2).sum()).backward()
        return [xx.grad, hh.grad] + [p.grad.clone() for p in cell.parameters()]

    def scan(xp, hh):
        out, (hT,) = cell.scan(xp, (hh,), mask=mask)
        return out, hT

    g_scan = grads(scan)
    g_step = grads(lambda xp, hh: step_all(cell, xp, hh, mask))
    for a, b in zip(g_scan, g_step, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("cls", CELLS)
def test_gradcheck_scan(cls):
    cell = make(cls, seed=5)
    t, n_hidden = 4, H
    gen = torch.Generator().manual_seed(6)
    xp = torch.randn(2, t, cls.num_gates * n_hidden, generator=gen, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, n_hidden, generator=gen, dtype=F64, requires_grad=True)
    mask = torch.tensor([[False, True, True, False], [True, True, True, True]])

    def scan(xp, h0):
        out, (hT,) = cell.scan(xp, (h0,), mask=mask)
        return out, hT

    assert torch.autograd.gradcheck(scan, (xp, h0), eps=1e-6, atol=1e-6)


# -- the two scans, every chunk length ---------------------------------------------------------


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("method, chunk", [("log", None), ("chunked", 1), ("chunked", 2), ("chunked", 4),
                                           ("chunked", T), ("chunked", 50), ("chunked", None)])  # fmt: skip
def test_every_scan_equals_stepping_with_mask_and_gradients(cls, method, chunk):
    cell = make(cls)
    x, h0 = data()
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(9)) < 0.7
    mask[0, :3] = False
    mask[1] = False
    weights = torch.randn(B, T, H, dtype=F64)

    def run(fn):
        cell.zero_grad()
        xx, hh = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, hT = fn(cell.project_input(xx), hh)
        ((out * weights).sum() + hT.pow(2).sum()).backward()
        return [out.detach(), hT.detach(), xx.grad, hh.grad] + [p.grad.clone() for p in cell.parameters()]

    def scan(xp, hh):
        out, (hT,) = cell.scan(xp, (hh,), mask=mask, method=method, chunk=chunk)
        return out, hT

    for a, b in zip(run(scan), run(lambda xp, hh: step_all(cell, xp, hh, mask)), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("cls", CELLS)
def test_chunked_scan_stays_exact_in_float32_at_long_lengths(cls):
    # the log-space scan loses ~1e-4..1e-3 at T = 1024 in float32; products in linear space do not
    cell = make(cls, dtype=torch.float32)
    x, h0 = data(dtype=torch.float32, t=1500)
    xp = cell.project_input(x)
    out, _ = cell.scan(xp, (h0,))
    ref, _ = step_all(cell.double(), xp.double(), h0.double())
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


def test_chunked_scan_is_the_affine_recurrence_and_survives_underflow():
    gen = torch.Generator().manual_seed(8)
    a = torch.rand(2, 40, 3, generator=gen, dtype=F64)
    a[0, 5:30] = 1e-200  # running products underflow to 0 inside a chunk: no NaN, no inf
    b = torch.randn(2, 40, 3, generator=gen, dtype=F64)  # any sign
    h0 = torch.randn(2, 3, generator=gen, dtype=F64)
    h, ref = h0, []
    for t in range(40):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    for chunk in (None, 1, 7, 40):
        torch.testing.assert_close(chunked_scan(a, b, h0, chunk=chunk), torch.stack(ref, 1), atol=1e-12, rtol=1e-12)
    assert [chunk_size_for(t) for t in (1, 2, 8, 1024)] == [1, 1, 2, 18]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_gradcheck_chunked_scan_with_leftover_steps(chunk):
    gen = torch.Generator().manual_seed(10)
    a = torch.rand(2, 7, 3, generator=gen, dtype=F64).requires_grad_()
    b = torch.randn(2, 7, 3, generator=gen, dtype=F64).requires_grad_()
    h0 = torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_()
    mask = torch.rand(2, 7, generator=gen) < 0.7
    assert torch.autograd.gradcheck(lambda a, b, h0: chunked_scan(a, b, h0, mask, chunk), (a, b, h0))


@pytest.mark.parametrize("cls", CELLS)
def test_linear_coefficients_are_the_log_ones(cls):
    cell = make(cls)
    k = torch.randn(B, cls.num_gates * H, dtype=F64) * 4
    a, b = cell.coefficients(k)
    log_a, log_b = cell.log_coefficients(k)
    torch.testing.assert_close(a, log_a.exp())
    torch.testing.assert_close(b, log_b.exp())


# -- the pieces --------------------------------------------------------------------------------


def test_g_is_positive_continuous_and_log_g_matches():
    x = torch.linspace(-30, 30, 2001, dtype=F64)
    assert (g(x) > 0).all()
    expect = torch.tensor([0.5, 2.5, 1 / (1 + 7.38905609893065)], dtype=F64)  # 0 -> 1/2, x + 1/2, sigmoid
    torch.testing.assert_close(g(torch.tensor([0.0, 2.0, -2.0], dtype=F64)), expect)
    torch.testing.assert_close(g(torch.tensor(-1e-9, dtype=F64)), torch.tensor(0.5, dtype=F64), atol=1e-9, rtol=0)
    # log(sigmoid(x)) itself loses digits for very negative x; log_g does not
    torch.testing.assert_close(log_g(x), torch.log(g(x)), atol=0, rtol=1e-8)
    xx = torch.tensor([-5.0, -0.5, 0.25, 3.0], dtype=F64, requires_grad=True)
    log_g(xx).sum().backward()
    assert torch.isfinite(xx.grad).all()


@pytest.mark.parametrize("cls", CELLS)
def test_state_stays_positive_from_zero(cls):
    # h~ = g(.) > 0 and the step is a convex combination, so from h0 = 0 every state is positive
    cell = make(cls)
    x, _ = data()
    xp = cell.project_input(x * 5)
    out, _ = cell.scan(xp, (torch.zeros(B, H, dtype=F64),))
    assert (out > 0).all()


def test_min_gru_step_matches_equations():
    cell = make(MinGRUCell)
    x, h0 = data()
    k = x[:, 0] @ cell.weight_ih.T + cell.bias_ih
    k_z, k_h = k[:, :H], k[:, H:]
    z = torch.sigmoid(k_z)
    h_tilde = torch.where(k_h >= 0, k_h + 0.5, torch.sigmoid(k_h))
    torch.testing.assert_close(cell(x[:, 0], (h0,))[0], (1 - z) * h0 + z * h_tilde)


def test_min_lstm_step_matches_normalised_equations():
    cell = make(MinLSTMCell)
    x, h0 = data()
    k = x[:, 0] @ cell.weight_ih.T + cell.bias_ih
    f, i, k_h = torch.sigmoid(k[:, :H]), torch.sigmoid(k[:, H : 2 * H]), k[:, 2 * H :]
    f_n, i_n = f / (f + i), i / (f + i)
    torch.testing.assert_close(f_n + i_n, torch.ones_like(f_n))
    h_tilde = torch.where(k_h >= 0, k_h + 0.5, torch.sigmoid(k_h))
    torch.testing.assert_close(cell(x[:, 0], (h0,))[0], f_n * h0 + i_n * h_tilde)
    # the log-space coefficients say the same: a = f', b = i' h~, so a + b / h~ = 1
    log_a, log_b = cell.log_coefficients(k)
    torch.testing.assert_close(log_a.exp(), f_n)
    torch.testing.assert_close(log_a.exp() + log_b.exp() / h_tilde, torch.ones_like(f_n))


def test_min_lstm_normalisation_survives_saturated_gates():
    cell = MinLSTMCell(1, 1)
    k = torch.tensor([[-200.0, -210.0, 1.0]])  # (B, 3H) with H = 1; both sigmoids underflow to 0
    out, _ = cell.recur(k, (torch.tensor([[2.0]]),))
    assert torch.isfinite(out).all()
    log_a, log_b = cell.log_coefficients(k)
    assert torch.isfinite(log_a).all() and torch.isfinite(log_b).all()


def test_min_gru_log_coefficients():
    cell = make(MinGRUCell)
    k = torch.randn(B, 2 * H, dtype=F64) * 4
    log_a, log_b = cell.log_coefficients(k)
    z = torch.sigmoid(k[:, :H])
    torch.testing.assert_close(log_a.exp(), 1 - z)
    torch.testing.assert_close(log_b.exp(), z * g(k[:, H:]))


def test_log_space_scan_is_the_affine_recurrence():
    gen = torch.Generator().manual_seed(8)
    a = torch.rand(2, 6, 3, generator=gen, dtype=F64) * 0.98 + 0.01
    b = torch.rand(2, 6, 3, generator=gen, dtype=F64) + 0.1
    h0 = torch.randn(2, 3, generator=gen, dtype=F64)
    h, ref = h0, []
    for t in range(6):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    torch.testing.assert_close(log_space_scan(a.log(), b.log(), h0), torch.stack(ref, 1), atol=1e-12, rtol=1e-12)


def test_scan_zero_length_and_default_state():
    cell = make(MinGRUCell)
    h0 = torch.randn(B, H, dtype=F64)
    out, (hT,) = cell.scan(torch.zeros(B, 0, 2 * H, dtype=F64), (h0,))
    assert out.shape == (B, 0, H) and hT is h0
    x, _ = data()
    xp = cell.project_input(x)
    torch.testing.assert_close(cell.scan(xp)[0], cell.scan(xp, (torch.zeros(B, H, dtype=F64),))[0])


# -- the protocol and validation ---------------------------------------------------------------


@pytest.mark.parametrize("cls,gates", [(MinGRUCell, 2), (MinLSTMCell, 3)])
def test_protocol_attributes_and_parameters(cls, gates):
    cell = cls(I, H)
    assert cell.num_gates == gates and cell.recurrent_weight_name is None
    assert cell.state_sizes == (H,) and cell.output_size == H
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "bias_ih"]
    assert cell.weight_ih.shape == (gates * H, I) and cell.bias_ih.shape == (gates * H,)
    assert [n for n, _ in cls(I, H, bias=False).named_parameters()] == ["weight_ih"]
    state = cell.initial_state(2)
    assert len(state) == 1 and state[0].shape == (2, H)


@pytest.mark.parametrize("cls", CELLS)
def test_recur_rejects_recurrent_hooks(cls):
    cell = cls(I, H)
    xp = torch.zeros(2, cls.num_gates * H)
    state = cell.initial_state(2)
    with pytest.raises(ValueError, match="weight_hh"):
        cell.recur(xp, state, weight_hh=torch.zeros(cls.num_gates * H, H))
    with pytest.raises(ValueError, match="h_mask"):
        cell.recur(xp, state, h_mask=torch.ones(2, H))


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize(
    "kwargs,argname",
    [
        ({"recurrent_init": "orthogonal"}, "recurrent_init"),
        ({"recurrent_init": "xavier"}, "recurrent_init"),
        ({"input_size": 0}, "input_size"),
        ({"hidden_size": "4"}, "hidden_size"),
    ],
)
def test_bad_arguments_name_the_argument(cls, kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        cls(**{"input_size": I, "hidden_size": H, **kwargs})


@pytest.mark.parametrize("cls", CELLS)
def test_scan_validates_shapes(cls):
    cell = cls(I, H)
    G = cls.num_gates * H
    xp = torch.zeros(B, T, G)
    with pytest.raises(ValueError, match="xp"):
        cell.scan(torch.zeros(B, T, G + 1))
    with pytest.raises(ValueError, match="xp"):
        cell.scan(torch.zeros(T, G))
    with pytest.raises(ValueError, match="h0"):
        cell.scan(xp, (torch.zeros(B, H + 1),))
    with pytest.raises(ValueError, match="mask"):
        cell.scan(xp, mask=torch.ones(B, T))  # not bool
    with pytest.raises(ValueError, match="mask"):
        cell.scan(xp, mask=torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="method"):
        cell.scan(xp, method="parallel")


@pytest.mark.parametrize("chunk", [2, 3])
def test_gradgradcheck_chunked_scan(chunk):
    """Second-order gradients (create_graph=True) of the hand-differentiated scan: its backward runs the same
    scan on time-flipped inputs when a graph is asked for, so it is differentiable again."""
    gen = torch.Generator().manual_seed(11)
    a = torch.rand(2, 5, 3, generator=gen, dtype=F64).requires_grad_()
    b = torch.randn(2, 5, 3, generator=gen, dtype=F64).requires_grad_()
    h0 = torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_()
    mask = torch.tensor([[True] * 5, [True, True, False, True, True]])
    assert torch.autograd.gradgradcheck(lambda a, b, h0: chunked_scan(a, b, h0, mask, chunk), (a, b, h0))
    # a non-contiguous input: the double backward still reaches it
    at = torch.rand(2, 3, 5, generator=gen, dtype=F64).transpose(1, 2).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda a: chunked_scan(a, b.detach(), h0.detach(), None, chunk), (at,))
