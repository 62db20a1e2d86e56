"""PyTorch's RNN/LSTM/GRU tests, run on torch.nn (the control) and on rnnkit's drop-ins under every implementation.

Mirrors test/test_nn.py (``test_rnn_args_check``, ``test_projections_lstm_args_check``,
``test_RNN_input_size_zero``, ``test_invalid_dropout_p``, ``test_RNN_dropout``, ``test_RNN_dropout_state``,
``test_RNN_change_dropout``, ``test_rnn_initial_hidden_state``, ``test_pack_sequence`` /
``test_pack_padded_sequence`` through a layer, ``test_RNN_cpu_vs_cudnn_*``'s forward/backward comparisons (here
against torch.nn in float64), ``test_rnn_weight_norm``-style state_dict round trips) and test/test_modules.py's
``module_db`` entries for RNN/LSTM/GRU (the no-batch-dim samples and ``module_error_inputs_torch_nn_RNN_GRU``).
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

MODES = ("RNN", "LSTM", "GRU")
I, H = 3, 4


def build(module, mode, *args, dtype=torch.float64, **kwargs):
    """``module``'s layer and a torch.nn twin holding the same parameters (float64)."""
    m = module(mode, *args, **kwargs).to(dtype)
    ref = getattr(torch.nn, mode)(*args, **kwargs).to(dtype)
    ref.load_state_dict(m.state_dict())
    return m, ref


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def assert_same_run(m, ref, x, hx=None, grads=True):
    """Outputs, final states and (with ``grads``) the gradients of input, state and parameters agree."""
    leaves = [t for t in (x, *(as_tuple(hx) if hx is not None else ())) if t.requires_grad]
    results = []
    for net in (m, ref):
        out, state = net(x, hx)
        results.append((out, as_tuple(state)))
        if grads:
            loss = out.pow(2).sum() + sum((s * 0.3).sum() for s in as_tuple(state))
            results[-1] += (torch.autograd.grad(loss, [*leaves, *net.parameters()]),)
    for a, b in zip(results[0], results[1], strict=True):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            torch.testing.assert_close(u, v)


def state_for(mode, n, batch, proj=0, unbatched=False, requires_grad=False):
    shape = (n, H) if unbatched else (n, batch, H)
    hshape = shape[:-1] + (proj or H,)
    h = torch.randn(hshape, dtype=torch.float64, requires_grad=requires_grad)
    if mode == "LSTM":
        return h, torch.randn(shape, dtype=torch.float64, requires_grad=requires_grad)
    return h


# -- module_db: RNN/GRU/LSTM samples (no-batch-dim and batched), forward and backward against torch.nn -----
CONFIGS = [
    (mode, bias, batch_first, bidirectional, proj)
    for mode, bias, batch_first, bidirectional, proj in itertools.product(
        MODES, (False, True), (False, True), (False, True), (0, 2)
    )
    if proj == 0 or mode == "LSTM"
]


@pytest.mark.parametrize("mode, bias, batch_first, bidirectional, proj", CONFIGS)
def test_module_db_samples_match_torch(module, mode, bias, batch_first, bidirectional, proj):
    """module_db's samples: 2 layers, unbatched (T, I) input with and without hx; plus a batched one."""
    kw = dict(num_layers=2, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if proj:
        kw["proj_size"] = proj
    m, ref = build(module, mode, I, H, **kw)
    n = 2 * (2 if bidirectional else 1)
    x = torch.randn(5, I, dtype=torch.float64, requires_grad=True)
    assert_same_run(m, ref, x)
    assert_same_run(m, ref, x, state_for(mode, n, None, proj, unbatched=True, requires_grad=True))
    xb = torch.randn((2, 5, I) if batch_first else (5, 2, I), dtype=torch.float64, requires_grad=True)
    assert_same_run(m, ref, xb, state_for(mode, n, 2, proj, requires_grad=True))
    out, state = m(x)
    assert out.shape == (5, (proj or H) * (2 if bidirectional else 1))
    assert as_tuple(state)[0].shape == (n, proj or H)


@pytest.mark.parametrize("mode", MODES)
def test_rnn_initial_hidden_state(module, mode):
    """test_nn.py test_rnn_initial_hidden_state: hx=None is the zero state."""
    m, _ = build(module, mode, I, H, num_layers=2)
    x = torch.randn(5, 3, I, dtype=torch.float64)
    zeros = state_for(mode, 2, 3)
    zeros = tuple(torch.zeros_like(z) for z in as_tuple(zeros))
    out0, s0 = m(x)
    out1, s1 = m(x, zeros if mode == "LSTM" else zeros[0])
    torch.testing.assert_close(out0, out1)
    for a, b in zip(as_tuple(s0), as_tuple(s1), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_RNN_input_size_zero_batch(module, mode):
    """test_nn.py test_RNN_input_size_zero: a batch of zero sequences runs and gives empty outputs."""
    m = module(mode, I, H)
    out, state = m(torch.zeros(5, 0, I))
    assert out.shape == (5, 0, H)
    assert as_tuple(state)[0].shape == (1, 0, H)


# -- errors: module_error_inputs_torch_nn_RNN_GRU, test_rnn_args_check, test_projections_lstm_args_check -------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((10, 0, 1), {}, ValueError, "hidden_size must be greater than zero"),
        ((10, 10, 0), {}, ValueError, "num_layers must be greater than zero"),
        ((3, 5), {"bias": 0}, TypeError, "bias should be of type bool, got: int"),
        ((3, 5), {"batch_first": "False"}, TypeError, "batch_first should be of type bool, got: str"),
        ((3, 5), {"dropout": 1.1}, ValueError, r"dropout should be a number in range \[0, 1\]"),
        ((3, 5), {"dropout": -0.1}, ValueError, r"dropout should be a number in range \[0, 1\]"),
    ],
)
def test_constructor_errors(module, mode, args, kwargs, error, message):
    """module_error_inputs_torch_nn_RNN_GRU's construction errors and test_nn.py test_invalid_dropout_p."""
    with pytest.raises(error, match=message):
        module(mode, *args, **kwargs)


def test_projections_lstm_args_check(module):
    """test_nn.py test_projections_lstm_args_check: proj_size must be smaller than hidden_size."""
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        module("LSTM", I, H, proj_size=H)


def _bad_calls(mode, bidirectional, proj=0):
    """(input, hx, error type, message regex): test_rnn_args_check's cases, in torch's words."""
    D = 2 if bidirectional else 1
    n, B, T = 2 * D, 3, 5
    out = proj or H
    x = torch.randn(T, B, I, dtype=torch.float64)
    lstm = mode == "LSTM"

    def hx(h_shape, c_shape=None):
        h = torch.zeros(h_shape, dtype=torch.float64)
        return (h, torch.zeros(c_shape or (n, B, H), dtype=torch.float64)) if lstm else h

    hidden = r"hidden\[0\]" if lstm else "hidden"
    cases = [
        (
            torch.randn(T, B, I + 1, dtype=torch.float64),
            None,
            RuntimeError,
            re.escape("input.size(-1) must be equal to input_size. Expected 3, got 4"),
        ),
        (
            x,
            hx((n, B + 1, out)),
            RuntimeError,
            f"Expected {hidden} size \\({n}, {B}, {out}\\), got \\[{n}, {B + 1}, {out}\\]",
        ),
        (
            x,
            hx((n + 1, B, out)),
            RuntimeError,
            f"Expected {hidden} size \\({n}, {B}, {out}\\), got \\[{n + 1}, {B}, {out}\\]",
        ),
        (
            x,
            hx((n, B, out + 1)),
            RuntimeError,
            f"Expected {hidden} size \\({n}, {B}, {out}\\), got \\[{n}, {B}, {out + 1}\\]",
        ),
        (x, hx((n, B, out, 1)), RuntimeError, "For batched 3-D input, hx"),
        (
            torch.randn(T, I, dtype=torch.float64),
            hx((n, 1, out), (n, 1, H)),
            RuntimeError,
            "For unbatched 2-D input, hx",
        ),
        (torch.randn(T, B, 1, I, dtype=torch.float64), None, ValueError, "Expected input to be 2D or 3D, got 4D"),
        (torch.randn(0, B, I, dtype=torch.float64), None, RuntimeError, "Expected sequence length to be larger than 0"),
        (
            x.float(),
            None,
            ValueError,
            re.escape("RNN input dtype (torch.float32) does not match weight dtype (torch.float64)"),
        ),
    ]
    if lstm:
        cases.append((x, hx((n, B, out), (n, B, H + 1)), RuntimeError, r"Expected hidden\[1\] size"))
        cases.append((x, hx((n, B, out), (n, B + 1, H)), RuntimeError, r"Expected hidden\[1\] size"))
    return cases


@pytest.mark.parametrize(
    "mode, bidirectional, proj", [("RNN", False, 0), ("GRU", True, 0), ("LSTM", False, 0), ("LSTM", True, 2)]
)
def test_rnn_args_check(module, mode, bidirectional, proj):
    """test_nn.py test_rnn_args_check / test_projections_lstm_args_check and module_db's dtype-mismatch error:
    the same exception type and message as torch.nn (rnnkit's shape errors are also ValueErrors)."""
    m = module(mode, I, H, num_layers=2, bidirectional=bidirectional, **({"proj_size": proj} if proj else {}))
    m = m.double()
    for x, hx, error, message in _bad_calls(mode, bidirectional, proj):
        with pytest.raises(error, match=message):
            m(x, hx)
        if not module.is_torch and error is RuntimeError:
            with pytest.raises(ValueError):  # the callers of earlier rnnkit versions still catch them
                m(x, hx)


# -- dropout: test_RNN_dropout, test_RNN_dropout_state, test_RNN_change_dropout, test_invalid_dropout_p ------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_RNN_change_dropout(module, mode, p):
    """dropout 0 and 1 are deterministic in training: the results equal torch.nn's, also after changing
    ``module.dropout`` between calls (test_RNN_change_dropout); 1.0 is accepted (test_invalid_dropout_p)."""
    m, ref = build(module, mode, I, H, num_layers=2, dropout=p)
    m.train(), ref.train()
    x = torch.randn(5, 2, I, dtype=torch.float64, requires_grad=True)
    assert_same_run(m, ref, x)
    m.dropout = ref.dropout = 1.0 - p
    assert_same_run(m, ref, x)


@pytest.mark.parametrize("mode", MODES)
def test_RNN_dropout_state(module, mode):
    """test_RNN_dropout_state: dropout acts in training only; in eval the result does not depend on it and
    equals torch's, and a training run with dropout draws a different result from an eval run."""
    m, ref = build(module, mode, I, H, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, I, dtype=torch.float64)
    m.eval(), ref.eval()
    assert_same_run(m, ref, x, grads=False)
    m.train()
    out_train = m(x)[0]
    m.eval()
    assert not torch.allclose(out_train, m(x)[0])


def test_dropout_with_one_layer_warns_like_torch(module):
    """torch warns when dropout is set on a single layer (it only acts between layers)."""
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        module("LSTM", I, H, dropout=0.3)


# -- packed sequences --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence_matches_torch(module, mode, enforce_sorted, bidirectional):
    """module_db's packed-sequence samples: the output PackedSequence has torch's data, batch sizes and index
    tensors (None for enforce_sorted=True), the final state torch's, with and without hx."""
    m, ref = build(module, mode, I, H, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([5, 3, 3, 2]) if enforce_sorted else torch.tensor([3, 5, 2, 3])
    x = torch.randn(5, 4, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    n = 2 * (2 if bidirectional else 1)
    for hx in (None, state_for(mode, n, 4)):
        (out, state), (r_out, r_state) = m(packed, hx), ref(packed, hx)
        assert type(out) is type(r_out)
        torch.testing.assert_close(out.data, r_out.data)
        assert torch.equal(out.batch_sizes, r_out.batch_sizes)
        for mine, theirs in (
            (out.sorted_indices, r_out.sorted_indices),
            (out.unsorted_indices, r_out.unsorted_indices),
        ):
            assert (mine is None) == (theirs is None)
            if theirs is not None:
                assert torch.equal(mine, theirs)
        for a, b in zip(as_tuple(state), as_tuple(r_state), strict=True):
            torch.testing.assert_close(a, b)
        padded, lens = pad_packed_sequence(out)
        assert torch.equal(lens, lengths)
        assert padded.shape == (5, 4, H * (2 if bidirectional else 1))


# -- construction: parameters, state_dict, RNG, flatten, device/dtype -------------------------------------
@pytest.mark.parametrize(
    "mode, kwargs",
    [
        ("RNN", {"num_layers": 2, "nonlinearity": "relu"}),
        ("GRU", {"bidirectional": True, "bias": False}),
        ("LSTM", {"num_layers": 3, "bidirectional": True, "proj_size": 2}),
        ("LSTM", {"num_layers": 2, "dropout": 0.2, "batch_first": True}),
    ],
)
def test_construction_draws_what_torch_draws(module, mode, kwargs):
    """Swapping torch.nn's layer for rnnkit's changes no random number: after seeding, construction leaves the
    global RNG where torch.nn's leaves it, with the same weights, names and order."""
    torch.manual_seed(7)
    m = module(mode, I, H, **kwargs)
    after = torch.get_rng_state()
    torch.manual_seed(7)
    ref = getattr(torch.nn, mode)(I, H, **kwargs)
    assert torch.equal(after, torch.get_rng_state())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip_and_flatten(module, mode):
    """state_dict keys and shapes are torch's both ways; flatten_parameters and all_weights work; a module
    moved with .double() after loading computes torch's result."""
    m = module(mode, I, H, num_layers=2, bidirectional=True)
    ref = getattr(torch.nn, mode)(I, H, num_layers=2, bidirectional=True)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    m.load_state_dict(ref.state_dict())
    m.flatten_parameters()
    assert [[p.shape for p in ws] for ws in m.all_weights] == [[p.shape for p in ws] for ws in ref.all_weights]
    m.double(), ref.double()
    assert_same_run(m, ref, torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True))


def test_factory_kwargs(module):
    """device= and dtype= reach the parameters, as in torch."""
    m = module("GRU", I, H, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, h = m(torch.randn(4, 2, I, dtype=torch.float64))
    assert out.dtype == h.dtype == torch.float64
