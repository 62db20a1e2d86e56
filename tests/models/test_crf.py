from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.models import CRF

K = 3


def make_case(seed: int = 0, lengths=(4, 2, 1, 3), T: int = 4):
    torch.manual_seed(seed)
    crf = CRF(K).double()
    with torch.no_grad():  # larger than the init, so the transitions matter
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(len(lengths), T, K, dtype=torch.float64)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return crf, emissions, mask


def brute_score(crf: CRF, e: torch.Tensor, y: tuple[int, ...]) -> torch.Tensor:
    """s(y) for one sequence straight from the definition."""
    s = crf.start_transitions[y[0]] + crf.end_transitions[y[-1]]
    for t, tag in enumerate(y):
        s = s + e[t, tag]
        if t:
            s = s + crf.transitions[y[t - 1], tag]
    return s


def brute_force(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor):
    """Per sequence: log Z, the best sequence and its score, by enumerating all K^n tag sequences."""
    out = []
    for e, m in zip(emissions, mask, strict=True):
        n = int(m.sum())
        paths = list(itertools.product(range(K), repeat=n))
        scores = torch.stack([brute_score(crf, e[:n], y) for y in paths])
        out.append((torch.logsumexp(scores, 0), list(paths[int(scores.argmax())]), scores.max()))
    return out


def test_log_partition_and_viterbi_equal_brute_force_enumeration():
    crf, emissions, mask = make_case()
    expected = brute_force(crf, emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    tags, scores = crf.viterbi(emissions, mask)
    for b, (z, best, best_score) in enumerate(expected):
        n = len(best)
        assert torch.allclose(log_z[b], z, atol=1e-10)
        assert tags[b, :n].tolist() == best
        assert (tags[b, n:] == -100).all()
        assert torch.allclose(scores[b], best_score, atol=1e-10)
        assert torch.allclose(crf.score(emissions, tags, mask)[b], best_score, atol=1e-10)


def test_nll_is_log_z_minus_score_and_non_negative_with_reductions():
    crf, emissions, mask = make_case(1)
    tags = torch.randint(0, K, mask.shape).masked_fill(~mask, -100)  # padding tags: anything
    nll = crf.nll(emissions, tags, mask, reduction="none")
    expected = crf.log_partition(emissions, mask) - crf.score(emissions, tags, mask)
    assert torch.allclose(nll, expected) and (nll >= 0).all()
    for b in range(len(tags)):  # the score of the given tags, by hand
        n = int(mask[b].sum())
        assert torch.allclose(crf.score(emissions, tags, mask)[b], brute_score(crf, emissions[b], tags[b, :n].tolist()))
    assert torch.allclose(crf.nll(emissions, tags, mask, reduction="sum"), nll.sum())
    assert torch.allclose(crf(emissions, tags, mask), nll.mean())
    assert torch.allclose(crf.nll(emissions, tags, mask, reduction="token_mean"), nll.sum() / mask.sum())
    with pytest.raises(ValueError, match="reduction must be one of"):
        crf.nll(emissions, tags, mask, reduction="avg")


def test_no_mask_means_every_step_is_real():
    crf, emissions, _ = make_case(2, lengths=(4, 4))
    full = torch.ones(2, 4, dtype=torch.bool)
    assert torch.allclose(crf.log_partition(emissions), crf.log_partition(emissions, full))
    assert torch.equal(crf.viterbi(emissions)[0], crf.viterbi(emissions, full)[0])


@pytest.mark.parametrize("garbage", [1e30, float("inf"), float("nan")])
def test_padding_emissions_change_nothing_and_get_zero_gradient(garbage):
    crf, emissions, mask = make_case(3)
    tags = torch.randint(0, K, mask.shape)
    dirty = emissions.clone().masked_fill(~mask.unsqueeze(-1), garbage).requires_grad_()
    clean = emissions.clone().requires_grad_()
    for fn in (crf.log_partition, lambda e, m: crf.nll(e, tags, m, reduction="none")):
        assert torch.allclose(fn(dirty, mask), fn(clean, mask))
    assert torch.equal(crf.viterbi(dirty, mask)[0], crf.viterbi(clean, mask)[0])
    crf.nll(dirty, tags, mask).backward()
    assert torch.isfinite(dirty.grad).all() and (dirty.grad[~mask] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_gradients_are_finite_and_match_finite_differences():
    crf, emissions, mask = make_case(4, lengths=(3, 1), T=3)
    tags = torch.randint(0, K, mask.shape)
    emissions.requires_grad_()
    # d log Z / d emissions are the tag marginals: each real step's row sums to 1, padding gets 0
    (g,) = torch.autograd.grad(crf.log_partition(emissions, mask).sum(), emissions)
    assert torch.allclose(g.sum(-1), mask.double())

    def nll(e, a, b, A):
        params = {"start_transitions": a, "end_transitions": b, "transitions": A}
        return torch.func.functional_call(crf, params, (e, tags, mask))

    inputs = (emissions, *(p.detach().clone().requires_grad_() for p in crf.parameters()))
    assert torch.autograd.gradcheck(nll, inputs)


def test_validation_messages():
    crf = CRF(K)
    e = torch.randn(2, 3, K)
    with pytest.raises(ValueError, match=r"expected emissions \(B, T, 3\), got \(2, 3, 4\)"):
        crf.log_partition(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="at least one real step"):
        crf.log_partition(e, torch.tensor([[True, True, False], [False, False, False]]))
    with pytest.raises(ValueError, match="must be a prefix"):
        crf.log_partition(e, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match=r"tags at real steps must lie in \[0, 3\)"):
        crf.score(e, torch.tensor([[0, 1, 3], [0, 0, 0]]))
    with pytest.raises(ValueError, match="num_tags must be a positive int"):
        CRF(0)
