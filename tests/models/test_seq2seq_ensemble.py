"""Seq2SeqEnsemble: forward and step are the mixture of the members' next-token probabilities (step ≡ forward,
so beam search ranks by the averaged distribution), the members' mean attention, the mean of their own losses
(each member's gradient is its own over the size), a size-1 ensemble ≡ its member, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from rnnkit.decoding import beam_search, greedy
from rnnkit.models import Seq2Seq, Seq2SeqEnsemble
from rnnkit.models.base import build_model, load_model, save_model

BOS, EOS, V_SRC, V_TGT = 1, 2, 9, 7
MEMBER = dict(
    encoder=dict(vocab_size=V_SRC, embed_dim=5, hidden_size=6, bidirectional=True),
    tgt_vocab_size=V_TGT,
    embed_dim=4,
    hidden_size=12,
)


def make(size, seed=0, **kw):
    torch.manual_seed(seed)
    return Seq2SeqEnsemble(member=MEMBER | kw, size=size).eval()


def ragged(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V_SRC, (4, 6), generator=g)
    tgt = torch.randint(1, V_TGT, (4, 5), generator=g)
    return src, torch.tensor([6, 3, 1, 4]), tgt


def test_size_one_is_its_member():
    ens = make(1)
    (member,) = ens.members
    src, lengths, tgt = ragged()
    logits, att = member(src, lengths, tgt)
    mixed, mixed_att = ens(src, lengths, tgt)
    torch.testing.assert_close(mixed, logits.log_softmax(-1))
    torch.testing.assert_close(mixed_att, att)
    for search in (lambda m: greedy(m.step, m.encode(src, lengths), BOS, EOS, 8),
                   lambda m: beam_search(m.step, m.encode(src, lengths), BOS, EOS, 3, 8)):  # fmt: skip
        assert search(ens).sequences == search(member).sequences


def test_forward_is_the_log_of_the_members_mean_probabilities_and_their_mean_attention():
    ens = make(3)
    src, lengths, tgt = ragged(1)
    outs = [m(src, lengths, tgt) for m in ens.members]
    probs = torch.stack([x.softmax(-1) for x, _ in outs]).mean(0)  # by hand
    mixed, att = ens(src, lengths, tgt)
    assert mixed.shape == (4, 5, V_TGT)
    torch.testing.assert_close(mixed, probs.log())
    torch.testing.assert_close(att, torch.stack([w for _, w in outs]).mean(0))
    torch.testing.assert_close(att.sum(-1), torch.ones(4, 5))
    for (own, own_w), (x, w) in zip(ens.member_outputs(src, lengths, tgt), outs, strict=True):
        torch.testing.assert_close(own, x)
        torch.testing.assert_close(own_w, w)


@pytest.mark.parametrize("kw", [dict(), dict(input_feeding=True, cell="gru"), dict(attention="none")])
def test_stepping_with_gold_tokens_equals_forward(kw):
    ens = make(2, seed=3, **kw)
    src, lengths, tgt = ragged(2)
    mixed, att = ens(src, lengths, tgt, teacher_forcing=1.0)
    state = ens.encode(src, lengths)
    assert len(state["members"]) == 2
    for t in range(tgt.shape[1]):
        step, state = ens.step(tgt[:, t], state)
        torch.testing.assert_close(step, mixed[:, t], atol=1e-5, rtol=0)
        if att is None:
            assert "attention" not in state
        else:
            torch.testing.assert_close(state["attention"], att[:, t], atol=1e-6, rtol=0)


def test_beam_search_scores_are_the_mixtures_log_probabilities():
    ens = make(3, seed=4)
    src, lengths, _ = ragged(3)
    result = beam_search(ens.step, ens.encode(src, lengths), BOS, EOS, 4, 6)
    for b, hyp in enumerate(hyps[0] for hyps in result.hypotheses):
        tokens = [BOS, *hyp.tokens] + ([EOS] if hyp.finished else [])
        tgt_in, tgt_out = torch.tensor([tokens[:-1]]), torch.tensor(tokens[1:])
        with torch.no_grad():
            mixed, _ = ens(src[b : b + 1, : lengths[b]], lengths[b : b + 1], tgt_in)
        expected = mixed[0].gather(1, tgt_out[:, None]).sum()
        assert hyp.log_prob == pytest.approx(float(expected), abs=1e-4)


def test_loss_is_the_mean_of_the_members_own_and_each_gets_its_own_gradient_over_the_size():
    ens = make(3)
    ens.train()  # dropout 0: deterministic
    src, lengths, tgt = ragged()
    tgt_out, tgt_len = torch.roll(tgt, -1, 1), torch.tensor([5, 3, 2, 4])
    loss = ens.loss(src, lengths, tgt, tgt_out, tgt_len)
    own = [m.loss(src, lengths, tgt, tgt_out, tgt_len) for m in ens.members]
    torch.testing.assert_close(loss, torch.stack(own).mean())
    loss.backward()
    for m, member_loss in zip(ens.members, own, strict=True):
        params = list(m.parameters())
        for p, g in zip(params, torch.autograd.grad(member_loss, params), strict=True):
            torch.testing.assert_close(p.grad, g / 3, rtol=1e-5, atol=1e-7)


def test_members_differ_and_the_mixture_stays_finite_when_they_are_sure():
    ens = make(2)
    w = [m.output.weight for m in ens.members]
    assert not torch.equal(w[0], w[1])
    assert ens.num_parameters() == 2 * ens.members[0].num_parameters()
    with torch.no_grad():
        ens.members[0].output.bias.copy_(torch.tensor([1e4, 0, 0, 0, 0, 0, 0]))
        ens.members[1].output.bias.copy_(torch.tensor([0, 1e4, 0, 0, 0, 0, 0]))
    src, lengths, tgt = ragged()
    mixed, _ = ens(src, lengths, tgt)
    torch.testing.assert_close(mixed[..., :2], torch.full((4, 5, 2), -math.log(2)))
    assert (mixed[..., 2:] < -1000).all()


def test_save_load_and_rebuild_give_identical_outputs(tmp_path):
    ens = make(2, attention="additive")
    src, lengths, tgt = ragged()
    save_model(ens, tmp_path)
    again = load_model(tmp_path).eval()
    assert type(again) is Seq2SeqEnsemble and again.kind == "seq2seq-ensemble" and again.config.size == 2
    assert torch.equal(again(src, lengths, tgt)[0], ens(src, lengths, tgt)[0])
    rebuilt = build_model("seq2seq-ensemble", ens.get_config())
    rebuilt.load_state_dict(ens.state_dict())
    assert torch.equal(rebuilt.eval()(src, lengths, tgt)[0], ens(src, lengths, tgt)[0])
    (ex_src, ex_len, ex_tgt), _ = ens.example_inputs(3, 6)
    assert ens(ex_src, ex_len, ex_tgt)[0].shape == (3, 6, V_TGT)


@pytest.mark.parametrize("size", [0, 65])
def test_size_is_checked(size):
    with pytest.raises(ValidationError, match="size"):
        Seq2SeqEnsemble(member=MEMBER, size=size)
    with pytest.raises(ValidationError, match="unknown|extra"):
        Seq2SeqEnsemble(member=MEMBER, size=2, members=3)
    assert isinstance(Seq2SeqEnsemble(member=MEMBER, size=2).members[0], Seq2Seq)
