"""Seq2Seq: shapes, source masking ≡ each example alone, step ≡ forward, every bridge/attention/input-feeding
combination, teacher forcing, learning to reverse digits (greedy and beam), save/load, configs, errors."""

import itertools

import pytest
import torch

from rnnkit.decoding import beam_search, greedy
from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.models.base import build_model, load_model, save_model

PAD, BOS, EOS = 0, 1, 2
V_SRC, V_TGT = 9, 7


def make(seed=0, enc=None, **kw):
    torch.manual_seed(seed)
    encoder = dict(vocab_size=V_SRC, embed_dim=5, hidden_size=6, bidirectional=True)
    encoder.update(enc or {})
    cfg = dict(encoder=encoder, tgt_vocab_size=V_TGT, embed_dim=4, hidden_size=12)
    cfg.update(kw)
    return Seq2Seq(cfg).eval()


def ragged(seed=0, B=4, Ts=6, Tt=5, lengths=(6, 3, 1, 4)):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V_SRC, (B, Ts), generator=g)
    tgt = torch.randint(1, V_TGT, (B, Tt), generator=g)
    return src, torch.tensor(lengths), tgt


def with_garbage(src, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    pad = torch.arange(src.shape[1])[None] >= lengths[:, None]
    return torch.where(pad, torch.randint(0, V_SRC, src.shape, generator=g), src)


VARIANTS = [
    dict(attention="general", input_feeding=True),
    dict(attention="dot", cell="gru"),
    dict(attention="additive", attention_hidden_size=7, num_layers=2),
    dict(attention="none", bridge="copy", enc={"cell": "gru"}),
    dict(attention="general", enc={"cell": "ln_lstm", "num_layers": 2}, num_layers=2, bridge="copy"),
]


# -- shapes and masking ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw", VARIANTS)
def test_source_padding_never_changes_outputs(kw):
    model = make(**kw)
    src, lengths, tgt = ragged()
    logits, att = model(src, lengths, tgt)
    assert logits.shape == (4, 5, V_TGT)
    garbage, _ = model(with_garbage(src, lengths, 1), lengths, tgt)
    torch.testing.assert_close(garbage, logits, atol=1e-5, rtol=0)
    if kw["attention"] != "none":
        assert att.shape == (4, 5, 6)
        pad = torch.arange(6)[None, None] >= lengths[:, None, None]
        assert bool((att.masked_select(pad) == 0).all())
        torch.testing.assert_close(att.sum(-1), torch.ones(4, 5))
    else:
        assert att is None
    for b, n in enumerate(lengths.tolist()):
        alone, att_b = model(src[b : b + 1, :n], torch.tensor([n]), tgt[b : b + 1])
        torch.testing.assert_close(alone[0], logits[b], atol=1e-5, rtol=0)
        if att is not None:
            torch.testing.assert_close(att_b[0], att[b, :, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", VARIANTS)
def test_stepping_with_gold_tokens_equals_forward(kw):
    model = make(**kw)
    src, lengths, tgt = ragged(seed=2)
    logits, att = model(src, lengths, tgt, teacher_forcing=1.0)
    state = model.encode(src, lengths)
    for t in range(tgt.shape[1]):
        step_logits, state = model.step(tgt[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=0)
        if att is not None:
            torch.testing.assert_close(state["attention"], att[:, t], atol=1e-6, rtol=0)


COMBOS = [
    (bridge, attention, feed, cell)
    for bridge, attention, feed, cell in itertools.product(
        ["linear", "zeros", "copy"], ["none", "dot", "general", "additive"], [False, True], ["lstm", "gru"]
    )
    if not (feed and attention == "none")
]


@pytest.mark.parametrize(("bridge", "attention", "feed", "cell"), COMBOS)
def test_every_bridge_attention_and_input_feeding(bridge, attention, feed, cell):
    # encoder: bidirectional LSTM, 6 per direction -> K = 12 = the decoder's size (needed by dot and copy)
    model = make(bridge=bridge, attention=attention, input_feeding=feed, cell=cell)
    src, lengths, tgt = ragged(B=3, lengths=(6, 2, 5))
    logits, att = model(src, lengths, tgt)
    assert logits.shape == (3, 5, V_TGT) and torch.isfinite(logits).all()
    assert (att is None) == (attention == "none")
    state = model.encode(src, lengths)
    assert [h.shape for h in state["hidden"]] == [(3, 1, 12)] * (2 if cell == "lstm" else 1)
    assert ("feed" in state) == feed
    if bridge == "zeros":
        assert all(bool((h == 0).all()) for h in state["hidden"])
    model.train()
    model.loss(src, lengths, tgt, tgt, torch.tensor([5, 3, 1])).backward()
    assert model.decoder.weight_hh_l0.grad.abs().sum() > 0


def test_copy_bridge_copies_the_top_layers_directions_concatenated():
    model = make(bridge="copy", enc={"num_layers": 3}, num_layers=2)
    src, lengths, _ = ragged()
    _, states = model.encoder(src, lengths)
    h, c = states[-1]  # (3 * 2, B, 6)
    st = model.encode(src, lengths)["hidden"]
    torch.testing.assert_close(st[0][:, 0], torch.cat([h[2], h[3]], -1))  # decoder layer 0 <- encoder layer 1
    torch.testing.assert_close(st[1][:, 1], torch.cat([c[4], c[5]], -1))  # decoder layer 1 <- encoder layer 2


@pytest.mark.parametrize(("enc_cell", "dec_cell"), [("lstm", "gru"), ("gru", "lstm"), ("min_gru", "lstm")])
def test_bidirectional_two_layer_encoder_to_one_layer_decoder_of_another_size(enc_cell, dec_cell):
    model = make(
        enc={"cell": enc_cell, "num_layers": 2, "hidden_size": 8}, cell=dec_cell, hidden_size=5, attention="additive"
    )
    src, lengths, tgt = ragged()
    logits, att = model(src, lengths, tgt)
    assert logits.shape == (4, 5, V_TGT) and att.shape == (4, 5, 6)
    assert model.bridge_h.in_features == 16 and model.bridge_h.out_features == 5
    res = greedy(model.step, model.encode(src, lengths), BOS, EOS, max_len=6)
    assert len(res.sequences) == 4


def test_hidden_size_list_encoder():
    model = make(enc={"hidden_size": [8, 6]}, attention="dot")
    src, lengths, tgt = ragged()
    assert model(src, lengths, tgt)[0].shape == (4, 5, V_TGT)


# -- teacher forcing ------------------------------------------------------------------------------
def test_no_teacher_forcing_feeds_the_models_own_argmax():
    model = make(attention="general", input_feeding=True)
    src, lengths, tgt = ragged(seed=3)
    logits, _ = model(src, lengths, tgt, teacher_forcing=0.0)
    state = model.encode(src, lengths)
    tokens = tgt[:, 0]
    for t in range(tgt.shape[1]):
        step_logits, state = model.step(tokens, state)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=0)
        tokens = step_logits.argmax(-1)
    gold, _ = model(src, lengths, tgt)
    assert not torch.allclose(gold[:, 1:], logits[:, 1:])


def test_teacher_forcing_ratio_applies_in_training_only():
    model = make(attention="dot", teacher_forcing=0.0)
    src, lengths, tgt = ragged(seed=4)
    assert model.teacher_forcing == 0.0
    gold, _ = model(src, lengths, tgt)  # evaluation: always gold
    torch.testing.assert_close(gold, model(src, lengths, tgt, teacher_forcing=1.0)[0])
    own, _ = model(src, lengths, tgt, teacher_forcing=0.0)
    model.train()  # dropout is 0, so training mode differs only by the ratio
    torch.testing.assert_close(model(src, lengths, tgt)[0], own)
    model.teacher_forcing = 1.0  # what a trainer's schedule does per epoch
    torch.testing.assert_close(model(src, lengths, tgt)[0], gold)
    model.teacher_forcing = 0.5
    torch.manual_seed(0)
    mixed, _ = model(src, lengths, tgt)
    assert not torch.allclose(mixed, gold) and not torch.allclose(mixed, own)
    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\]"):
        model(src, lengths, tgt, teacher_forcing=1.5)


def test_loss_ignores_target_padding():
    model = make()
    src, lengths, tgt = ragged(seed=5)
    tgt_lengths = torch.tensor([5, 2, 3, 1])
    out = torch.randint(1, V_TGT, tgt.shape, generator=torch.Generator().manual_seed(0))
    other = out.clone()
    pad = torch.arange(5)[None] >= tgt_lengths[:, None]
    other[pad] = (other[pad] + 1) % V_TGT
    a = model.loss(src, lengths, tgt, out, tgt_lengths)
    torch.testing.assert_close(a, model.loss(src, lengths, tgt, other, tgt_lengths))
    logits, _ = model(src, lengths, tgt)
    manual = torch.nn.functional.cross_entropy(logits[~pad], out[~pad])
    torch.testing.assert_close(a, manual)


# -- learning -------------------------------------------------------------------------------------
DIGITS = range(3, 8)  # vocabulary 8: pad, bos, eos and five digits


def reverse_batch(g, B):
    lengths = torch.randint(3, 7, (B,), generator=g)
    T = int(lengths.max())
    src = torch.randint(DIGITS.start, DIGITS.stop, (B, T), generator=g)
    src = src * (torch.arange(T)[None] < lengths[:, None])
    tgt_in = torch.zeros(B, T + 1, dtype=torch.long)
    tgt_out = torch.zeros(B, T + 1, dtype=torch.long)
    targets = []
    for b, n in enumerate(lengths.tolist()):
        rev = src[b, :n].flip(0)
        targets.append(rev.tolist())
        tgt_in[b, 0], tgt_in[b, 1 : n + 1] = BOS, rev
        tgt_out[b, :n], tgt_out[b, n] = rev, EOS
    return src, lengths, tgt_in, tgt_out, lengths + 1, targets


@pytest.fixture(scope="module")
def reverser():
    """A tiny attention model trained to reverse 3-6 digits (about 3 s on one core)."""
    torch.manual_seed(0)
    model = Seq2Seq(
        encoder=dict(vocab_size=8, embed_dim=16, hidden_size=32, bidirectional=True),
        tgt_vocab_size=8,
        embed_dim=16,
        hidden_size=32,
        attention="general",
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    # the decay lets the weights settle: at a constant lr the last steps' noise decided 2-4 of the 100 test
    # cases, differently on different CPUs' kernels (0.96 on one machine, 1.0 on another; 1.0 for 5 seeds now)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        src, lengths, tgt_in, tgt_out, tgt_lengths, _ = reverse_batch(g, 32)
        loss = model.loss(src, lengths, tgt_in, tgt_out, tgt_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()


def exact_match(result, targets):
    return sum(s == t for s, t in zip(result.sequences, targets, strict=True)) / len(targets)


def test_learns_to_reverse_digits_greedy(reverser):
    src, lengths, *_, targets = reverse_batch(torch.Generator().manual_seed(123), 100)
    res = greedy(reverser.step, reverser.encode(src, lengths), BOS, EOS, max_len=10)
    assert exact_match(res, targets) >= 0.98
    assert all(res.finished)
    # attention for plotting: one row per emitted token (eos included) over the real source steps
    att = res.attention[0]
    assert att.shape == (len(res.sequences[0]) + 1, src.shape[1])
    assert bool((att[:, int(lengths[0]) :] == 0).all())
    # reversing: the i-th output token attends mostly to source position n-1-i
    n = int(lengths[0])
    assert att[:n].argmax(-1).tolist() == list(range(n - 1, -1, -1))


def test_beam_search_on_the_trained_model(reverser):
    src, lengths, *_, targets = reverse_batch(torch.Generator().manual_seed(321), 100)
    res = beam_search(reverser.step, reverser.encode(src, lengths), BOS, EOS, beam_size=4, max_len=10, n_best=2)
    assert exact_match(res, targets) >= 0.98
    assert all(len(h) == 2 and h[0].score >= h[1].score for h in res.hypotheses)


def test_save_load_round_trip(reverser, tmp_path):
    save_model(reverser, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    assert isinstance(loaded, Seq2Seq) and loaded.get_config() == reverser.get_config()
    src, lengths, tgt_in, *_ = reverse_batch(torch.Generator().manual_seed(9), 8)
    a, wa = reverser(src, lengths, tgt_in)
    b, wb = loaded(src, lengths, tgt_in)
    assert torch.equal(a, b) and torch.equal(wa, wb)


# -- the tutorial architectures -------------------------------------------------------------------
def test_tutorial_lstm_encoder_decoder_with_teacher_forcing():
    """Sutskever et al.: LSTM encoder -> its final state -> LSTM decoder, no attention, trained on gold inputs."""
    cfg = Seq2SeqConfig(
        encoder={"vocab_size": V_SRC, "embed_dim": 8, "hidden_size": 16, "num_layers": 2},
        tgt_vocab_size=V_TGT,
        embed_dim=8,
        hidden_size=16,
        num_layers=2,
        attention="none",
        bridge="copy",
        teacher_forcing=1.0,
    )
    model = Seq2Seq(cfg)
    src, lengths, tgt = ragged()
    logits, att = model(src, lengths, tgt)
    assert logits.shape == (4, 5, V_TGT) and att is None


def test_tutorial_bahdanau_attention_decoder():
    """Bahdanau et al.: bidirectional GRU encoder, additive attention, GRU decoder fed its attentional state."""
    cfg = Seq2SeqConfig(
        encoder={"vocab_size": V_SRC, "embed_dim": 8, "cell": "gru", "hidden_size": 16, "bidirectional": True},
        tgt_vocab_size=V_TGT,
        embed_dim=8,
        cell="gru",
        hidden_size=16,
        attention="additive",
        input_feeding=True,
        bridge="linear",
    )
    model = Seq2Seq(cfg).eval()
    src, lengths, tgt = ragged()
    logits, att = model(src, lengths, tgt)
    assert logits.shape == (4, 5, V_TGT) and att.shape == (4, 5, 6)
    assert "attention.query_proj" in model.summary()


# -- configs and errors ---------------------------------------------------------------------------
def test_registry_and_config_round_trip():
    model = make(attention="additive", input_feeding=True)
    rebuilt = build_model("seq2seq", model.get_config())
    assert isinstance(rebuilt, Seq2Seq) and rebuilt.get_config() == model.get_config()
    assert model.config.encoder.bidirectional is True


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(colour="red"), "Extra inputs are not permitted"),
        (dict(enc={"hiden_size": 4}), "Extra inputs are not permitted"),
        (dict(attention="dot", hidden_size=5), r"attention='dot' needs the decoder's hidden_size \(5\) to equal .* 12"),
        (dict(bridge="copy", hidden_size=5), r"bridge='copy' needs the decoder's hidden_size \(5\)"),
        (dict(bridge="copy", num_layers=2), r"bridge='copy' needs num_layers \(2\) <= the encoder's top stack"),
        (dict(attention="none", input_feeding=True), "input_feeding .* needs attention"),
        (dict(attention="general", attention_hidden_size=4), "only used by attention='additive'"),
        (dict(padding_idx=7), "padding_idx must be < tgt_vocab_size"),
        (dict(teacher_forcing=1.2), "less than or equal to 1"),
        (dict(attention="luong"), "Input should be 'none', 'dot', 'general' or 'additive'"),
    ],
)
def test_config_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)


def test_feature_frames_in_and_bad_inputs():
    frames = Seq2Seq(encoder={"input_size": 3, "hidden_size": 8}, tgt_vocab_size=5, embed_dim=4, hidden_size=8)
    logits, _ = frames(torch.randn(2, 4, 3), torch.tensor([4, 2]), torch.ones(2, 3, dtype=torch.long))
    assert logits.shape == (2, 3, 5)  # real-valued frames in, token logits out (issue #18)
    with pytest.raises(ValueError, match=r"src must be feature frames \(B, Ts, 3\)"):
        frames(torch.randn(2, 4), None, torch.ones(2, 3, dtype=torch.long))
    model = make()
    src, lengths, tgt = ragged()
    with pytest.raises(ValueError, match="src must be token ids"):
        model(src[0], None, tgt)
    with pytest.raises(ValueError, match="tgt_in must have shape"):
        model(src, lengths, tgt[:2])
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(src, torch.tensor([7, 1, 1, 1]), tgt)
    with pytest.raises(ValueError, match=r"tokens must have shape \(B,\)"):
        model.step(tgt, model.encode(src, lengths))
