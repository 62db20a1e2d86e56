"""Transforms a torch.nn user applies to a model: torch.compile (training and evaluation), second-order
gradients, CPU autocast and torch.func.vmap, on torch.nn (the control, where torch supports it) and on every
rnnkit path, including the options that force the loop (zoneout, recurrent dropout).

Mirrors test/test_nn.py's ``test_RNN_cpu_vs_cudnn_*`` gradient checks and ``_assertGradAndGradgradChecks``
use for recurrent layers (as gradgradcheck on the hand-differentiated loop), and test/test_modules.py's
``test_cpu_gpu_parity``-style autocast dtype checks (``module_db`` ``test_forward`` under autocast).
"""

from __future__ import annotations

import pytest
import torch

import rnnkit.layers as rk
from rnnkit.cells import LayerNormLSTMCell
from rnnkit.layers import fastloop

MODES = ("RNN", "LSTM", "GRU")
I, H = 3, 4


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def build(module, mode, **kwargs):
    m = module(mode, I, H, batch_first=True, **kwargs).double()
    ref = getattr(torch.nn, mode)(I, H, batch_first=True, **kwargs).double()
    ref.load_state_dict(m.state_dict())
    return m, ref


def gradient_penalty_grads(net, x, params):
    """The parameters' gradients of ``|d loss / d x|^2`` (a double backward through the layer)."""
    out, state = net(x)
    loss = out.pow(2).sum() + as_tuple(state)[-1].sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    return torch.autograd.grad(gx.pow(2).sum(), [x, *params])


# -- second-order gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2, "bidirectional": True}])
def test_double_backward_matches_torch(module, mode, kwargs):
    """A gradient penalty (create_graph=True, then backward) gives torch.nn's second-order gradients on
    every path, the hand-differentiated LSTM loop included."""
    m, ref = build(module, mode, **kwargs)
    x = torch.randn(2, 5, I, dtype=torch.float64, requires_grad=True)
    ours = gradient_penalty_grads(m, x, list(m.parameters()))
    theirs = gradient_penalty_grads(ref, x, list(ref.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("options", [{"zoneout": 0.3}, {"recurrent_dropout": 0.3}, {}])
def test_double_backward_of_loop_only_options_equals_reference(monkeypatch, backend, options):
    """zoneout and recurrent dropout force the loop: its second-order gradients equal the autograd reference
    loop's under the same random draws, in training, with ragged lengths, on both loop backends."""
    monkeypatch.setattr(fastloop, "BACKEND", "auto" if backend == "native" else "python")
    nets = {}
    for impl in ("loop", "reference"):
        torch.manual_seed(0)
        nets[impl] = rk.LSTM(I, H, batch_first=True, implementation=impl, **options).double().train()
    x = torch.randn(3, 5, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    grads = {}
    for impl, net in nets.items():
        torch.manual_seed(1)
        out, (h, c) = net(x, lengths=lengths)
        (gx,) = torch.autograd.grad(out.pow(2).sum() + c.sum(), x, create_graph=True)
        grads[impl] = torch.autograd.grad(gx.pow(2).sum(), [x, *net.parameters()])
    for a, b in zip(grads["loop"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b)


def test_gradgradcheck_of_the_layer_norm_loop():
    """gradgradcheck (numerical vs analytic second derivatives) through the hand-differentiated loop of a
    layer-normalised LSTM, whose double backward recomputes through plain autograd ops."""
    torch.manual_seed(0)
    net = rk.Recurrent(LayerNormLSTMCell, 2, 2, implementation="loop").double()
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    w = net.cells[0][0].weight_hh

    def f(x, w_hh):
        return torch.func.functional_call(net, {"cells.0.0.weight_hh": w_hh}, (x,))[0]

    assert torch.autograd.gradgradcheck(f, (x, w.detach().clone().requires_grad_()))
    assert net.last_path == "loop"


# -- autocast -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_cpu_autocast_dtypes_match_torch(module, mode):
    """Under CPU autocast (bfloat16) the output and final state come back in torch.nn's dtypes on every path
    (bfloat16 for LSTM and RNN, whose kernels autocast lowers; float32 for the GRU, whose kernel it does not),
    and the parameters' gradients stay float32."""
    m = module(mode, I, H, batch_first=True)
    ref = getattr(torch.nn, mode)(I, H, batch_first=True)
    x = torch.randn(2, 5, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = m(x)
        r_out, r_state = ref(x)
    assert out.dtype == r_out.dtype == (torch.float32 if mode == "GRU" else torch.bfloat16)
    assert [s.dtype for s in as_tuple(state)] == [s.dtype for s in as_tuple(r_state)]
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in m.parameters())


# -- vmap ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_vmap_runs_per_sample(module, mode):
    """torch.func.vmap over a batch of independent inputs equals running them one by one. torch.nn's fused
    kernel has no batching rule (torch raises, as checked on the control); rnnkit runs its autograd
    reference loop under any torch.func transform, so every rnnkit path works."""
    m = module(mode, I, H, batch_first=True).double()
    xs = torch.randn(3, 2, 5, I, dtype=torch.float64)
    f = torch.func.vmap(lambda x: m(x)[0])
    if module.is_torch:
        with pytest.raises(RuntimeError, match="Batching rule not implemented"):
            f(xs)
        return
    got = f(xs)
    torch.testing.assert_close(got, torch.stack([m(x)[0] for x in xs]))


def test_func_grad_through_the_loop():
    """torch.func.grad (a functorch transform) through an LSTM that asks for the loop equals autograd."""
    m = rk.LSTM(I, H, batch_first=True, implementation="loop").double()
    x = torch.randn(2, 5, I, dtype=torch.float64, requires_grad=True)
    got = torch.func.grad(lambda x: m(x)[0].pow(2).sum())(x)
    (want,) = torch.autograd.grad(m(x)[0].pow(2).sum(), x)
    torch.testing.assert_close(got, want)


# -- torch.compile ------------------------------------------------------------------------------------
class Head(torch.nn.Module):
    """A model holding a recurrent layer: what users compile."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.out = torch.nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 1)

    def forward(self, x):
        return self.out(self.rnn(x)[0]).sum()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
def test_compile_matches_eager(module, mode, training):
    """torch.compile (AOTAutograd, the eager backend: dynamo tracing and the joint graph, without codegen) of
    a model holding the layer gives eager's loss and gradients, in training and evaluation, on every path."""
    torch.manual_seed(0)
    model = Head(module(mode, I, H, batch_first=True, num_layers=2, bidirectional=True)).train(training)
    x = torch.randn(2, 5, I)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    want = model(x)
    want_grads = torch.autograd.grad(want, list(model.parameters()))
    got = compiled(x)
    got_grads = torch.autograd.grad(got, list(model.parameters()))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("options", [{"zoneout": 0.2}, {"recurrent_dropout": 0.2}])
def test_compile_of_loop_only_options(options):
    """Options that force the loop compile too; evaluation (deterministic) matches eager, training runs and
    back-propagates."""
    torch.manual_seed(0)
    model = Head(rk.LSTM(I, H, batch_first=True, **options))
    x = torch.randn(2, 5, I)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    compiled(x).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    torch.testing.assert_close(compiled(x), model(x))


def test_compile_with_inductor():
    """The default backend (inductor) on the fused path in training: loss and gradients equal eager's."""
    torch.manual_seed(0)
    model = Head(rk.LSTM(I, H, batch_first=True))
    x = torch.randn(2, 5, I)
    torch._dynamo.reset()
    got = torch.compile(model)(x)
    got_grads = torch.autograd.grad(got, list(model.parameters()))
    want = model(x)
    want_grads = torch.autograd.grad(want, list(model.parameters()))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)
