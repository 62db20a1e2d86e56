"""The C++ LSTM loop (``rnnkit.layers.native``, built on first use) at sizes where its vectorised loops
run both their vector body and their remainder, in float32 where its own activations run, and its
fallbacks: no compiler, ``RNNKIT_NATIVE=0``/``1``, zoneout, reduced precision. test_fastloop.py runs
every option of both backends against the reference loop at a tiny size."""

import logging

import pytest
import torch

from rnnkit.cells import LayerNormLSTMCell
from rnnkit.layers import LSTM, Recurrent, fastloop, native

B, T, I, H = 6, 11, 13, 37  # H = 37: 4 vectors of 8 and a remainder of 5; 4H = 148


@pytest.fixture
def built():
    if not native.available():
        pytest.skip(f"the native loop did not build here: {native._state.get('error')}")


def make(kind, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    if kind == "lstm":
        m = LSTM(I, H, batch_first=True, implementation="loop", **kw)
    else:
        m = Recurrent(LayerNormLSTMCell, I, H, implementation="loop", **kw)
    with torch.no_grad():  # gains and shifts off their defaults
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m.to(dtype)


def grads(m, x, lengths, backend, monkeypatch):
    monkeypatch.setattr(fastloop, "BACKEND", backend)
    x = x.detach().requires_grad_()
    torch.manual_seed(5)  # the same recurrent-dropout masks on every backend
    out, (h, c) = m(x, lengths=lengths)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + (h * c).sum()
    got = [out, h, c, *torch.autograd.grad(loss, [x, *m.parameters()])]
    return got, fastloop.last_backend


@pytest.mark.parametrize("kind", ["lstm", "ln_lstm"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True, "recurrent_dropout": 0.3}])
def test_native_equals_reference_in_float64_with_remainders(built, kind, ragged, options, monkeypatch):
    m = make(kind, torch.float64, **options).train()
    ref = make(kind, torch.float64, **options).train()
    ref.implementation = "reference"
    x = 2 * torch.randn(B, T, I, dtype=torch.float64)
    lengths = torch.tensor([T, 1, 7, T, 4, 9]) if ragged else None
    got, backend = grads(m, x, lengths, "auto", monkeypatch)
    assert backend == "native"
    want, _ = grads(ref, x, lengths, "auto", monkeypatch)
    assert ref.last_path == "reference"
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "ln_lstm"])
def test_native_float32_activations_close_to_float64(built, kind, monkeypatch):
    """float32 runs the loop's own rational tanh/sigmoid; inputs large enough to reach the clamp."""
    m = make(kind, torch.float64)
    x = 6 * torch.randn(B, T, I, dtype=torch.float64)
    lengths = torch.tensor([T, 2, 5, T, 1, 8])
    want, _ = grads(m, x, lengths, "python", monkeypatch)
    got, backend = grads(m.float(), x.float(), lengths, "auto", monkeypatch)
    assert backend == "native"
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, atol=2e-5, rtol=2e-5)


def test_native_matches_python_loop_in_float32_and_repeats_exactly(built, monkeypatch):
    m = make("ln_lstm", torch.float32)
    x = torch.randn(B, T, I)
    first, _ = grads(m, x, None, "auto", monkeypatch)
    again, _ = grads(m, x, None, "auto", monkeypatch)  # the pooled buffers of the first call, reused
    python, _ = grads(m, x, None, "python", monkeypatch)
    for a, b, c in zip(first, again, python, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        # different rounding (the native loop also normalises the input side row by row): both float32 results
        # are within ~3e-5 of the float64 values at these gradients' scale (10-60)
        torch.testing.assert_close(a, c, atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_native_layer_norm_lstm_second_order_gradients_equal_reference(built, bias, monkeypatch):
    """The native loop normalises the input side (LN(W_ih x) * g_ih + b_ih + b_hh) itself; a double backward
    recomputes it in autograd ops. A gradient penalty's gradients of x and of every parameter (the input norm's
    gain and the biases included) equal the reference loop's, with ragged lengths."""
    monkeypatch.setattr(fastloop, "BACKEND", "auto")
    nets = {}
    for impl in ("loop", "reference"):
        torch.manual_seed(0)
        nets[impl] = Recurrent(LayerNormLSTMCell, 3, 5, implementation=impl, bias=bias).double()
        with torch.no_grad():
            for p in nets[impl].parameters():
                p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    grads = {}
    for impl, net in nets.items():
        out, (h, c) = net(x, lengths=lengths)
        if impl == "loop":
            assert fastloop.last_backend == "native"
        (gx,) = torch.autograd.grad(out.pow(2).sum() + (h * c).sum(), x, create_graph=True)
        grads[impl] = torch.autograd.grad(gx.pow(2).sum(), [x, *net.parameters()])
    for a, b in zip(grads["loop"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_native_lstm_op_refuses_one_norm_without_the_other(built):
    """The C++ op takes the gates' two norms together (the input norm's gain g_ih with the hidden one's g_hh)."""
    Hs = 3
    xp, h0, w = torch.randn(2, 4, 4 * Hs), torch.zeros(2, Hs), torch.randn(4 * Hs, Hs)
    g, gc = torch.ones(4 * Hs), torch.ones(Hs)
    op = native.ops().lstm_forward
    with pytest.raises(RuntimeError, match="the norms come together"):
        op(xp, h0, h0, w, g, gc, None, None, None, None, None, 1e-5)
    with pytest.raises(RuntimeError, match="the norms come together"):
        op(xp, h0, h0, w, None, None, None, g, None, None, None, 1e-5)
    with pytest.raises(RuntimeError, match="bias comes with the norms"):
        op(xp, h0, h0, w, None, None, None, None, g, None, None, 1e-5)
    out = op(xp, h0, h0, w, g, gc, None, g, g, None, None, 1e-5)[0]  # both: runs
    assert out.shape == (2, 4, Hs) and torch.isfinite(out).all()


def _step(T, H=128, B=8, seed=0):
    """One native LayerNorm-LSTM training step at length T (B x T x 4H floats per saved buffer: above the pool's
    1 MiB floor)."""
    torch.manual_seed(seed)
    m = Recurrent(LayerNormLSTMCell, 4, H, implementation="loop")
    m(torch.randn(B, T, 4))[0].sum().backward()
    assert fastloop.last_backend == "native"


def test_pool_shares_blocks_between_nearby_lengths(built, monkeypatch):
    """Blocks come in size classes: a batch a few steps shorter reuses the longer one's blocks instead of
    allocating (and page-faulting) its own."""
    monkeypatch.setattr(fastloop, "BACKEND", "auto")
    _step(100)
    _, _, hits, misses = native.ops().pool_stats()
    _step(97)  # 97/100 of each buffer: the same classes
    _, _, hits2, misses2 = native.ops().pool_stats()
    assert misses2 == misses and hits2 > hits


POOL_SCRIPT = """
import torch
from rnnkit.cells import LayerNormLSTMCell
from rnnkit.layers import Recurrent, fastloop, native
assert native.available()
def step(T):
    m = Recurrent(LayerNormLSTMCell, 4, 128, implementation="loop")
    m(torch.randn(8, T, 4))[0].sum().backward()
    assert fastloop.last_backend == "native"
for T in (300, 400, 500):  # lengths of an earlier workload fill the pool past its limit
    step(T)
kept, _, _, _ = native.ops().pool_stats()
step(150)
_, _, hits, misses = native.ops().pool_stats()
step(150)
kept2, _, hits2, misses2 = native.ops().pool_stats()
print(kept <= 16 << 20, kept2 <= 16 << 20, misses2 == misses, hits2 > hits)
"""


def test_pool_keeps_its_limit_and_follows_the_sizes_in_use(built, tmp_path):
    """With RNNKIT_NATIVE_POOL_MB=16, blocks of earlier lengths fill the pool; a new length's blocks then push the
    oldest out (the pool stays within its limit) and are reused from the next step on, rather than going back to
    the system every step."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "RNNKIT_NATIVE_POOL_MB": "16", "RNNKIT_NATIVE": "1"}
    done = subprocess.run([sys.executable, "-c", POOL_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 4


def test_native_propagates_nan(built, monkeypatch):
    m = make("lstm", torch.float32)
    x = torch.randn(2, 4, I)
    x[1, 2, 0] = float("nan")
    monkeypatch.setattr(fastloop, "BACKEND", "auto")
    with torch.no_grad():
        out, (h, c) = m(x)
    assert fastloop.last_backend == "native"
    assert torch.isfinite(out[0]).all() and torch.isfinite(out[1, :2]).all()
    assert torch.isnan(out[1, 2:]).all() and torch.isnan(h[0, 1]).all() and torch.isnan(c[0, 1]).all()


def test_zoneout_and_bfloat16_run_the_python_loop(built, monkeypatch):
    monkeypatch.setattr(fastloop, "BACKEND", "auto")
    m = make("lstm", torch.float32, zoneout=0.2).eval()
    m(torch.randn(2, 3, I))
    assert fastloop.last_backend == "python"
    m = make("lstm", torch.bfloat16)
    m(torch.randn(2, 3, I, dtype=torch.bfloat16))
    assert fastloop.last_backend == "python"


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(native, "_state", {})


def test_a_failed_build_warns_once_and_the_python_loop_runs(fresh_state, monkeypatch, caplog):
    def no_compiler():
        raise RuntimeError("Error building extension 'rnnkit_lstm_loop'\ng++: not found")

    monkeypatch.setattr(native, "_build", no_compiler)
    monkeypatch.setenv("RNNKIT_NATIVE", "auto")
    m = make("lstm", torch.float32)
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        m(torch.randn(2, 3, I))
        m(torch.randn(2, 3, I))
    assert fastloop.last_backend == "python"
    warnings = [r.getMessage() for r in caplog.records if "native LSTM loop unavailable" in r.getMessage()]
    assert warnings == [
        "native LSTM loop unavailable (RuntimeError: Error building extension 'rnnkit_lstm_loop'); "
        "using the Python loop"
    ]


def test_rnnkit_native_1_makes_a_failed_build_an_error(fresh_state, monkeypatch):
    monkeypatch.setattr(native, "_build", lambda: (_ for _ in ()).throw(OSError("read-only file system")))
    monkeypatch.setenv("RNNKIT_NATIVE", "1")
    with pytest.raises(RuntimeError, match="RNNKIT_NATIVE=1 but the native LSTM loop did not build: read-only"):
        native.available()


def test_rnnkit_native_0_and_bad_values(fresh_state, monkeypatch):
    monkeypatch.setattr(native, "_build", lambda: pytest.fail("RNNKIT_NATIVE=0 must not build"))
    monkeypatch.setenv("RNNKIT_NATIVE", "0")
    assert not native.available()
    make("lstm", torch.float32)(torch.randn(2, 3, I))
    assert fastloop.last_backend == "python"
    monkeypatch.setenv("RNNKIT_NATIVE", "yes")
    with pytest.raises(ValueError, match="RNNKIT_NATIVE must be 0, 1 or auto, got 'yes'"):
        native.available()


def test_build_folder_names_torch_python_and_instruction_set(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_EXT_DIR", str(tmp_path))
    where = native.build_dir()
    assert where.parent == tmp_path
    assert torch.__version__.replace("+", "_") in where.name and where.name.endswith(("-avx2", "-base"))
    monkeypatch.delenv("RNNKIT_EXT_DIR")
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    assert native.build_dir().parent == tmp_path / "home" / "ext"
