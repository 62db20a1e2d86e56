"""Search over hand-built decoders: greedy ≡ beam-1 ≡ top-k-1 ≡ temperature 0, beam beats greedy where it
should, beam ≡ exhaustive search, batched ≡ per example, eos handling, length penalty, nucleus sampling,
seeds, attention collection, nests, and every error path."""

import dataclasses
import itertools
import math
from collections import namedtuple

import pytest
import torch

from rnnkit.decoding import (
    BeamOptions,
    beam_search,
    beam_search_with,
    expand_state,
    filter_logits,
    greedy,
    length_penalty_factor,
    sample,
    select_state,
)

BOS, EOS, A, B_ = 0, 1, 2, 3


def table_step(tables):
    """A decoder over a fixed table: logits = tables[t][prev token] (log-probs), t = steps taken so far.

    ``tables`` (T, V, V) or, per example, (B, T, V, V). The state is ``{"t": (B,), "tables": ...}``.
    The state's ``attention`` is one-hot of the token fed (so its rows show the path taken).
    """

    def step(tokens, state):
        t = state["t"]
        tab = state["tables"]
        rows = torch.arange(tokens.shape[0])
        logits = tab[rows, t.clamp(max=tab.shape[1] - 1), tokens]
        att = torch.nn.functional.one_hot(tokens, tab.shape[-1]).float()
        return logits, {"t": t + 1, "tables": tab, "attention": att}

    return step


def start_state(tables, batch_size=None):
    if tables.dim() == 3:
        tables = tables.unsqueeze(0).expand(batch_size, *tables.shape)
    return {"t": torch.zeros(tables.shape[0], dtype=torch.long), "tables": tables}


def markov(probs_by_t, V=4):
    """Hand-written transition probabilities {t: {prev: {next: p}}} -> log-prob tables (T, V, V)."""
    T = max(probs_by_t) + 1
    tab = torch.full((T, V, V), 1e-6)
    for t, rows in probs_by_t.items():
        for prev, nxt in rows.items():
            for tok, p in nxt.items():
                tab[t, prev, tok] = p
    return (tab / tab.sum(-1, keepdim=True)).log()


def random_tables(batch, T=8, V=6, seed=0, eos_boost=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, T, V, V, generator=g) * 2
    logits[..., BOS] = float("-inf")  # bos is never produced
    logits[..., EOS] += eos_boost * torch.linspace(-2, 3, T).view(1, T, 1)  # eos gets likelier over time
    return logits.log_softmax(-1)


# greedy takes A (0.6) then eos (0.4): 0.24. The best sequence is B eos: 0.4 * 0.9 = 0.36.
TRAP = markov({0: {BOS: {A: 0.6, B_: 0.4}}, 1: {A: {EOS: 0.4, A: 0.3, B_: 0.3}, B_: {EOS: 0.9, A: 0.05, B_: 0.05}}})


# -- greedy and beam ------------------------------------------------------------------------------
def test_greedy_misses_what_beam_finds():
    step = table_step(TRAP)
    g = greedy(step, start_state(TRAP, 1), BOS, EOS, max_len=5)
    assert g.sequences == [[A]] and g.finished == [True]
    assert g.scores[0] == pytest.approx(math.log(0.24), abs=1e-4)
    b = beam_search(step, start_state(TRAP, 1), BOS, EOS, beam_size=2, max_len=5, length_penalty=0.0)
    assert b.sequences == [[B_]]
    assert b.scores[0] == pytest.approx(math.log(0.36), abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("early_stopping", ["exact", "heuristic"])
def test_beam_of_one_is_greedy(seed, early_stopping):
    tables = random_tables(5, seed=seed)
    g = greedy(table_step(tables), start_state(tables), BOS, EOS, max_len=8)
    b = beam_search(
        table_step(tables), start_state(tables), BOS, EOS, 1, 8, length_penalty=0.0, early_stopping=early_stopping
    )
    assert b.sequences == g.sequences
    assert b.finished == g.finished
    for hb, hg in zip(b.hypotheses, g.hypotheses, strict=True):
        assert hb[0].log_prob == pytest.approx(hg[0].log_prob, abs=1e-5)
    assert not all(g.finished) or len({len(s) for s in g.sequences}) > 1  # the case is not degenerate


def exhaustive(tables_b, max_len, alpha, V):
    """Best (score, tokens) over every sequence: eos-terminated, or max_len tokens without eos."""
    best = []
    for n in range(1, max_len + 1):
        for body in itertools.product(range(2, V), repeat=n - 1):
            for last in [EOS, *range(2, V)] if n == max_len else [EOS]:
                seq = [*body, last]
                prev, lp_sum = BOS, 0.0
                for t, tok in enumerate(seq):
                    lp_sum += float(tables_b[min(t, tables_b.shape[0] - 1), prev, tok])
                    prev = tok
                fin = last == EOS
                score = lp_sum / length_penalty_factor(n, alpha)
                best.append((score, seq[:-1] if fin else seq))
    return max(best, key=lambda x: x[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_is_exhaustive_search(alpha):
    V, max_len = 4, 4
    tables = random_tables(3, T=max_len, V=V, seed=7)
    # 2 non-eos tokens: at most 2**3 live prefixes, so a beam of 8 never prunes anything
    res = beam_search(table_step(tables), start_state(tables), BOS, EOS, 8, max_len, length_penalty=alpha)
    for b in range(3):
        score, seq = exhaustive(tables[b], max_len, alpha, V)
        assert res.sequences[b] == seq
        assert res.scores[b] == pytest.approx(score, abs=1e-5)


def every_hypothesis(tables_b, max_len, alpha, V, style):
    """(score, tokens, finished) of every sequence a search can return (eos-terminated, or max_len tokens
    without eos), best first."""
    found = []
    for n in range(1, max_len + 1):
        for body in itertools.product(range(2, V), repeat=n - 1):
            for last in [EOS, *range(2, V)] if n == max_len else [EOS]:
                prev, lp_sum = BOS, 0.0
                for t, tok in enumerate([*body, last]):
                    lp_sum += float(tables_b[min(t, tables_b.shape[0] - 1), prev, tok])
                    prev = tok
                fin = last == EOS
                found.append((lp_sum / length_penalty_factor(n, alpha, style), [*body] if fin else [*body, last], fin))
    return sorted(found, key=lambda x: x[0], reverse=True)


@pytest.mark.parametrize("style", ["gnmt", "simple"])
@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.8])
def test_wide_beam_n_best_is_brute_force_n_best(style, alpha):
    V, max_len, n_best = 4, 4, 4
    tables = random_tables(3, T=max_len, V=V, seed=11)
    # 2 non-eos tokens, 3 possible ones: at most 2**3 * 3 = 24 finite extensions per step, so a beam of 24
    # keeps every one of them and its n best must be the n best of all sequences
    options = BeamOptions(24, max_len, length_penalty=alpha, n_best=n_best, length_penalty_style=style)
    res = beam_search_with(table_step(tables), start_state(tables), BOS, EOS, options)
    for b in range(3):
        expected = every_hypothesis(tables[b], max_len, alpha, V, style)[:n_best]
        got = res.hypotheses[b]
        assert [(h.tokens, h.finished) for h in got] == [(seq, fin) for _, seq, fin in expected]
        assert [h.score for h in got] == pytest.approx([score for score, _, _ in expected], abs=1e-5)


def test_beam_search_keywords_and_options_agree():
    tables = random_tables(4, T=6, V=5, seed=5)
    kw = {"length_penalty": 0.6, "n_best": 2, "length_penalty_style": "simple", "early_stopping": "heuristic"}
    a = beam_search(table_step(tables), start_state(tables), BOS, EOS, 3, 6, **kw)
    b = beam_search_with(table_step(tables), start_state(tables), BOS, EOS, BeamOptions(3, 6, **kw))
    assert [[(h.tokens, h.score) for h in hs] for hs in a.hypotheses] == [
        [(h.tokens, h.score) for h in hs] for hs in b.hypotheses
    ]
    with pytest.raises(ValueError, match="n_best \\(4\\) cannot exceed beam_size \\(3\\)"):
        BeamOptions(3, 6, n_best=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        BeamOptions(3, 6).beam_size = 5  # type: ignore[misc]


@pytest.mark.parametrize("early_stopping", ["exact", "heuristic"])
def test_batched_beam_equals_each_example_alone(early_stopping):
    tables = random_tables(6, T=10, V=6, seed=3, eos_boost=0.6)
    bos = torch.tensor([0, 2, 3, 4, 5, 2])  # a different start per example
    kw = dict(beam_size=3, max_len=10, length_penalty=0.7, n_best=2, early_stopping=early_stopping)
    batched = beam_search(table_step(tables), start_state(tables), bos, EOS, **kw)
    lengths = set()
    for b in range(6):
        alone = beam_search(table_step(tables[b : b + 1]), start_state(tables[b : b + 1]), bos[b : b + 1], EOS, **kw)
        assert len(batched.hypotheses[b]) == 2
        for hb, ha in zip(batched.hypotheses[b], alone.hypotheses[0], strict=True):
            assert hb.tokens == ha.tokens and hb.finished == ha.finished
            assert hb.score == pytest.approx(ha.score, abs=1e-6)
            assert torch.equal(hb.attention, ha.attention)
        lengths.add(len(batched.sequences[b]))
    assert len(lengths) > 2  # examples end at different times


def test_greedy_batched_equals_alone_and_stops_at_eos():
    tables = random_tables(5, seed=11)
    batched = greedy(table_step(tables), start_state(tables), BOS, EOS, max_len=8)
    for b in range(5):
        alone = greedy(table_step(tables[b : b + 1]), start_state(tables[b : b + 1]), BOS, EOS, max_len=8)
        assert alone.sequences[0] == batched.sequences[b]
        assert EOS not in batched.sequences[b]
    assert len({len(s) for s in batched.sequences}) > 1


# -- eos handling and length penalty --------------------------------------------------------------
# "A eos" (0.55 * 0.9, 2 steps) against "B B B B eos" (0.45 * 0.95**3 * 0.99, 5 steps)
PENALTY = markov(
    {
        0: {BOS: {A: 0.55, B_: 0.45}},
        1: {A: {EOS: 0.9, A: 0.05, B_: 0.05}, B_: {B_: 0.95, A: 0.025, EOS: 0.025}},
        2: {A: {EOS: 0.9, A: 0.05, B_: 0.05}, B_: {B_: 0.95, A: 0.025, EOS: 0.025}},
        3: {A: {EOS: 0.9, A: 0.05, B_: 0.05}, B_: {B_: 0.95, A: 0.025, EOS: 0.025}},
        4: {A: {EOS: 0.9, A: 0.05, B_: 0.05}, B_: {EOS: 0.99, A: 0.005, B_: 0.005}},
    }
)


def counting(step):
    calls = []

    def wrapped(tokens, state):
        calls.append(tokens.clone())
        return step(tokens, state)

    return wrapped, calls


def test_length_penalty_changes_the_choice():
    short = math.log(0.55 * 0.9)
    long = math.log(0.45 * 0.95**3 * 0.99)
    step, calls = counting(table_step(PENALTY))
    raw = beam_search(step, start_state(PENALTY, 1), BOS, EOS, 2, max_len=10, length_penalty=0.0)
    assert raw.sequences == [[A]] and raw.scores[0] == pytest.approx(short, abs=1e-4)
    assert len(calls) == 2  # done as soon as no live beam can beat "A eos": no step wasted
    norm = beam_search(table_step(PENALTY), start_state(PENALTY, 1), BOS, EOS, 2, max_len=10, length_penalty=1.0)
    assert norm.sequences == [[B_, B_, B_, B_]]
    assert norm.scores[0] == pytest.approx(long / length_penalty_factor(5, 1.0), abs=1e-4)
    assert norm.hypotheses[0][0].log_prob == pytest.approx(long, abs=1e-4)
    simple = beam_search(
        table_step(PENALTY), start_state(PENALTY, 1), BOS, EOS, 2, 10, length_penalty=1.0, length_penalty_style="simple"
    )
    assert simple.sequences == [[B_, B_, B_, B_]]
    assert simple.scores[0] == pytest.approx(long / 5, abs=1e-4)
    # the heuristic stop gives up on "B B ..." after step 2: ending there would not beat "A eos"
    step, calls = counting(table_step(PENALTY))
    quick = beam_search(step, start_state(PENALTY, 1), BOS, EOS, 2, 10, length_penalty=1.0, early_stopping="heuristic")
    assert quick.sequences == [[A]] and len(calls) == 2


def test_poor_early_endings_do_not_stop_the_search():
    """B and C end at once but are unlikely; "A A A" is far likelier and ends later. Four poor
    hypotheses finish before it does: search must go on while the live beam can still beat them."""
    C = 4
    ahead = {A: {A: 0.9, B_: 0.05, C: 0.05}, B_: {EOS: 1.0}, C: {EOS: 1.0}}
    tables = markov(
        {0: {BOS: {A: 0.9, B_: 0.05, C: 0.05}}, 1: ahead, 2: ahead, 3: {**ahead, A: {EOS: 0.99, B_: 0.01}}}, V=5
    )
    for alpha in (0.0, 1.0):
        res = beam_search(table_step(tables), start_state(tables, 1), BOS, EOS, 3, 10, length_penalty=alpha, n_best=3)
        assert res.sequences == [[A, A, A]]
        assert len(res.hypotheses[0]) == 3 and all(h.finished for h in res.hypotheses[0])


def test_finished_hypotheses_are_kept_and_never_extended():
    step, calls = counting(table_step(PENALTY))
    res = beam_search(step, start_state(PENALTY, 1), BOS, EOS, 2, max_len=10, length_penalty=1.0, n_best=2)
    hyps = res.hypotheses[0]
    assert [h.tokens for h in hyps] == [[B_, B_, B_, B_], [A]]  # "A eos" was kept from step 2 on
    assert all(h.finished for h in hyps)
    assert len(calls) == 5  # stopped once both beams had finished, long before max_len
    # a finished beam is never fed again: after step 2 no row carries eos
    assert all(EOS not in c.tolist() for c in calls)
    assert length_penalty_factor(2, 0.0) == 1.0


def test_unfinished_hypotheses_at_max_len():
    res = beam_search(
        table_step(PENALTY), start_state(PENALTY, 1), BOS, EOS, 2, 3, length_penalty=1.0, length_penalty_style="simple"
    )
    # "B B B" has not ended after 3 steps but beats "A eos" under the penalty (-0.90 / 3 > -0.70 / 2)
    assert res.hypotheses[0][0].finished is False
    assert res.sequences == [[B_, B_, B_]]
    g = greedy(table_step(PENALTY), start_state(PENALTY, 1), BOS, EOS, max_len=1)
    assert g.sequences == [[A]] and g.finished == [False]


def test_attention_rows_follow_the_chosen_path():
    tables = random_tables(4, seed=5)
    for res in (
        beam_search(table_step(tables), start_state(tables), BOS, EOS, 3, 8, n_best=3),
        greedy(table_step(tables), start_state(tables), BOS, EOS, 8),
    ):
        for hyps in res.hypotheses:
            for h in hyps:
                fed = [BOS, *h.tokens][: len(h.tokens) + h.finished]
                assert h.attention.shape == (len(h.tokens) + h.finished, 6)
                assert h.attention.argmax(-1).tolist() == fed
    assert greedy(lambda t, s: (torch.zeros(2, 5), s), None, BOS, EOS, 3, batch_size=2).attention is None


# -- sampling -------------------------------------------------------------------------------------
def test_sampling_degenerate_cases_are_greedy():
    tables = random_tables(5, seed=2)
    g = greedy(table_step(tables), start_state(tables), BOS, EOS, 8)
    gen = torch.Generator().manual_seed(0)
    for kw in (dict(top_k=1), dict(temperature=0), dict(temperature=1e-4), dict(top_p=1e-6)):
        s = sample(table_step(tables), start_state(tables), BOS, EOS, 8, generator=gen, **kw)
        assert s.sequences == g.sequences, kw
        assert s.scores == pytest.approx(g.scores)


NUCLEUS_PROBS = torch.tensor([0.0, 0.02, 0.4, 0.3, 0.2, 0.05, 0.03])  # top_p=0.75 keeps ids {2, 3, 4}


def constant_step(tokens, state):
    return NUCLEUS_PROBS.log().expand(tokens.shape[0], -1), state


def test_top_p_keeps_only_the_nucleus():
    gen = torch.Generator().manual_seed(0)
    res = sample(constant_step, None, BOS, EOS, max_len=3, batch_size=2000, top_p=0.75, generator=gen)
    drawn = torch.tensor(res.sequences).flatten()
    assert set(drawn.tolist()) == {2, 3, 4}
    freq = torch.bincount(drawn, minlength=7)[2:5].float() / drawn.numel()
    assert torch.allclose(freq, torch.tensor([0.4, 0.3, 0.2]) / 0.9, atol=0.03)  # renormalised nucleus
    top_k = sample(constant_step, None, BOS, EOS, 2, batch_size=500, top_k=2, generator=gen)
    assert set(torch.tensor(top_k.sequences).flatten().tolist()) == {2, 3}


def test_filter_logits():
    logits = NUCLEUS_PROBS.log().expand(2, -1)
    kept = torch.isfinite(filter_logits(logits, top_p=0.75))
    assert kept[0].nonzero().flatten().tolist() == [2, 3, 4]
    kept = torch.isfinite(filter_logits(logits, top_k=3, top_p=0.5))
    assert kept[0].nonzero().flatten().tolist() == [2, 3]
    assert torch.equal(filter_logits(logits, top_k=100, top_p=1.0), logits)


def test_same_seed_same_samples():
    tables = random_tables(8, seed=4)

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample(table_step(tables), start_state(tables), BOS, EOS, 8, temperature=1.5, generator=gen)

    a, b, c = draw(1), draw(1), draw(2)
    assert a.sequences == b.sequences and a.scores == b.scores
    assert a.sequences != c.sequences


# -- nests and errors -----------------------------------------------------------------------------
def test_expand_and_select_state_keep_the_nest():
    Pair = namedtuple("Pair", "h c")
    x = torch.arange(6).view(3, 2)
    state = {"hidden": Pair(x, x + 10), "memory": [x * 2, None], "n": 5, "empty": None}
    e = expand_state(state, 2)
    assert isinstance(e["hidden"], Pair) and isinstance(e["memory"], list)
    assert e["hidden"].h[:, 0].tolist() == [0, 0, 2, 2, 4, 4]
    assert e["memory"][1] is None and e["n"] == 5 and e["empty"] is None
    s = select_state(e, torch.tensor([5, 0]))
    assert s["hidden"].c[:, 0].tolist() == [14, 10]
    assert expand_state(None, 3) is None
    with pytest.raises(ValueError, match="k must be a positive int"):
        expand_state(state, 0)


def test_errors():
    step = table_step(TRAP)
    st = start_state(TRAP, 1)
    with pytest.raises(ValueError, match="n_best .* cannot exceed beam_size"):
        beam_search(step, st, BOS, EOS, beam_size=2, max_len=3, n_best=3)
    with pytest.raises(ValueError, match="beam_size must be an int >= 1"):
        beam_search(step, st, BOS, EOS, beam_size=0, max_len=3)
    with pytest.raises(ValueError, match="early_stopping must be 'exact' or 'heuristic'"):
        beam_search(step, st, BOS, EOS, 2, 3, early_stopping=True)
    with pytest.raises(ValueError, match="length_penalty_style"):
        beam_search(step, st, BOS, EOS, 2, 3, length_penalty_style="wu")
    with pytest.raises(ValueError, match="max_len must be an int >= 1"):
        greedy(step, st, BOS, EOS, max_len=0)
    with pytest.raises(ValueError, match="give batch_size"):
        greedy(constant_step, None, BOS, EOS, 3)
    with pytest.raises(ValueError, match="bos has 2 entries but batch_size is 3"):
        greedy(constant_step, None, torch.tensor([0, 0]), EOS, 3, batch_size=3)
    with pytest.raises(ValueError, match="bos must be an int or a"):
        greedy(constant_step, None, torch.zeros(2), EOS, 3)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        sample(step, st, BOS, EOS, 3, temperature=-1)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sample(step, st, BOS, EOS, 3, top_p=0)
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        sample(step, st, BOS, EOS, 3, top_k=0)
