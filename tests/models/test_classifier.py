"""Classifier: padding never matters, every pooling and cell works, it learns, saves, loads, explains itself."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import Classifier
from rnnkit.models.base import load_model, save_model


def text_model(pooling="max", bidirectional=True, cell="lstm", **kw):
    enc = dict(vocab_size=50, embed_dim=8, hidden_size=6, num_layers=2, bidirectional=bidirectional, cell=cell)
    return Classifier(encoder=enc, num_classes=3, pooling=pooling, **kw)


@pytest.mark.parametrize("pooling", ["max", "mean", "last", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "ln_gru"])
def test_logits_do_not_depend_on_padding(pooling, bidirectional, cell):
    torch.manual_seed(0)
    model = text_model(pooling, bidirectional, cell).eval()
    a, b = torch.randint(2, 50, (5,)), torch.randint(2, 50, (3,))
    alone = torch.cat([model(a[None]), model(b[None])])
    batch = torch.randint(1, 50, (2, 9))  # garbage ids in the padding, and padding past the longest too
    batch[0, :5], batch[1, :3] = a, b
    torch.testing.assert_close(model(batch, torch.tensor([5, 3])), alone, atol=1e-6, rtol=1e-5)


def test_real_valued_multichannel_input_and_regression():
    torch.manual_seed(0)
    clf = Classifier(encoder=dict(input_size=12, hidden_size=8, cell="gru"), num_classes=9, pooling="mean")
    x = torch.randn(4, 20, 12)
    assert clf(x, torch.tensor([20, 7, 13, 1])).shape == (4, 9)
    reg = Classifier(encoder=dict(input_size=3, hidden_size=8), output_size=2, pooling="last")
    y = reg(torch.randn(4, 10, 3))
    assert y.shape == (4, 2)
    assert reg.loss(torch.randn(4, 10, 3), None, torch.randn(4, 2)).item() > 0
    assert not reg.is_classifier
    with pytest.raises(ValueError, match=r"expected features \(B, T, 3\)"):
        reg(torch.randn(4, 10, 5))


def test_learns_class_from_pattern():
    """Class = which of three motifs appears somewhere in a noisy sequence (position varies)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    motifs = torch.tensor([[3, 4, 5], [5, 4, 3], [3, 3, 3]])

    def batch(n):
        x = torch.randint(6, 20, (n, 12), generator=g)
        y = torch.randint(0, 3, (n,), generator=g)
        pos = torch.randint(0, 9, (n,), generator=g)
        for i in range(n):
            x[i, pos[i] : pos[i] + 3] = motifs[y[i]]
        return x, y

    model = Classifier(encoder=dict(vocab_size=20, embed_dim=16, hidden_size=24, bidirectional=True), num_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = batch(32)
        opt.zero_grad()
        model.loss(x, None, y).backward()
        opt.step()
    x, y = batch(300)
    acc = (model.predict(x).argmax(-1) == y).float().mean().item()
    assert acc > 0.97


def test_attention_pooling_weights_cover_real_steps_only():
    model = text_model("attention").eval()
    x = torch.randint(1, 50, (2, 6))
    _, w = model.forward_with_weights(x, torch.tensor([6, 2]))
    assert w.shape == (2, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert bool((w[1, 2:] == 0).all())


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = text_model("attention", head_hidden=[7]).eval()
    save_model(model, tmp_path)
    again = load_model(tmp_path).eval()
    x = torch.randint(1, 50, (3, 5))
    torch.testing.assert_close(again(x), model(x))
    assert again.get_config() == model.get_config()


def test_tutorial_architectures_are_expressible():
    # Keras: SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) -> Dense(16, relu) -> Dense(k)
    stacked = Classifier(
        encoder=dict(input_size=1, cell="rnn_tanh", hidden_size=[64, 32]),
        num_classes=5,
        pooling="last",
        head_hidden=[16],
    )
    n_rnn = (1 * 64 + 64 * 64 + 2 * 64) + (64 * 32 + 32 * 32 + 2 * 32)  # torch keeps two bias vectors
    assert stacked.num_parameters() == n_rnn + (32 * 16 + 16) + (16 * 5 + 5)
    assert stacked(torch.randn(2, 9, 1)).shape == (2, 5)
    # 2-layer BiLSTM sentiment classifier with dropout
    bilstm = Classifier(
        encoder=dict(vocab_size=1000, embed_dim=64, hidden_size=64, num_layers=2, bidirectional=True, dropout=0.3),
        num_classes=2,
        dropout=0.5,
    )
    assert bilstm(torch.randint(1, 1000, (2, 11))).shape == (2, 2)
    text = bilstm.summary()
    assert "encoder.stacks.0 (LSTM)" in text and "total parameters" in text
    assert f"{bilstm.num_parameters():,}" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=2, pooling="sum"), "pooling"),
        (dict(num_classes=1), "num_classes"),
        (dict(), "exactly one of num_classes"),
        (dict(num_classes=2, output_size=1), "exactly one of num_classes"),
        (dict(num_classes=2, attention_hidden=4), "attention_hidden"),
        (dict(num_classes=2, colour="red"), "colour"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Classifier(encoder=dict(vocab_size=10), **kwargs)


def test_encoder_config_errors_are_reported_with_their_path():
    with pytest.raises(ValueError, match="encoder.hidden_sise"):
        Classifier(encoder=dict(vocab_size=10, hidden_sise=3), num_classes=2)
