"""rnnkit's reference loop ≡ rnnkit's fused path ≡ torch.nn, with seeded random weights (float64).

Covers RNN (tanh, relu), LSTM (with and without proj_size) and GRU, 1–3 layers, both directions,
batch_first true/false, with and without an initial state: outputs, final states, and the gradients
of the input, the initial state and every parameter. Then ragged batches: ``lengths=`` ≡ each
sequence alone ≡ torch on a PackedSequence.
"""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import GRU, LSTM, RNN, Recurrent

I, H = 4, 5
KINDS = {
    "rnn_tanh": (RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (LSTM, torch.nn.LSTM, {"proj_size": 3}),
    "gru": (GRU, torch.nn.GRU, {}),
}


def make_trio(kind, num_layers, bidirectional, batch_first, seed=0):
    ours_cls, torch_cls, kw = KINDS[kind]
    torch.manual_seed(seed)
    ref = torch_cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **kw).double()
    fused = ours_cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **kw)
    loop = ours_cls(
        I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, implementation="loop", **kw
    )
    fused, loop = fused.double(), loop.double()
    fused.load_state_dict(ref.state_dict())  # torch -> rnnkit
    ref2 = torch_cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, **kw).double()
    ref2.load_state_dict(fused.state_dict())  # rnnkit -> torch
    loop.load_state_dict(ref2.state_dict())
    return ref, fused, loop


def initial_state(kind, num_layers, bidirectional, batch):
    n = num_layers * (2 if bidirectional else 1)
    out = 3 if kind == "lstm_proj" else H
    h0 = torch.randn(n, batch, out, dtype=torch.double, requires_grad=True)
    if kind.startswith("lstm"):
        return (h0, torch.randn(n, batch, H, dtype=torch.double, requires_grad=True))
    return h0


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def loss_and_grads(module, x, hx, out_fn=lambda o: o):
    out, state = module(x, hx)
    out = out_fn(out)
    loss = (out * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)).sum() + sum(
        (s * 0.7).sum() for s in as_tuple(state)
    )
    leaves = [x, *(as_tuple(hx) if hx is not None else ()), *module.parameters()]
    return out, as_tuple(state), torch.autograd.grad(loss, leaves)


CASES = list(itertools.product(KINDS, [1, 2, 3], [False, True], [True, False], [False, True]))


@pytest.mark.parametrize("kind, num_layers, bidirectional, batch_first, with_state", CASES)
def test_loop_equals_fused_equals_torch(kind, num_layers, bidirectional, batch_first, with_state):
    ref, fused, loop = make_trio(kind, num_layers, bidirectional, batch_first)
    B, T = 3, 6
    shape = (B, T, I) if batch_first else (T, B, I)
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=torch.double, requires_grad=True)
    hx = initial_state(kind, num_layers, bidirectional, B) if with_state else None
    o_ref, s_ref, g_ref = loss_and_grads(ref, x, hx)
    for module, path in ((fused, "fused"), (loop, "loop")):
        o, s, g = loss_and_grads(module, x, hx)
        assert module.last_path == path
        torch.testing.assert_close(o, o_ref)
        for a, b in zip(s, s_ref, strict=True):
            torch.testing.assert_close(a, b)
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_lengths_equal_each_sequence_alone_and_torch_packed(kind, num_layers, bidirectional):
    ref, fused, loop = make_trio(kind, num_layers, bidirectional, batch_first=True)
    lengths = torch.tensor([5, 2, 7, 1, 5])
    B, T = len(lengths), 8  # T > max length: trailing padding everywhere
    torch.manual_seed(2)
    x = torch.randn(B, T, I, dtype=torch.double, requires_grad=True)
    hx = initial_state(kind, num_layers, bidirectional, B)
    # garbage in the padding must not matter
    pad = (torch.arange(T)[None, :] >= lengths[:, None]).unsqueeze(-1)
    x_garbage = torch.where(pad, torch.full_like(x, 1e3), x)

    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    o_p, s_p = ref(packed, hx)
    o_p, _ = pad_packed_sequence(o_p, batch_first=True, total_length=T)
    s_p = as_tuple(s_p)
    for module, path in ((fused, "fused"), (loop, "loop")):
        o, s = module(x_garbage, hx, lengths=lengths)
        assert module.last_path == path
        s = as_tuple(s)
        torch.testing.assert_close(o, o_p)
        assert bool((o[pad.expand(-1, -1, o.shape[-1])] == 0).all())
        for a, b in zip(s, s_p, strict=True):
            torch.testing.assert_close(a, b)
        # each sequence alone, through torch, with its own slice of the initial state
        for b in range(B):
            L = int(lengths[b])
            hb = tuple(h[:, b : b + 1] for h in as_tuple(hx))
            ob, sb = ref(x[b : b + 1, :L], hb if len(hb) > 1 else hb[0])
            torch.testing.assert_close(o[b : b + 1, :L], ob)
            for a, c in zip(s, as_tuple(sb), strict=True):
                torch.testing.assert_close(a[:, b : b + 1], c)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_gradients_match_torch_packed(kind):
    ref, fused, loop = make_trio(kind, 2, True, batch_first=True)
    lengths = torch.tensor([3, 6, 1])
    torch.manual_seed(3)
    x = torch.randn(3, 6, I, dtype=torch.double, requires_grad=True)

    def grads(module, packed):
        if packed:
            o, s = module(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            o, _ = pad_packed_sequence(o, batch_first=True, total_length=6)
        else:
            o, s = module(x, lengths=lengths)
        loss = (o**2).sum() + sum(t.sum() for t in as_tuple(s))
        return torch.autograd.grad(loss, [x, *module.parameters()])

    g_ref = grads(ref, True)
    for module in (fused, loop):
        for a, b in zip(grads(module, False), g_ref, strict=True):
            torch.testing.assert_close(a, b)


def test_packed_sequence_in_packed_sequence_out():
    ref, fused, _ = make_trio("lstm", 2, True, batch_first=False)
    x = torch.randn(7, 4, I, dtype=torch.double)
    packed = pack_padded_sequence(x, torch.tensor([7, 3, 5, 2]), enforce_sorted=False)
    o_ref, (h_ref, c_ref) = ref(packed)
    o, (h, c) = fused(packed)
    assert isinstance(o, torch.nn.utils.rnn.PackedSequence)
    torch.testing.assert_close(o.data, o_ref.data)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_input_like_torch(kind):
    ref, fused, loop = make_trio(kind, 2, True, batch_first=True)
    x = torch.randn(6, I, dtype=torch.double)
    o_ref, s_ref = ref(x)
    for m in (fused, loop):
        o, s = m(x)
        torch.testing.assert_close(o, o_ref)
        for a, b in zip(as_tuple(s), as_tuple(s_ref), strict=True):
            torch.testing.assert_close(a, b)


def test_generic_recurrent_with_lstm_cell_equals_drop_in():
    from rnnkit.cells import LSTMCell

    torch.manual_seed(0)
    dropin = LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True).double()
    for impl in ("auto", "loop"):
        gen = Recurrent(LSTMCell, I, H, num_layers=2, bidirectional=True, implementation=impl).double()
        with torch.no_grad():
            for layer in range(2):
                for d in range(2):
                    sfx = f"_l{layer}" + ("_reverse" if d else "")
                    for name, p in gen.cells[layer][d].named_parameters():
                        p.copy_(getattr(dropin, name + sfx))
        x = torch.randn(3, 5, I, dtype=torch.double)
        lengths = torch.tensor([5, 2, 4])
        o1, (h1, c1) = dropin(x, lengths=lengths)
        o2, (h2, c2) = gen(x, lengths=lengths)
        assert gen.last_path == ("fused" if impl == "auto" else "loop")
        torch.testing.assert_close(o1, o2)
        torch.testing.assert_close(h1, h2)
        torch.testing.assert_close(c1, c2)


def test_state_dict_keys_are_torch_keys():
    for kind, (ours_cls, torch_cls, kw) in KINDS.items():
        ours = ours_cls(I, H, num_layers=2, bidirectional=True, **kw)
        theirs = torch_cls(I, H, num_layers=2, bidirectional=True, **kw)
        assert list(ours.state_dict()) == list(theirs.state_dict()), kind
        assert isinstance(ours, torch_cls)


def test_device_and_dtype_follow_the_module():
    m = LSTM(I, H, batch_first=True).double()
    o, (h, c) = m(torch.randn(2, 3, I, dtype=torch.double), lengths=torch.tensor([3, 1]))
    assert o.dtype == h.dtype == c.dtype == torch.double
