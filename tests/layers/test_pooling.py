"""Pooling: masked ≡ per-sequence on ragged batches with garbage in the padding, bidirectional
"last", attention pooling against a hand computation, and every error path."""

import pytest
import torch

from rnnkit.layers import (
    AttentionPooling,
    Pooling,
    bidirectional_last,
    last_pool,
    lengths_to_mask,
    max_pool,
    mean_pool,
)

B, T, H = 4, 6, 5
LENGTHS = torch.tensor([6, 2, 4, 1])


def ragged(seed=0, garbage=1e30, size=H):
    """A (B, T, size) batch whose padded steps hold ``garbage`` (huge, so it would win a max or swamp a mean)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, size, generator=g, dtype=torch.float64)
    pad = ~lengths_to_mask(LENGTHS, T)
    return x.masked_fill(pad.unsqueeze(-1), garbage)


def per_sequence(fn, x):
    return torch.stack([fn(x[b, :n]) for b, n in enumerate(LENGTHS.tolist())])


@pytest.mark.parametrize("garbage", [1e30, -1e30, float("inf"), float("nan")])
@pytest.mark.parametrize(
    "pool, reference",
    [
        (mean_pool, lambda s: s.mean(0)),
        (max_pool, lambda s: s.amax(0)),
        (last_pool, lambda s: s[-1]),
    ],
)
def test_pooling_equals_per_sequence_whatever_the_padding_holds(pool, reference, garbage):
    x = ragged(garbage=garbage)
    out = pool(x, LENGTHS)
    assert out.shape == (B, H)
    torch.testing.assert_close(out, per_sequence(reference, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("pool, reference", [(mean_pool, torch.mean), (max_pool, torch.amax)])
def test_pooling_without_lengths_uses_every_step(pool, reference):
    x = ragged(garbage=0.0)
    torch.testing.assert_close(pool(x), reference(x, dim=1))
    torch.testing.assert_close(pool(x, torch.full((B,), T)), reference(x, dim=1))


def test_last_pool_without_lengths_is_the_final_step():
    x = ragged(garbage=0.0)
    torch.testing.assert_close(last_pool(x), x[:, -1])


def test_lengths_may_be_a_list():
    x = ragged()
    torch.testing.assert_close(mean_pool(x, LENGTHS.tolist()), mean_pool(x, LENGTHS))


def test_max_pool_gradient_reaches_only_real_steps():
    x = ragged().requires_grad_(True)
    max_pool(x, LENGTHS).sum().backward()
    pad = ~lengths_to_mask(LENGTHS, T)
    assert (x.grad[pad] == 0).all()
    assert x.grad.sum() == B * H  # one argmax per feature per sequence


def test_bidirectional_last_takes_forward_at_end_and_backward_at_start():
    x = ragged(size=2 * H)
    out = bidirectional_last(x, LENGTHS)
    assert out.shape == (B, 2 * H)
    expected = per_sequence(lambda s: torch.cat([s[-1, :H], s[0, H:]]), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # and it is not what a plain "last" gives
    assert not torch.equal(out, last_pool(x, LENGTHS))
    # without lengths: forward at T - 1, backward at 0
    torch.testing.assert_close(bidirectional_last(x), torch.cat([x[:, -1, :H], x[:, 0, H:]], -1))


def test_bidirectional_last_on_a_real_bidirectional_gru_matches_its_final_state():
    from rnnkit.layers import GRU

    torch.manual_seed(0)
    gru = GRU(3, H, batch_first=True, bidirectional=True).double()
    x = torch.randn(B, T, 3, dtype=torch.float64)
    out, h_n = gru(x, lengths=LENGTHS)
    torch.testing.assert_close(bidirectional_last(out, LENGTHS), torch.cat([h_n[0], h_n[1]], -1))


# -- attention pooling ------------------------------------------------------------------------------


def make_attention(hidden_size=None, seed=0):
    torch.manual_seed(seed)
    return AttentionPooling(H, hidden_size).double()


def test_attention_pooling_matches_hand_computation():
    pool = make_attention(hidden_size=7)
    x = ragged(garbage=0.0)
    W, b, v = pool.proj.weight.detach(), pool.proj.bias.detach(), pool.v.weight.detach()[0]
    assert W.shape == (7, H) and pool.v.bias is None
    pooled, w = pool(x)
    for i in range(B):
        scores = torch.stack([v @ torch.tanh(W @ x[i, t] + b) for t in range(T)])
        a = torch.exp(scores) / torch.exp(scores).sum()
        torch.testing.assert_close(w[i], a)
        torch.testing.assert_close(pooled[i], (a[:, None] * x[i]).sum(0))


@pytest.mark.parametrize("garbage", [1e30, float("inf"), float("nan")])
def test_attention_pooling_ignores_padding_and_equals_per_sequence(garbage):
    pool = make_attention()
    x = ragged(garbage=garbage)
    pooled, w = pool(x, LENGTHS)
    assert pooled.shape == (B, H) and w.shape == (B, T)
    mask = lengths_to_mask(LENGTHS, T)
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, dtype=torch.float64))
    for b, n in enumerate(LENGTHS.tolist()):
        pooled_b, w_b = pool(x[b : b + 1, :n])  # alone, unpadded
        torch.testing.assert_close(pooled[b : b + 1], pooled_b)
        torch.testing.assert_close(w[b : b + 1, :n], w_b)


def test_attention_pooling_gradients_are_finite_and_reach_parameters():
    pool = make_attention()
    x = ragged().requires_grad_(True)
    pooled, _ = pool(x, LENGTHS)
    pooled.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~lengths_to_mask(LENGTHS, T)] == 0).all()
    for name, p in pool.named_parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# -- the Pooling module -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, fn", [("mean", mean_pool), ("max", max_pool), ("last", last_pool)])
def test_pooling_module_dispatches_by_kind(kind, fn):
    x = ragged()
    pooled, weights = Pooling(kind)(x, LENGTHS)
    assert weights is None
    torch.testing.assert_close(pooled, fn(x, LENGTHS), rtol=0, atol=0)


def test_pooling_module_attention_returns_weights():
    torch.manual_seed(0)
    module = Pooling("attention", input_size=H, hidden_size=3).double()
    x = ragged()
    pooled, weights = module(x, LENGTHS)
    assert module.attention.hidden_size == 3 and module.output_size == H
    expected = module.attention(x, LENGTHS)
    torch.testing.assert_close(pooled, expected[0])
    torch.testing.assert_close(weights, expected[1])


def test_pooling_module_bidirectional_changes_last_only():
    x = ragged(size=2 * H)
    pooled, _ = Pooling("last", input_size=2 * H, bidirectional=True)(x, LENGTHS)
    torch.testing.assert_close(pooled, bidirectional_last(x, LENGTHS))
    for kind, fn in [("mean", mean_pool), ("max", max_pool)]:
        torch.testing.assert_close(Pooling(kind, bidirectional=True)(x, LENGTHS)[0], fn(x, LENGTHS))
    assert "bidirectional=True" in repr(Pooling("last", bidirectional=True))


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("average",), {}, r"kind must be one of \('last', 'mean', 'max', 'attention'\), got 'average'"),
        (("attention",), {}, r"kind='attention' needs input_size"),
        (("mean",), {"hidden_size": 4}, r"hidden_size is only used by kind='attention'"),
        (("mean",), {"input_size": 0}, r"input_size must be a positive int, got 0"),
        (("last",), {"input_size": 5, "bidirectional": True}, r"bidirectional input_size must be even.*got 5"),
        (("last",), {"bidirectional": "yes"}, r"bidirectional must be a bool"),
        (("attention",), {"input_size": 4, "hidden_size": 0}, r"hidden_size must be a positive int, got 0"),
    ],
)
def test_pooling_module_bad_arguments_raise(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Pooling(*args, **kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: mean_pool(x[0]), r"mean_pool: x must have shape \(B, T, H\), got \(6, 5\)"),
        (lambda x: max_pool(x, torch.tensor([1, 2])), r"lengths must have shape \(4,\), got \(2,\)"),
        (lambda x: last_pool(x, torch.tensor([1, 2, 7, 1])), r"lengths must lie in \[1, 6\].*max 7"),
        (lambda x: mean_pool(x, torch.tensor([1, 0, 2, 1])), r"lengths must lie in \[1, 6\].*min 0"),
        (lambda x: mean_pool(x, torch.tensor([1.0, 2.0, 2.0, 1.0])), r"lengths must be integers"),
        (lambda x: bidirectional_last(x), r"last dim must be even .* got 5"),
        (lambda x: Pooling("mean", input_size=3)(x), r"Pooling: x must have shape \(B, T, 3\), got \(4, 6, 5\)"),
        (lambda x: AttentionPooling(3)(x), r"AttentionPooling: x must have shape \(B, T, 3\), got \(4, 6, 5\)"),
        (lambda x: AttentionPooling(H)(x, [1, 2]), r"lengths must have shape \(4,\)"),
    ],
)
def test_bad_pooling_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(ragged().float())
