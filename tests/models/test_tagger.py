from __future__ import annotations

import pydantic
import pytest
import torch

from rnnkit.layers import LSTM
from rnnkit.models import CRF, PAD_TAG, Tagger, TaggerConfig
from rnnkit.models.base import load_model, save_model

V, K = 12, 3


def tiny(crf: bool = False, **encoder) -> Tagger:
    enc = dict(vocab_size=V, embed_dim=8, hidden_size=6, **encoder)
    return Tagger(encoder=enc, num_tags=K, crf=crf)


def ragged_batch(lengths, T=None, seed=0):
    """Token ids with random (valid) garbage in the padding, the lengths, and each sequence alone."""
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    ids = torch.randint(1, V, (len(lengths), T), generator=g)
    return ids, torch.tensor(lengths), [ids[i : i + 1, :n] for i, n in enumerate(lengths)]


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("encoder", [dict(num_layers=2, bidirectional=True), dict(cell="ln_gru", bidirectional=True)])
def test_padding_never_changes_a_real_position(crf, encoder):
    torch.manual_seed(0)
    model = tiny(crf, **encoder).eval()
    ids, lengths, alone = ragged_batch([5, 2, 4], T=7)
    emissions = model(ids, lengths)
    tags = model.predict(ids, lengths)
    assert emissions.shape == (3, 7, K) and tags.shape == (3, 7) and tags.dtype == torch.long
    for i, x in enumerate(alone):
        n = x.shape[1]
        assert torch.allclose(emissions[i, :n], model(x)[0], atol=1e-6)
        assert torch.equal(tags[i, :n], model.predict(x)[0])
        assert (emissions[i, n:] == 0).all() and (tags[i, n:] == PAD_TAG).all()
    # the padded tags' values do not matter, and the batch loss weighs every real token equally
    gold = torch.randint(0, K, ids.shape, generator=torch.Generator().manual_seed(1))
    pad = ~(torch.arange(7)[None] < lengths[:, None])
    loss = model.loss(ids, lengths, gold.masked_fill(pad, -100))
    assert torch.allclose(loss, model.loss(ids, lengths, gold.masked_fill(pad, 7)))
    per_seq = torch.stack([model.loss(x, None, gold[i : i + 1, : x.shape[1]]) for i, x in enumerate(alone)])
    assert torch.allclose(loss, (per_seq * lengths).sum() / lengths.sum(), atol=1e-6)


def rule_data(n, T, seed):
    """tag_t = (x_t + x_{t-1}) mod 3 (x_{-1} = 0): needs one step of memory; ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (n, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
    prev = torch.cat([torch.zeros(n, 1, dtype=torch.long), ids[:, :-1]], 1)
    tags = (ids + prev) % K
    return ids, lengths, tags


@pytest.mark.parametrize("crf", [False, True])
def test_learns_a_tag_rule_to_near_perfect_accuracy(crf):
    torch.manual_seed(0)
    model = Tagger(encoder=dict(vocab_size=V, embed_dim=16, hidden_size=24), num_tags=K, crf=crf)
    ids, lengths, tags = rule_data(64, 10, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(120):
        opt.zero_grad()
        loss = model.loss(ids, lengths, tags)
        loss.backward()
        opt.step()
    test_ids, test_lengths, test_tags = rule_data(64, 10, seed=1)
    pred = model.predict(test_ids, test_lengths)
    real = pred != PAD_TAG
    assert torch.equal(real, torch.arange(10)[None] < test_lengths[:, None])
    accuracy = (pred[real] == test_tags[real]).float().mean().item()
    assert accuracy > 0.98, f"accuracy {accuracy:.3f}, final training loss {loss.item():.3f}"


def test_save_load_gives_the_same_predictions(tmp_path):
    torch.manual_seed(0)
    model = tiny(crf=True, bidirectional=True)
    with torch.no_grad():
        model.crf.transitions.normal_()  # not the init, so a reload that forgot the CRF would show
    ids, lengths, _ = ragged_batch([6, 3, 5])
    save_model(model, tmp_path / "tagger")
    loaded = load_model(tmp_path / "tagger")
    assert isinstance(loaded, Tagger) and loaded.get_config() == model.get_config()
    assert torch.equal(loaded.predict(ids, lengths), model.predict(ids, lengths))
    assert torch.equal(loaded.crf.transitions, model.crf.transitions)


def test_config_is_typed_and_rejects_unknown_keys():
    enc = dict(vocab_size=V, hidden_size=4)
    with pytest.raises(pydantic.ValidationError, match="num_tag"):
        Tagger(encoder=enc, num_tag=3)
    with pytest.raises(pydantic.ValidationError, match="hiden_size"):
        Tagger(encoder=dict(vocab_size=V, hiden_size=4), num_tags=3)
    with pytest.raises(pydantic.ValidationError, match="greater than 1"):
        Tagger(encoder=enc, num_tags=1)
    cfg = TaggerConfig(encoder=enc, num_tags=3, crf=True)
    assert Tagger.from_config(cfg.model_dump(mode="json")).get_config() == cfg.model_dump(mode="json")


def test_a_bilstm_crf_pos_tagger_is_expressible_and_summary_lists_parameters():
    torch.manual_seed(0)
    enc = dict(vocab_size=50, embed_dim=16, hidden_size=12, num_layers=2, bidirectional=True)
    model = Tagger(encoder=enc, num_tags=17, crf=True, dropout=0.5)
    stack = model.encoder.stacks[0]
    assert isinstance(stack, LSTM) and stack.num_layers == 2 and stack.bidirectional
    assert isinstance(model.crf, CRF) and model.head.in_features == 24
    ids, lengths = torch.randint(1, 50, (3, 8)), torch.tensor([8, 5, 2])
    model.loss(ids, lengths, torch.randint(0, 17, (3, 8))).backward()
    assert model.crf.transitions.grad.abs().sum() > 0 and model.encoder.embedding.weight.grad.abs().sum() > 0
    text = model.summary()
    assert "encoder.stacks.0 (LSTM)" in text and "head (Linear)" in text
    assert f"total parameters: {model.num_parameters():,}" in text


def test_feature_input_and_validation():
    torch.manual_seed(0)
    model = Tagger(encoder=dict(input_size=5, hidden_size=6, cell="gru"), num_tags=K)
    x = torch.randn(2, 4, 5)
    assert model(x, torch.tensor([4, 2])).shape == (2, 4, K)
    args, kwargs = model.example_inputs()
    assert model(*args, **kwargs).shape == (2, 7, K)
    with pytest.raises(ValueError, match=r"expected tags \(2, 4\), got \(2, 3\)"):
        model.loss(x, None, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tags at real steps must lie in \[0, 3\)"):
        model.loss(x, torch.tensor([4, 2]), torch.tensor([[0, 1, 2, 3], [0, 1, 9, 9]]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(x, torch.tensor([5, 2]))


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_character_features_padding_save_load_and_validation(tmp_path, kind):
    torch.manual_seed(0)
    model = Tagger(encoder=dict(vocab_size=V, embed_dim=8, hidden_size=6, bidirectional=True), num_tags=K,
                   chars=dict(num_chars=9, kind=kind, embed_dim=4, hidden_size=3), crf=True).eval()  # fmt: skip
    assert model.encoder.config.extra_features == model.chars.output_size
    ids, lengths, alone = ragged_batch([5, 2, 4], T=7)
    g = torch.Generator().manual_seed(3)
    word_len = torch.randint(1, 6, (3, 7), generator=g)
    chars = torch.randint(1, 9, (3, 7, 5), generator=g).masked_fill(torch.arange(5) >= word_len[..., None], 0)
    emissions = model(ids, lengths, chars)
    for i, x in enumerate(alone):  # garbage words past a sentence's end change nothing before it
        n = x.shape[1]
        torch.testing.assert_close(emissions[i, :n], model(x, None, chars[i : i + 1, :n])[0])
    other = chars.clone()
    other[0, 1] = torch.tensor([3, 3, 0, 0, 0])  # another spelling of one word changes the emissions
    assert not torch.allclose(model(ids, lengths, other)[0], emissions[0])
    args, kwargs = model.example_inputs()
    assert model(*args, **kwargs).shape == (2, 7, K)
    save_model(model, tmp_path / "chars")
    loaded = load_model(tmp_path / "chars")
    assert torch.equal(loaded.predict(ids, lengths, chars), model.predict(ids, lengths, chars))
    with pytest.raises(ValueError, match="expected chars"):
        model(ids, lengths)
    with pytest.raises(ValueError, match="no character features"):
        tiny()(ids, lengths, chars)
