"""Attention: each score against a hand computation, masking ≡ per-sequence, one-step ≡ many-step,
precomputed keys ≡ not, fully masked rows, gradients, and every error path."""

import math

import pytest
import torch

from rnnkit.layers import Attention, lengths_to_mask, masked_softmax

B, TQ, TK, Q, K, V = 4, 3, 6, 5, 5, 7
LENGTHS = torch.tensor([6, 2, 4, 1])
SCORES = ["dot", "general", "additive"]
GARBAGE = 1e30


def make(score, query_size=Q, key_size=K, seed=0, **kw):
    torch.manual_seed(seed)
    return Attention(query_size, key_size, score=score, **kw).double()


def tensors(seed=0, query_size=Q, key_size=K, tq=None):
    g = torch.Generator().manual_seed(seed)
    shape = (B, query_size) if tq is None else (B, tq, query_size)
    q = torch.randn(*shape, generator=g, dtype=torch.float64)
    k = torch.randn(B, TK, key_size, generator=g, dtype=torch.float64)
    v = torch.randn(B, TK, V, generator=g, dtype=torch.float64)
    return q, k, v


def with_garbage(x, lengths, value=GARBAGE):
    """Fill the padded steps of x (B, T, ...) with huge values."""
    pad = ~lengths_to_mask(lengths, x.shape[1])
    return x.masked_fill(pad.unsqueeze(-1), value)


def hand_softmax(scores):
    e = [math.exp(s - max(scores)) for s in scores]
    return torch.tensor([x / sum(e) for x in e], dtype=torch.float64)


def hand_attention(score_fn, q, k, v):
    """Per example, per key, in plain Python-ish loops: (B, Q), (B, Tk, K), (B, Tk, V) -> (B, V), (B, Tk)."""
    ctxs, ws = [], []
    for b in range(q.shape[0]):
        w = hand_softmax([float(score_fn(q[b], k[b, s])) for s in range(k.shape[1])])
        ws.append(w)
        ctxs.append(sum(w[s] * v[b, s] for s in range(k.shape[1])))
    return torch.stack(ctxs), torch.stack(ws)


# -- scores against hand computations ------------------------------------------------------------


def test_dot_matches_hand_computation():
    attn = make("dot")
    q, k, v = tensors()
    ctx, w = attn(q, k, v)
    ctx_ref, w_ref = hand_attention(lambda qb, ks: qb @ ks, q, k, v)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(ctx, ctx_ref)


def test_general_matches_hand_computation_with_different_sizes():
    attn = make("general", query_size=3, key_size=K)
    q, k, v = tensors(query_size=3)
    W = attn.weight.detach()
    assert W.shape == (3, K)
    ctx, w = attn(q, k, v)
    ctx_ref, w_ref = hand_attention(lambda qb, ks: qb @ W @ ks, q, k, v)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(ctx, ctx_ref)


def test_general_with_identity_equals_dot():
    general, dot = make("general"), make("dot")
    with torch.no_grad():
        general.weight.copy_(torch.eye(Q, dtype=torch.float64))
    q, k, v = tensors()
    mask = lengths_to_mask(LENGTHS, TK)
    for a, b in zip(general(q, k, v, mask), dot(q, k, v, mask), strict=True):
        torch.testing.assert_close(a, b)


def test_additive_matches_hand_computation():
    attn = make("additive", query_size=3, key_size=K, hidden_size=9)
    q, k, v = tensors(query_size=3)
    Wq, bq = attn.query_proj.weight.detach(), attn.query_proj.bias.detach()
    Wk, va = attn.key_proj.weight.detach(), attn.v.weight.detach()[0]
    assert (Wq.shape, Wk.shape, va.shape, attn.key_proj.bias) == ((9, 3), (9, K), (9,), None)
    ctx, w = attn(q, k, v)
    ctx_ref, w_ref = hand_attention(lambda qb, ks: va @ torch.tanh(Wq @ qb + bq + Wk @ ks), q, k, v)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(ctx, ctx_ref)


def test_additive_hidden_size_defaults_to_key_size():
    attn = Attention(3, 8, score="additive")
    assert attn.hidden_size == 8 and attn.v.weight.shape == (1, 8)
    assert Attention(4, 4).hidden_size is None
    assert "score='additive'" in repr(attn) and "hidden_size=8" in repr(attn)


def test_dot_has_no_parameters():
    assert list(Attention(Q, K, "dot").parameters()) == []


# -- shared behaviour, every score ---------------------------------------------------------------


@pytest.mark.parametrize("score", SCORES)
def test_weights_sum_to_one_on_real_positions_and_zero_on_padding(score):
    attn = make(score)
    q, k, v = tensors(tq=TQ)
    mask = lengths_to_mask(LENGTHS, TK)
    _, w = attn(q, k, v, mask)
    assert w.shape == (B, TQ, TK)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, TQ, dtype=torch.float64))
    assert (w.masked_select(~mask.unsqueeze(1)) == 0).all()
    assert (w.masked_select(mask.unsqueeze(1)) > 0).all()


@pytest.mark.parametrize("score", SCORES)
def test_context_is_weights_times_values(score):
    attn = make(score)
    q, k, v = tensors(tq=TQ)
    ctx, w = attn(q, k, v, lengths_to_mask(LENGTHS, TK))
    assert ctx.shape == (B, TQ, V)
    torch.testing.assert_close(ctx, torch.einsum("bqs,bsv->bqv", w, v))


@pytest.mark.parametrize("score", SCORES)
def test_values_default_to_keys(score):
    attn = make(score)
    q, k, _ = tensors()
    ctx, w = attn(q, k)
    assert ctx.shape == (B, K)
    torch.testing.assert_close(ctx, torch.einsum("bs,bsk->bk", w, k))


@pytest.mark.parametrize("score", SCORES)
def test_two_d_query_equals_three_d_query_step_by_step(score):
    attn = make(score)
    q3, k, v = tensors(tq=TQ)
    mask = lengths_to_mask(LENGTHS, TK)
    ctx3, w3 = attn(q3, k, v, mask)
    for t in range(TQ):
        ctx2, w2 = attn(q3[:, t], k, v, mask)
        assert ctx2.shape == (B, V) and w2.shape == (B, TK)
        torch.testing.assert_close(ctx2, ctx3[:, t])
        torch.testing.assert_close(w2, w3[:, t])


@pytest.mark.parametrize("score", SCORES)
def test_padding_contents_never_matter_and_masked_equals_per_sequence(score):
    attn = make(score)
    q, k, v = tensors(tq=TQ)
    mask = lengths_to_mask(LENGTHS, TK)
    ctx, w = attn(q, with_garbage(k, LENGTHS), with_garbage(v, LENGTHS), mask)
    ctx_clean, w_clean = attn(q, with_garbage(k, LENGTHS, 0.0), with_garbage(v, LENGTHS, 0.0), mask)
    assert torch.isfinite(ctx).all()
    torch.testing.assert_close(ctx, ctx_clean, rtol=0, atol=0)
    torch.testing.assert_close(w, w_clean, rtol=0, atol=0)
    for b, n in enumerate(LENGTHS.tolist()):
        ctx_b, w_b = attn(q[b : b + 1], k[b : b + 1, :n], v[b : b + 1, :n])  # alone, unpadded, no mask
        torch.testing.assert_close(ctx[b : b + 1], ctx_b)
        torch.testing.assert_close(w[b : b + 1, :, :n], w_b)


@pytest.mark.parametrize("score", SCORES)
def test_fully_masked_row_gives_zeros_not_nan_forward_and_backward(score):
    attn = make(score)
    q, k, v = tensors()
    q.requires_grad_(True)
    mask = lengths_to_mask(LENGTHS, TK)
    mask[2] = False
    ctx, w = attn(q, k, v, mask)
    assert torch.isfinite(ctx).all() and torch.isfinite(w).all()
    assert (w[2] == 0).all() and (ctx[2] == 0).all()
    torch.testing.assert_close(w[[0, 1, 3]].sum(-1), torch.ones(3, dtype=torch.float64))
    ctx.sum().backward()
    assert torch.isfinite(q.grad).all()
    for p in attn.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("score", SCORES)
def test_gradients_flow_to_query_keys_values_and_parameters(score):
    attn = make(score)
    q, k, v = (t.requires_grad_(True) for t in tensors(tq=TQ))
    mask = lengths_to_mask(LENGTHS, TK)
    ctx, _ = attn(q, with_garbage(k, LENGTHS).detach().requires_grad_(True), v, mask)
    ctx.pow(2).sum().backward()
    ctx, _ = attn(q, k, v, mask)
    ctx.pow(2).sum().backward()
    for name, t in [("query", q), ("keys", k), ("values", v), *attn.named_parameters()]:
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name
    # padded keys and values get exactly zero gradient
    pad = ~mask
    assert (k.grad[pad] == 0).all() and (v.grad[pad] == 0).all()


@pytest.mark.parametrize("score", SCORES)
def test_precomputed_keys_equal_recomputed_in_a_decoder_loop(score):
    attn = make(score)
    q3, k, v = tensors(tq=TQ)
    mask = lengths_to_mask(LENGTHS, TK)
    pk = attn.project_keys(k)
    expected = attn.hidden_size if score == "additive" else K
    assert pk.shape == (B, TK, expected)
    if score != "additive":
        assert pk is k  # nothing to precompute: dot/general score the raw keys
    for t in range(TQ):
        a = attn(q3[:, t], k, v, mask, projected_keys=pk)
        b = attn(q3[:, t], k, v, mask)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_additive_projected_keys_are_actually_used():
    attn = make("additive")
    q, k, v = tensors()
    ctx, _ = attn(q, k, v, projected_keys=torch.zeros(B, TK, K, dtype=torch.float64))
    # zero key projections make every key score the same: the context is the plain mean of values
    torch.testing.assert_close(ctx, v.mean(1))


def test_masked_softmax_without_mask_is_softmax():
    s = torch.randn(3, 5)
    torch.testing.assert_close(masked_softmax(s, None), torch.softmax(s, -1))


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"query_size": 4, "key_size": 5, "score": "dot"}, r"score='dot' needs query_size == key_size.*4.*5"),
        ({"query_size": 4, "key_size": 4, "score": "cosine"}, r"score must be one of .*'cosine'"),
        ({"query_size": 4, "key_size": 4, "score": "dot", "hidden_size": 8}, r"hidden_size is only used by"),
        ({"query_size": 4, "key_size": 4, "score": "general", "hidden_size": 8}, r"hidden_size is only used by"),
        ({"query_size": 0, "key_size": 4}, r"query_size must be a positive int, got 0"),
        ({"query_size": 4, "key_size": 2.0}, r"key_size must be a positive int, got 2.0"),
        ({"query_size": 4, "key_size": 4, "score": "additive", "hidden_size": -1}, r"hidden_size .* got -1"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attention(**kwargs)


def _bad_inputs():
    q, k, v = tensors()
    mask = lengths_to_mask(LENGTHS, TK)
    return [
        ({"query": q[..., :3]}, r"query must have shape \(B, 5\) or \(B, Tq, 5\), got \(4, 3\)"),
        ({"query": q.view(B, 1, 1, Q)}, r"query must have shape .* got \(4, 1, 1, 5\)"),
        ({"keys": k[0]}, r"keys must have shape \(B, Tk, 5\), got \(6, 5\)"),
        ({"keys": k[..., :2]}, r"keys must have shape \(B, Tk, 5\), got \(4, 6, 2\)"),
        ({"query": q[:2]}, r"query has batch size 2 but keys have 4"),
        ({"values": v[:, :3]}, r"values must have shape \(4, 6, V\) like keys, got \(4, 3, 7\)"),
        ({"mask": mask.float()}, r"mask must be a bool tensor .* got torch.float32"),
        ({"mask": mask[:, :3]}, r"mask must have shape \(4, 6\), got \(4, 3\)"),
        ({"projected_keys": k[:, :2]}, r"projected_keys must have shape \(4, 6, \d+\) .* got \(4, 2, 5\)"),
    ]


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_bad_forward_inputs_raise(score, case):
    attn = make(score)
    q, k, v = tensors()
    override, match = _bad_inputs()[case]
    args = {"query": q, "keys": k, "values": v, **override}
    with pytest.raises(ValueError, match=match):
        attn(**args)


def test_project_keys_validates_shape():
    with pytest.raises(ValueError, match=r"keys must have shape \(B, Tk, 5\), got \(4, 6, 3\)"):
        make("additive").project_keys(torch.zeros(4, 6, 3, dtype=torch.float64))
