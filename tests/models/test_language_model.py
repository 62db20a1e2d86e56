from __future__ import annotations

import pydantic
import pytest
import safetensors
import torch

from rnnkit.decoding import beam_search, greedy
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.models.base import load_model, save_model

V = 11

ENCODERS = {
    "lstm_two_stacks": dict(cell="lstm", hidden_size=[8, 6]),
    "gru_2_layers": dict(cell="gru", hidden_size=7, num_layers=2),
    "rnn_tanh": dict(cell="rnn_tanh", hidden_size=5),
    "ln_lstm": dict(cell="ln_lstm", hidden_size=6),
    "min_gru": dict(cell="min_gru", hidden_size=6, num_layers=2),
}


def tiny(encoder: dict | None = None, **kwargs) -> LanguageModel:
    enc = dict(vocab_size=V, embed_dim=6, **(encoder or {"hidden_size": 6}))
    return LanguageModel(encoder=enc, **kwargs)


def pairs(a, b):
    """Matching tensors of two states (lists of tuples), checking the nests have the same shape."""
    return [xy for sa, sb in zip(a, b, strict=True) for xy in zip(sa, sb, strict=True)]


def ids_for(B, T, seed=0):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("encoder", list(ENCODERS.values()), ids=list(ENCODERS))
def test_step_by_step_equals_forward_over_the_whole_sequence(encoder):
    torch.manual_seed(0)
    model = tiny(encoder, proj_size=4).double().eval()
    ids = ids_for(3, 6)
    full, final = model(ids)
    state = model.init_state(3)
    assert all(s.shape[0] == 3 and s.dtype == torch.float64 for st in state for s in st)  # batch first
    steps = []
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-10)
    assert all(torch.allclose(x, y, atol=1e-10) for x, y in pairs(state, final))
    # init_state is the zero state that state=None means
    assert torch.allclose(model.step(ids[:, 0], None)[0], full[:, 0], atol=1e-12)


@pytest.mark.parametrize("encoder", [ENCODERS["lstm_two_stacks"], ENCODERS["ln_lstm"]], ids=["lstm", "ln_lstm"])
def test_carried_state_across_two_halves_equals_one_pass(encoder):
    torch.manual_seed(0)
    model = tiny(encoder).double().eval()
    ids = ids_for(2, 10)
    whole, final = model(ids)
    first, state = model(ids[:, :4])
    second, state = model(ids[:, 4:], state=state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-10)
    assert all(torch.allclose(x, y, atol=1e-10) for x, y in pairs(state, final))


def test_detach_state_cuts_the_graph_for_truncated_bptt():
    torch.manual_seed(0)
    model = tiny(ENCODERS["lstm_two_stacks"])
    _, state = model(ids_for(2, 5))
    assert all(s.requires_grad for st in state for s in st)
    cut = model.detach_state(state)
    assert all(not s.requires_grad and torch.equal(s, t) for s, t in pairs(cut, state))
    logits, _ = model(ids_for(2, 5, seed=1), state=cut)
    logits.sum().backward()  # does not reach back into the first chunk's graph
    assert model.detach_state(None) is None


def test_padding_does_not_affect_real_positions():
    torch.manual_seed(0)
    model = tiny(ENCODERS["gru_2_layers"]).eval()
    lengths = torch.tensor([6, 2, 4])
    ids = ids_for(3, 8)  # garbage ids past every length
    logits, state = model(ids, lengths)
    targets = ids_for(3, 8, seed=1)
    pad = ~(torch.arange(8)[None] < lengths[:, None])
    loss = model.loss(ids, lengths, targets)
    assert torch.allclose(loss, model.loss(ids, lengths, targets.masked_fill(pad, -5)))
    per_seq = []
    for i, n in enumerate(lengths.tolist()):
        alone, alone_state = model(ids[i : i + 1, :n])
        assert torch.allclose(logits[i, :n], alone[0], atol=1e-6) and (logits[i, n:] == 0).all()
        assert all(torch.allclose(s[i], a[0], atol=1e-6) for s, a in pairs(state, alone_state))
        per_seq.append(model.loss(ids[i : i + 1, :n], None, targets[i : i + 1, :n]))
    assert torch.allclose(loss, (torch.stack(per_seq) * lengths).sum() / lengths.sum(), atol=1e-6)


def test_prime_then_step_continues_ragged_prompts():
    torch.manual_seed(0)
    model = tiny(ENCODERS["lstm_two_stacks"]).double().eval()
    prompt, lengths = ids_for(3, 5), torch.tensor([5, 1, 3])
    last, state = model.prime(prompt, lengths)
    assert last.tolist() == [prompt[0, 4].item(), prompt[1, 0].item(), prompt[2, 2].item()]
    logits, _ = model.step(last, state)
    full, _ = model(prompt, lengths)
    expected = torch.stack([full[i, n - 1] for i, n in enumerate(lengths.tolist())])
    assert torch.allclose(logits, expected, atol=1e-10)


def test_search_runs_over_step_with_the_batch_first_state():
    torch.manual_seed(0)
    model = tiny(ENCODERS["lstm_two_stacks"]).eval()
    state = model.init_state(2)
    result = greedy(model.step, state, bos=1, eos=2, max_len=6)
    tokens, s, manual = torch.tensor([1, 1]), state, []
    for _ in range(6):  # the same by hand
        logits, s = model.step(tokens, s)
        tokens = logits.argmax(-1)
        manual.append(tokens)
    for seq, row in zip(result.sequences, torch.stack(manual, 1).tolist(), strict=True):
        assert seq == (row[: row.index(2)] if 2 in row else row)
    beams = beam_search(model.step, state, bos=1, eos=2, beam_size=3, max_len=6, n_best=2)
    assert len(beams.hypotheses) == 2 and all(len(h) == 2 for h in beams.hypotheses)


def test_tied_weights_share_one_tensor_and_survive_save_load(tmp_path):
    torch.manual_seed(0)
    model = tiny({"hidden_size": 9}, tie_weights=True, proj_size=6).eval()
    assert model.decoder.weight is model.encoder.embedding.weight
    n_untied = tiny({"hidden_size": 9}, proj_size=6).num_parameters()
    assert model.num_parameters() == n_untied - V * 6
    with torch.no_grad():
        model.decoder.weight.add_(1.0)  # visible through the embedding too
    save_model(model, tmp_path / "lm")
    with safetensors.safe_open(str(tmp_path / "lm" / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert len(stored & {"decoder.weight", "encoder.embedding.weight"}) == 1  # stored once
    loaded = load_model(tmp_path / "lm")
    assert isinstance(loaded, LanguageModel)
    assert loaded.decoder.weight is loaded.encoder.embedding.weight
    assert torch.equal(loaded.decoder.weight, model.decoder.weight)
    ids, lengths = ids_for(2, 5), torch.tensor([5, 3])
    assert torch.equal(loaded(ids, lengths)[0], model(ids, lengths)[0])


def test_learns_a_pattern_that_needs_memory():
    # the stream repeats 1 2 1 3: after a 1, the next token depends on the token before the 1
    torch.manual_seed(0)
    model = tiny({"hidden_size": 16}, tie_weights=False)
    pattern = torch.tensor([1, 2, 1, 3])
    stream = pattern.repeat(6)
    ids = torch.stack([stream[o : o + 12] for o in range(4)] * 4)  # every phase
    targets = torch.stack([stream[o + 1 : o + 13] for o in range(4)] * 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(80):
        opt.zero_grad()
        loss = model.loss(ids, None, targets)
        loss.backward()
        opt.step()
    logits, _ = model.eval()(ids[:4])
    # from the second step on, the context decides the next token: predictions are all right
    assert torch.equal(logits[:, 1:].argmax(-1), targets[:4, 1:])
    nll = torch.nn.functional.cross_entropy(logits[:, 1:].flatten(0, 1), targets[:4, 1:].flatten())
    assert nll.item() < 0.05, f"loss after the first step {nll.item():.3f}"


def test_config_errors_are_clear():
    with pytest.raises(pydantic.ValidationError, match="encoder.bidirectional must be False"):
        tiny({"hidden_size": 6, "bidirectional": True})
    with pytest.raises(pydantic.ValidationError, match="set encoder.vocab_size"):
        LanguageModel(encoder=dict(input_size=3, hidden_size=4))
    with pytest.raises(pydantic.ValidationError, match=r"top hidden size \(9\) differs; set proj_size=6"):
        tiny({"hidden_size": 9}, tie_weights=True)
    with pytest.raises(pydantic.ValidationError, match=r"proj_size \(5\)"):
        tiny({"hidden_size": 9}, tie_weights=True, proj_size=5)
    with pytest.raises(pydantic.ValidationError, match="tie_weight"):
        tiny(tie_weight=True)
    cfg = LanguageModelConfig(encoder=dict(vocab_size=V, embed_dim=6, hidden_size=[4, 6]), tie_weights=True)
    assert cfg.decoder_input_size == 6


def test_input_validation_and_summary():
    model = tiny(ENCODERS["lstm_two_stacks"])
    with pytest.raises(ValueError, match="tokens must have shape"):
        model.step(torch.tensor([[1]]), None)
    with pytest.raises(ValueError, match="ids must be token ids"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match="state has batch size 2 but the input has 3"):
        model(ids_for(3, 2), state=model.init_state(2))
    with pytest.raises(ValueError, match="state must be a list of 2 tuple"):
        model(ids_for(2, 2), state=model.init_state(2)[:1])
    with pytest.raises(ValueError, match="targets must match ids"):
        model.loss(ids_for(2, 3), None, ids_for(2, 4))
    text = model.summary()
    assert "decoder (Linear)" in text and f"total parameters: {model.num_parameters():,}" in text
