"""The C++ GRU loop (``csrc/gru_loop.cpp``, ``rnnkit.layers.fastloop.run_gru``) for ``GRUCell`` and
``LayerNormGRUCell``: equal to the reference loop in float64 (outputs, final states and every gradient) for
every option, both directions, ragged lengths, a tiny size and H=37 (vector loops with remainders); float32
close to float64; NaN propagates; second-order gradients; and where it does not run (zoneout, bfloat16,
autocast, ``RNNKIT_NATIVE=0``) the per-step loop does, with the same results."""

import copy

import pytest
import torch

from rnnkit.cells import GRUCell, LayerNormGRUCell
from rnnkit.layers import GRU, Recurrent, fastloop, native, paths
from rnnkit.layers.regularisation import StepHooks

B, T, I, H = 6, 11, 13, 37  # H = 37: 4 vectors of 8 and a remainder of 5; 3H = 111
LENGTHS = [T, 1, 7, T, 4, 9]


@pytest.fixture
def built():
    if not native.available():
        pytest.skip(f"the native loop did not build here: {native._state.get('error')}")


def make(kind, dtype, size=(I, H), seed=0, implementation="loop", **kw):
    torch.manual_seed(seed)
    i, h = size
    if kind == "gru":
        m = GRU(i, h, batch_first=True, implementation=implementation, **kw)
    else:
        m = Recurrent(LayerNormGRUCell, i, h, implementation=implementation, **kw)
    with torch.no_grad():  # gains off their defaults, biases off zero
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m.to(dtype)


def run(m, x, lengths=None, h0=None, create_graph=False):
    """Outputs, the final state and the gradients of a loss over both, w.r.t. the input, the initial state
    and every parameter; the recurrent-dropout and weight-drop draws seeded alike for every module."""
    x = x.detach().requires_grad_()
    leaves = [x]
    if h0 is not None:
        h0 = h0.detach().requires_grad_()
        leaves.append(h0)
    torch.manual_seed(5)
    if isinstance(m, torch.nn.GRU):  # the peer: no lengths
        out, h = m(x, h0)
    else:
        out, h = m(x, h0 if isinstance(m, GRU) or h0 is None else (h0,), lengths=lengths)
    h = h[0] if isinstance(h, tuple) else h
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    loss = (out * weights).sum() + (h * h.flip(-1)).sum()
    return [out, h, *torch.autograd.grad(loss, [*leaves, *m.parameters()], create_graph=create_graph)]


def reference_of(m):
    """The same module on the reference path (``recur`` per step under autograd, the oracle)."""
    ref = copy.deepcopy(m)
    ref.implementation = "reference"
    return ref


@pytest.mark.parametrize("kind", ["gru", "ln_gru"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bias": False},
        {"num_layers": 2, "bidirectional": True, "recurrent_dropout": 0.3, "weight_drop": 0.2},
    ],
)
def test_native_equals_reference_in_float64(built, kind, ragged, options):
    m = make(kind, torch.float64, **options).train()
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    x = 2 * torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(layers, B, H, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS) if ragged else None
    fastloop.last_backend = None
    got = run(m, x, lengths, h0)
    assert fastloop.last_backend == "native" and m.last_path == "loop"
    ref = reference_of(m)
    want = run(ref, x, lengths, h0)
    assert ref.last_path == "reference"
    assert len(got) == len(want) == 4 + len(list(m.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["gru", "ln_gru"])
def test_native_equals_reference_at_a_tiny_size(built, kind):
    m = make(kind, torch.float64, size=(1, 1)).train()
    x = torch.randn(1, 2, 1, dtype=torch.float64)
    h0 = torch.randn(1, 1, 1, dtype=torch.float64)
    got = run(m, x, None, h0)
    assert fastloop.last_backend == "native"
    want = run(reference_of(m), x, None, h0)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kind", ["gru", "ln_gru"])
def test_native_float32_close_to_float64(built, kind):
    """float32 runs the loop's own rational tanh/sigmoid; inputs large enough to reach their clamp."""
    m = make(kind, torch.float64)
    x = 6 * torch.randn(B, T, I, dtype=torch.float64)
    lengths = torch.tensor([T, 2, 5, T, 1, 8])
    want = run(reference_of(m), x, lengths)
    got = run(m.float(), x.float(), lengths)
    assert fastloop.last_backend == "native"
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, atol=2e-5, rtol=2e-5)


def test_native_repeats_exactly_and_matches_torch_gru_in_float32(built):
    m = make("gru", torch.float32)
    x = torch.randn(B, T, I)
    first, again = run(m, x), run(m, x)  # the second call reuses the first one's pooled buffers
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    peer = torch.nn.GRU(I, H, batch_first=True)
    peer.load_state_dict(m.state_dict())
    want = run(peer, x)
    for a, b in zip(first, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_native_propagates_nan(built):
    m = make("ln_gru", torch.float32)
    x = torch.randn(2, 4, I)
    x[1, 2, 0] = float("nan")
    with torch.no_grad():
        out, (h,) = m(x)
    assert fastloop.last_backend == "native"
    assert torch.isfinite(out[0]).all() and torch.isfinite(out[1, :2]).all()
    assert torch.isnan(out[1, 2:]).all() and torch.isnan(h[0, 1]).all() and torch.isfinite(h[0, 0]).all()


@pytest.mark.parametrize("kind", ["gru", "ln_gru"])
def test_second_order_gradients_equal_the_reference(built, kind):
    m = make(kind, torch.float64, size=(3, 4), recurrent_dropout=0.2).train()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3])

    def penalty(module):
        grads = run(module, x, lengths, create_graph=True)[2:]
        return torch.autograd.grad(sum((g * g).sum() for g in grads), list(module.parameters()))

    got = penalty(m)
    assert fastloop.last_backend == "native"
    for a, b in zip(got, penalty(reference_of(m)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def loop_path(cell, x, **hooks):
    return paths.choose_loop(cell, x, StepHooks(**hooks)).name


def test_which_loop_runs_and_why(built):
    x = torch.randn(2, 3, I)
    gru, ln_gru = GRUCell(I, H), LayerNormGRUCell(I, H)
    assert fastloop.native_supports(gru) and fastloop.native_supports(ln_gru)
    assert not fastloop.supports(gru)  # the Python hand-differentiated loop is the LSTM's only
    assert loop_path(gru, x) == loop_path(ln_gru, x) == "native"
    assert loop_path(gru, x, zoneout=0.2) == "step"
    assert paths.NATIVE_LOOP.why_not(gru, x, StepHooks(zoneout=0.2)) == "zoneout runs the Python loop"
    assert loop_path(gru.to(torch.bfloat16), x.to(torch.bfloat16)) == "step"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert paths.NATIVE_LOOP.why_not(ln_gru, x, StepHooks()) == "autocast runs the per-step loop"


def test_auto_keeps_torch_fused_kernel_and_reports_the_loop_where_it_runs(built):
    assert GRU(I, H).path == "fused"
    m = GRU(I, H, batch_first=True, recurrent_dropout=0.3)
    assert m.path == "loop"
    m(torch.randn(2, 3, I))
    assert m.last_path == "loop" and fastloop.last_backend == "native"
    m.eval()
    assert m.path == "fused"
    assert Recurrent(LayerNormGRUCell, I, H).path == "loop"


@pytest.mark.parametrize("kind", ["gru", "ln_gru"])
def test_zoneout_and_bfloat16_run_the_per_step_loop(kind):
    m = make(kind, torch.float64, zoneout=0.3).eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    fastloop.last_backend = None
    got = run(m, x, torch.tensor(LENGTHS))
    assert fastloop.last_backend is None  # neither fast loop ran
    for a, b in zip(got, run(reference_of(m), x, torch.tensor(LENGTHS)), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    fastloop.last_backend = None
    out, _ = make(kind, torch.bfloat16)(torch.randn(2, 3, I, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and fastloop.last_backend is None


def test_without_the_native_loop_the_gru_runs_per_step(monkeypatch):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", lambda: pytest.fail("RNNKIT_NATIVE=0 must not build"))
    monkeypatch.setenv("RNNKIT_NATIVE", "0")
    m = make("ln_gru", torch.float64, recurrent_dropout=0.3).train()
    x = torch.randn(B, T, I, dtype=torch.float64)
    assert loop_path(m.cells[0][0], x) == "step"
    fastloop.last_backend = None
    got = run(m, x, torch.tensor(LENGTHS))
    assert fastloop.last_backend is None and m.last_path == "loop"
    for a, b in zip(got, run(reference_of(m), x, torch.tensor(LENGTHS)), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
