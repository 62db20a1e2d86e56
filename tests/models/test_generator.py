"""ConditionalGenerator: class / vector / image conditioning (flat and columns image encoders), step ≡ forward,
feed_condition's effect, the columns encoder's shift equivariance, learning a sequence per class, save/load,
configs and errors."""

import pytest
import torch

from rnnkit.decoding import beam_search, greedy
from rnnkit.models import ConditionalGenerator, GeneratorConfig
from rnnkit.models.base import build_model, load_model, save_model
from rnnkit.models.generator import ColumnImageEncoder, ImageEncoder

PAD, BOS, EOS = 0, 1, 2
V = 8
CONDITIONS = {
    "class": dict(num_classes=4, cond_dim=6),
    "vector": dict(cond_size=5),
    "image": dict(image_channels=1, image_size=(12, 12), cnn_channels=[4, 8], cond_dim=6),
    "columns": dict(
        image_channels=1, image_size=(12, 12), cnn_channels=[4, 8], cond_dim=6, image_encoder="columns", column_hidden=5
    ),
    "attend": dict(
        image_channels=1,
        image_size=(12, 12),
        cnn_channels=[4, 8],
        cond_dim=6,
        image_encoder="columns",
        column_hidden=5,
        attend_columns=True,
    ),
}


def make(kind="class", seed=0, **kw):
    torch.manual_seed(seed)
    return ConditionalGenerator(vocab_size=V, embed_dim=4, hidden_size=10, **CONDITIONS[kind], **kw).eval()


def cond_for(kind, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "class":
        return torch.randint(0, 4, (B,), generator=g)
    if kind == "vector":
        return torch.randn(B, 5, generator=g)
    return torch.randn(B, 1, 12, 12, generator=g)


def tokens(B=3, T=6, seed=0):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", list(CONDITIONS))
@pytest.mark.parametrize("feed", [False, True])
@pytest.mark.parametrize(("cell", "layers"), [("lstm", 1), ("gru", 2)])
def test_shapes_and_step_equals_forward(kind, feed, cell, layers):
    model = make(kind, feed_condition=feed, cell=cell, num_layers=layers)
    cond, tgt = cond_for(kind), tokens()
    logits = model(cond, tgt)
    assert logits.shape == (3, 6, V)
    state = model.encode(cond)
    assert [h.shape for h in state["hidden"]] == [(3, layers, 10)] * (2 if cell == "lstm" else 1)
    assert ("cond" in state) == feed
    for t in range(tgt.shape[1]):
        step_logits, state = model.step(tgt[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["class", "vector", "image", "columns"])  # attend: below
def test_feed_condition_reaches_every_step(kind):
    """With the initial-state maps zeroed, the condition reaches the decoder only if it is fed."""
    cond_a, cond_b = cond_for(kind, seed=1), cond_for(kind, seed=2)
    for feed in (False, True):
        model = make(kind, feed_condition=feed)
        with torch.no_grad():
            for m in (model.init_h, model.init_c):
                m.weight.zero_()
                m.bias.zero_()
        same = torch.allclose(model(cond_a, tokens()), model(cond_b, tokens()))
        assert same != feed
    assert make(kind, feed_condition=True).decoder.input_size == 4 + (5 if kind == "vector" else 6)


def test_image_gradients_reach_the_cnn():
    model = make("image").train()
    tgt = tokens()
    model.loss(cond_for("image"), tgt, tgt, torch.tensor([6, 3, 1])).backward()
    assert model.cond_encoder.features[0].weight.grad.abs().sum() > 0
    assert "cond_encoder.proj" in model.summary(batch_size=2, length=4)


# -- the columns image encoder --------------------------------------------------------------------
def columns_encoder(seed=0, **kw):
    torch.manual_seed(seed)
    return ColumnImageEncoder(1, (8, 40), [3, 4], out_size=6, hidden_size=5, **kw).eval()


def test_columns_encoder_shapes_and_gradients():
    enc = columns_encoder()
    x = torch.rand(3, 1, 8, 40)
    assert enc.columns(x).shape == (3, 10, 4 * 2)  # W / 4 columns of C' * H' = 4 * 2 values
    z = enc(x)
    assert z.shape == (3, 6)
    torch.testing.assert_close(z.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)  # LayerNorm'd
    enc.train()
    enc(x).pow(2).sum().backward()
    assert enc.features[0].weight.grad.abs().sum() > 0 and enc.reader.weight_ih_l0_reverse.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"ColumnImageEncoder: expected images \(B, 1, 8, 40\)"):
        enc(torch.rand(3, 1, 8, 36))
    model = make("columns")
    assert isinstance(model.cond_encoder, ColumnImageEncoder) and model.cond_encoder.reader.hidden_size == 5
    assert isinstance(make("image").cond_encoder, ImageEncoder)
    default = ConditionalGenerator(vocab_size=5, image_channels=1, image_size=(8, 8), image_encoder="columns")
    assert default.cond_encoder.reader.hidden_size == 128


def test_columns_move_with_the_pattern():
    """A pattern moved right by the pooling stride (4 px) gives the same column features one column later:
    the same weights read every position."""
    enc = columns_encoder()
    patch = torch.rand(8, 8, generator=torch.Generator().manual_seed(3))
    at = {}
    for x0 in (8, 12, 20):
        img = torch.zeros(1, 1, 8, 40)
        img[0, 0, :, x0 : x0 + 8] = patch
        at[x0] = enc.columns(img)[0]  # (10, 8)
    # away from the border columns (padding differs from the background there)
    torch.testing.assert_close(at[12][2:9], at[8][1:8], atol=1e-6, rtol=0)
    torch.testing.assert_close(at[20][4:9], at[8][1:6], atol=1e-6, rtol=0)
    assert not torch.allclose(at[12], at[8])


def test_columns_condition_depends_on_the_order():
    """Two patterns left-right and right-left give different vectors (a sum or mean over columns would not)."""
    enc = columns_encoder()
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(8, 8, generator=g), torch.rand(8, 8, generator=g)
    ab, ba = torch.zeros(1, 1, 8, 40), torch.zeros(1, 1, 8, 40)
    ab[0, 0, :, 8:16], ab[0, 0, :, 24:32] = a, b
    ba[0, 0, :, 8:16], ba[0, 0, :, 24:32] = b, a
    assert (enc(ab) - enc(ba)).abs().max() > 1e-3


def test_attend_columns_reads_the_image_at_every_step():
    """With the initial-state maps zeroed and no feeding, the image still reaches every step's logits through
    attention (the context is recomputed from each step's output)."""
    model = make("attend", feed_condition=False)
    assert model.decoder.input_size == 4 and model.attention.key_size == 10
    with torch.no_grad():
        for m in (model.init_h, model.init_c):
            m.weight.zero_()
            m.bias.zero_()
    a, b = model(cond_for("attend", seed=1), tokens()), model(cond_for("attend", seed=2), tokens())
    assert ((a - b).abs().amax(dim=-1) > 1e-6).all()
    state = model.encode(cond_for("attend"))
    assert state["memory"].shape == (3, 3, 10) and state["keys"].shape == (3, 3, 10)  # 12 / 4 columns
    assert "memory" not in make("columns").encode(cond_for("columns"))


@pytest.mark.parametrize("kind", ["columns", "attend"])
def test_columns_beam_search_and_save_load(kind, tmp_path):
    model = make(kind, feed_condition=True, seed=1)
    cond = cond_for(kind, B=2)
    res = greedy(model.step, model.encode(cond), BOS, EOS, max_len=5)
    assert beam_search(model.step, model.encode(cond), BOS, EOS, beam_size=1, max_len=5).sequences == res.sequences
    assert len(beam_search(model.step, model.encode(cond), BOS, EOS, beam_size=3, max_len=5).sequences) == 2
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    assert isinstance(loaded.cond_encoder, ColumnImageEncoder)
    assert loaded.get_config()["image_encoder"] == "columns" and loaded.get_config()["column_hidden"] == 5
    assert loaded.get_config()["attend_columns"] == (kind == "attend")
    torch.testing.assert_close(loaded(cond, tokens(B=2)), model(cond, tokens(B=2)), atol=0, rtol=0)


def test_configs_without_the_encoder_keys_load_as_flat():
    config = make("image").get_config()
    assert config["image_encoder"] == "flat" and config["column_hidden"] is None and not config["attend_columns"]
    del config["image_encoder"], config["column_hidden"], config["attend_columns"]  # saved before the options
    assert isinstance(build_model("conditional_generator", config).cond_encoder, ImageEncoder)


# -- learning a sequence per class ----------------------------------------------------------------
SEQUENCES = {0: [3, 4], 1: [5, 5, 6, 3], 2: [7, 6, 5, 4, 3, 7], 3: [4, 7, 4]}


def class_batch(g, B):
    labels = torch.randint(0, 4, (B,), generator=g)
    T = max(len(s) for s in SEQUENCES.values()) + 1
    tgt_in = torch.zeros(B, T, dtype=torch.long)
    tgt_out = torch.zeros(B, T, dtype=torch.long)
    lengths = torch.zeros(B, dtype=torch.long)
    for b, k in enumerate(labels.tolist()):
        s = SEQUENCES[k]
        tgt_in[b, 0], tgt_in[b, 1 : len(s) + 1] = BOS, torch.tensor(s)
        tgt_out[b, : len(s)], tgt_out[b, len(s)] = torch.tensor(s), EOS
        lengths[b] = len(s) + 1
    return labels, tgt_in, tgt_out, lengths


@pytest.mark.parametrize(("cell", "feed"), [("lstm", False), ("gru", True)])
def test_learns_a_sequence_per_class(cell, feed, tmp_path):
    torch.manual_seed(0)
    model = ConditionalGenerator(
        num_classes=4, cond_dim=8, vocab_size=V, embed_dim=8, hidden_size=16, cell=cell, feed_condition=feed
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        loss = model.loss(*class_batch(g, 16))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    labels = torch.arange(4)
    res = greedy(model.step, model.encode(labels), BOS, EOS, max_len=10)
    assert res.sequences == [SEQUENCES[k] for k in range(4)]
    assert all(res.finished)
    beam = beam_search(model.step, model.encode(labels), BOS, EOS, beam_size=3, max_len=10)
    assert beam.sequences == res.sequences
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    _, tgt_in, _, _ = class_batch(torch.Generator().manual_seed(1), 4)
    assert torch.equal(loaded(labels, tgt_in), model(labels, tgt_in))


# -- configs and errors ---------------------------------------------------------------------------
def test_registry_and_config_round_trip():
    model = make("image", feed_condition=True)
    config = model.get_config()
    assert config["image_size"] == [12, 12]  # JSON form
    rebuilt = build_model("conditional_generator", config)
    assert isinstance(rebuilt, ConditionalGenerator) and rebuilt.get_config() == config
    assert rebuilt.config.condition_size == 6
    assert GeneratorConfig(vocab_size=5, num_classes=3).condition_size == 64


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(), r"set exactly one of cond_size .* got \[\]"),
        (dict(num_classes=3, cond_size=4), r"got \['cond_size', 'num_classes'\]"),
        (dict(image_channels=1), "image conditioning needs image_size"),
        (dict(num_classes=3, image_size=(8, 8)), "image_size needs image_channels"),
        (dict(image_channels=1, image_size=(6, 12)), r"too small for 3 pooling blocks .* at least 8 x 8"),
        (dict(image_channels=1, image_size=(8, 8), cnn_channels=[]), "cnn_channels must be a non-empty list"),
        (dict(cond_size=4, cond_dim=8), "cond_dim sizes the image/class encoders"),
        (dict(num_classes=3, image_encoder="columns"), "image_encoder='columns' needs image conditioning"),
        (dict(image_channels=1, image_size=(8, 8), column_hidden=8), "column_hidden needs image_encoder='columns'"),
        (dict(image_channels=1, image_size=(8, 8), attend_columns=True), "attend_columns needs image_encoder="),
        (dict(image_channels=1, image_size=(8, 8), image_encoder="rows"), "Input should be 'flat' or 'columns'"),
        (dict(image_channels=1, image_size=(8, 8), image_encoder="columns", column_hidden=0), "greater than 0"),
        (dict(num_classes=3, padding_idx=5), "padding_idx must be < vocab_size"),
        (dict(num_classes=3, colour="red"), "Extra inputs are not permitted"),
    ],
)
def test_config_errors(kw, message):
    kw = {"cnn_channels": [4, 8, 8], **kw} if "cnn_channels" not in kw and "image_channels" in kw else kw
    with pytest.raises(ValueError, match=message):
        ConditionalGenerator(vocab_size=5, **kw)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"expected class ids \(B,\)"):
        make("class")(torch.randn(3), tokens())
    with pytest.raises(ValueError, match=r"expected vectors \(B, 5\)"):
        make("vector")(torch.randn(3, 4), tokens())
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 12, 12\)"):
        make("image")(torch.randn(3, 1, 10, 12), tokens())
    with pytest.raises(ValueError, match="tgt_in has batch 3 but cond has 2"):
        make("class")(torch.tensor([0, 1]), tokens())
    with pytest.raises(ValueError, match=r"tokens must have shape \(B,\)"):
        model = make("class")
        model.step(tokens(), model.encode(cond_for("class")))
