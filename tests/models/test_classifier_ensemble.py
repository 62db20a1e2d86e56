"""ClassifierEnsemble: the mixture of its members' probabilities, the mean of their own losses (so each member's
gradient is its own, divided by the size), independent initialisations, save/load, the Classifier interface."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from rnnkit.models import Classifier, ClassifierEnsemble
from rnnkit.models.base import build_model, load_model, save_model

MEMBER = dict(encoder=dict(input_size=3, hidden_size=6, cell="gru", bidirectional=True), num_classes=4)


def batch(B: int = 5, T: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 3, generator=g)
    lengths = torch.tensor([T, 4, 7, 1, T - 1][:B])
    y = torch.randint(0, 4, (B,), generator=g)
    return x, lengths, y


def test_size_one_is_its_member():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=1).eval()
    (member,) = ens.members
    x, lengths, y = batch()
    logits = member(x, lengths)
    # the same distribution: the ensemble's logits are the member's, normalised (log-softmax)
    torch.testing.assert_close(ens(x, lengths), logits.log_softmax(-1))
    torch.testing.assert_close(ens.predict(x, lengths), member.predict(x, lengths))
    torch.testing.assert_close(ens.loss(x, lengths, y), member.loss(x, lengths, y))
    torch.testing.assert_close(F.cross_entropy(ens(x, lengths), y), F.cross_entropy(logits, y))


def test_forward_is_the_log_of_the_mean_probabilities():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=3).eval()
    x, lengths, y = batch()
    probs = torch.stack([m(x, lengths).softmax(-1) for m in ens.members]).mean(0)  # by hand
    out = ens(x, lengths)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, probs.log())
    torch.testing.assert_close(out.softmax(-1), probs)  # already normalised: softmax gives the same mixture
    torch.testing.assert_close(ens.predict(x, lengths), probs)
    assert torch.equal(out.argmax(-1), probs.argmax(-1))
    # the mixture's cross-entropy is not the training loss: that is the mean of the members' own losses
    losses = torch.stack([m.loss(x, lengths, y) for m in ens.members])
    torch.testing.assert_close(ens.loss(x, lengths, y), losses.mean())
    assert not torch.allclose(F.cross_entropy(out, y), losses.mean())


def test_stable_for_confident_members():
    """Log-sum-exp of log-softmax: no overflow or log(0) where a member's logits are huge."""
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=2).eval()
    with torch.no_grad():
        ens.members[0].head[-1].bias.copy_(torch.tensor([1e4, 0.0, 0.0, 0.0]))
        ens.members[1].head[-1].bias.copy_(torch.tensor([0.0, 1e4, 0.0, 0.0]))
    x, lengths, _ = batch()
    out = ens(x, lengths)
    assert torch.isfinite(out[:, :2]).all()
    torch.testing.assert_close(out[:, :2], torch.full((5, 2), -math.log(2)))
    assert (out[:, 2:] < -1000).all()


def test_each_member_gets_its_own_gradient_over_the_size():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=3)
    ens.train()  # no dropout here (dropout 0), so the train-mode passes are deterministic
    x, lengths, y = batch()
    ens.loss(x, lengths, y).backward()
    for m in ens.members:
        params = list(m.parameters())
        own = torch.autograd.grad(m.loss(x, lengths, y), params)
        for p, g in zip(params, own, strict=True):
            torch.testing.assert_close(p.grad, g / 3, rtol=1e-5, atol=1e-7)


def test_members_are_initialised_differently_and_share_nothing():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=3)
    heads = [m.head[-1].weight for m in ens.members]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])
    ids = [{id(p) for p in m.parameters()} for m in ens.members]
    assert not ids[0] & ids[1] and not ids[1] & ids[2]
    assert ens.num_parameters() == 3 * ens.members[0].num_parameters()
    x, lengths, _ = batch()
    outs = [m(x, lengths) for m in ens.eval().members]
    assert not torch.allclose(outs[0], outs[1])


def test_save_load_and_rebuild_give_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER | {"pooling": "attention"}, size=3).eval()
    x, lengths, _ = batch()
    save_model(ens, tmp_path)
    again = load_model(tmp_path).eval()
    assert type(again) is ClassifierEnsemble and again.kind == "classifier-ensemble"
    assert again.get_config() == ens.get_config() and again.config.size == 3
    assert torch.equal(again(x, lengths), ens(x, lengths))
    rebuilt = build_model("classifier-ensemble", ens.get_config())
    rebuilt.load_state_dict(ens.state_dict())
    assert torch.equal(rebuilt.eval()(x, lengths), ens(x, lengths))


def test_attention_weights_summary_and_example_inputs():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER | {"pooling": "attention"}, size=2).eval()
    x, lengths, _ = batch()
    out, weights = ens.forward_with_weights(x, lengths)
    torch.testing.assert_close(out, ens(x, lengths))
    member_weights = torch.stack([m.forward_with_weights(x, lengths)[1] for m in ens.members])
    torch.testing.assert_close(weights, member_weights.mean(0))
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    assert (weights[1, 4:] == 0).all()  # none on padding
    assert ClassifierEnsemble(member=MEMBER, size=2).forward_with_weights(x, lengths)[1] is None  # max pooling
    text = ens.summary()
    assert "members.0.encoder" in text and "members.1.head" in text
    assert f"total parameters: {ens.num_parameters():,}" in text
    (ex, ex_lengths), _ = ens.example_inputs(3, 6)
    assert ens(ex, ex_lengths).shape == (3, 4)


def test_padding_does_not_change_the_prediction():
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=MEMBER, size=3).eval()
    x, lengths, _ = batch()
    full = ens(x, lengths)
    alone = ens(x[1:2, :4], lengths[1:2])
    torch.testing.assert_close(full[1:2], alone, atol=1e-6, rtol=1e-5)


def test_regression_members_average_their_values():
    torch.manual_seed(0)
    member = dict(encoder=dict(input_size=3, hidden_size=6), output_size=2, pooling="last")
    ens = ClassifierEnsemble(member=member, size=3).eval()
    x, lengths, _ = batch()
    target = torch.randn(5, 2)
    torch.testing.assert_close(ens(x, lengths), torch.stack([m(x, lengths) for m in ens.members]).mean(0))
    torch.testing.assert_close(ens.predict(x, lengths), ens(x, lengths))
    expected = torch.stack([m.loss(x, lengths, target) for m in ens.members]).mean()
    torch.testing.assert_close(ens.loss(x, lengths, target), expected)
    assert not ens.is_classifier and ClassifierEnsemble(member=MEMBER, size=2).is_classifier


@pytest.mark.parametrize("size", [0, 65])
def test_size_is_checked(size):
    with pytest.raises(ValidationError, match="size"):
        ClassifierEnsemble(member=MEMBER, size=size)
    with pytest.raises(ValidationError, match="unknown|extra"):
        ClassifierEnsemble(member=MEMBER, size=2, members=3)
    assert isinstance(ClassifierEnsemble(member=MEMBER, size=2).members[0], Classifier)


TOKEN_MEMBER = dict(encoder=dict(vocab_size=20, embed_dim=5, hidden_size=6, cell="lstm"), num_classes=3)


def test_shared_embedding_is_one_table_that_trains_from_every_member(tmp_path):
    torch.manual_seed(0)
    ens = ClassifierEnsemble(member=TOKEN_MEMBER, size=3, share_embedding=True)
    table = ens.members[0].encoder.embedding
    assert all(m.encoder.embedding is table for m in ens.members)
    own = ClassifierEnsemble(member=TOKEN_MEMBER, size=3)
    assert ens.num_parameters() == own.num_parameters() - 2 * table.weight.numel()
    x = torch.randint(1, 20, (4, 6))
    lengths = torch.tensor([6, 3, 5, 1])
    y = torch.tensor([0, 2, 1, 1])
    ens.loss(x, lengths, y).backward()
    # the shared table's gradient is the sum of what each member sends it
    per_member = []
    for m in ens.members:
        table.weight.grad = None
        (m.loss(x, lengths, y) / 3).backward()
        per_member.append(table.weight.grad.clone())
    table.weight.grad = None
    ens.loss(x, lengths, y).backward()
    torch.testing.assert_close(table.weight.grad, sum(per_member))
    save_model(ens.eval(), tmp_path)
    again = load_model(tmp_path).eval()
    assert again.members[1].encoder.embedding is again.members[0].encoder.embedding
    torch.testing.assert_close(again(x, lengths), ens(x, lengths), rtol=0, atol=0)


def test_shared_embedding_needs_token_input():
    with pytest.raises(ValidationError, match="share_embedding needs token input"):
        ClassifierEnsemble(member=MEMBER, size=2, share_embedding=True)
