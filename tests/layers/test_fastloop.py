"""The LSTM cells' hand-differentiated loop (``implementation="loop"``) ≡ the reference loop
(``implementation="reference"``: ``recur`` per step under autograd), in float64: outputs, final states and
the gradients of the input, the initial state and every parameter, with every option the loop serves."""

import pytest
import torch

from rnnkit.cells import LayerNormLSTMCell, LSTMCell
from rnnkit.layers import LSTM, Recurrent, fastloop, native

I, H, B, T = 4, 5, 3, 7

MAKERS = {
    "lstm": lambda impl, **kw: LSTM(I, H, batch_first=True, implementation=impl, **kw),
    "lstm_cell": lambda impl, **kw: Recurrent(LSTMCell, I, H, implementation=impl, **kw),
    "ln_lstm": lambda impl, **kw: Recurrent(LayerNormLSTMCell, I, H, implementation=impl, **kw),
    "ln_lstm_nobias": lambda impl, **kw: Recurrent(LayerNormLSTMCell, I, H, implementation=impl, bias=False, **kw),
}
OPTIONS = {
    "plain": {},
    "two_layers_bidirectional": {"num_layers": 2, "bidirectional": True, "dropout": 0.3},
    "zoneout": {"zoneout": 0.3},
    "recurrent_dropout": {"recurrent_dropout": 0.4},
    "weight_drop": {"weight_drop": 0.3},
    "all": {"zoneout": 0.2, "recurrent_dropout": 0.3, "weight_drop": 0.2, "num_layers": 2},
}


def pair(kind, options, seed=0):
    torch.manual_seed(seed)
    fast = MAKERS[kind]("loop", **options).double()
    ref = MAKERS[kind]("reference", **options).double()
    ref.load_state_dict(fast.state_dict())
    with torch.no_grad():  # move LayerNorm gains/shifts and biases off their defaults
        for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
            p.add_(0.3 * torch.randn_like(p))
            q.copy_(p)
    return fast, ref


def run(module, x, state, lengths, seed):
    torch.manual_seed(seed)  # the same dropout / zoneout draws on both paths
    out, final = module(x, state, lengths=lengths)
    final = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)).sum()
    loss = loss + sum((s * 0.7).sum() for s in final)
    leaves = [x, *state, *module.parameters()]
    return [out, *final, *torch.autograd.grad(loss, leaves)]


@pytest.fixture(params=["native", "python"])
def backend(request, monkeypatch):
    """Both backends of the loop: the C++ one (built on first use) and the Python one."""
    if request.param == "native" and not native.available():
        pytest.skip(f"the native loop did not build here: {native._state.get('error')}")
    monkeypatch.setattr(fastloop, "BACKEND", "auto" if request.param == "native" else "python")
    return request.param


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("ragged", [False, True])
def test_fast_loop_equals_reference(kind, option, training, ragged, backend):
    fast, ref = pair(kind, OPTIONS[option])
    fast.train(training)
    ref.train(training)
    n = fast.num_layers * (2 if fast.bidirectional else 1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, I, dtype=torch.double, generator=gen).requires_grad_()
    state = tuple(torch.randn(n, B, H, dtype=torch.double, generator=gen).requires_grad_() for _ in range(2))
    lengths = torch.tensor([T, 3, 1]) if ragged else None
    got = run(fast, x, state, lengths, seed=2)
    want = run(ref, x, state, lengths, seed=2)
    assert fast.last_path == "loop" and ref.last_path == "reference"
    zoneout = OPTIONS[option].get("zoneout", 0) > 0
    assert fastloop.last_backend == ("python" if zoneout else backend)  # zoneout runs the Python loop
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_fast_loop_serves_the_lstm_cells_only():
    from rnnkit.cells import GRUCell, LayerNormGRUCell

    assert fastloop.supports(LSTMCell(I, H)) and fastloop.supports(LayerNormLSTMCell(I, H))
    assert not fastloop.supports(LSTMCell(I, H, proj_size=2))  # the projection runs the reference step
    assert not fastloop.supports(GRUCell(I, H)) and not fastloop.supports(LayerNormGRUCell(I, H))


def test_projected_lstm_loop_still_equals_torch():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, batch_first=True, proj_size=2).double()
    loop = LSTM(I, H, batch_first=True, proj_size=2, implementation="loop").double()
    loop.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I, dtype=torch.double)
    torch.testing.assert_close(loop(x)[0], ref(x)[0])


def test_fast_loop_float32_close_to_float64():
    fast, _ = pair("ln_lstm", {"zoneout": 0.1})
    x = torch.randn(B, 40, I, dtype=torch.double)
    want = fast.eval()(x)[0]
    got = fast.float()(x.float())[0]
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_autocast_runs_the_reference_loop_and_matches_it():
    fast, ref = pair("ln_lstm", {"zoneout": 0.1})
    fast, ref = fast.float(), ref.float()
    x = torch.randn(B, T, I, requires_grad=True)
    outs = []
    for m in (fast, ref):
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = m(x, lengths=torch.tensor([T, 3, 2]))
        out.float().sum().backward()
        outs.append((out, x.grad.clone()))
        x.grad = None
    assert fast.last_path == "loop"
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=0, rtol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=0, rtol=0)
