"""CharWordEncoder: one vector per word from its characters, independent of the batch around it."""

import pytest
import torch

from rnnkit.layers import CharWordEncoder


def words_batch(generator):
    # 2 sentences, 3 word slots, up to 6 characters; sentence 1 has 2 words; word lengths vary
    chars = torch.randint(1, 20, (2, 3, 6), generator=generator)
    lengths = torch.tensor([[6, 2, 4], [1, 5, 0]])
    return chars.masked_fill(torch.arange(6) >= lengths.unsqueeze(-1), 0)


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_each_word_alone_equals_the_batch(kind):
    torch.manual_seed(0)
    enc = CharWordEncoder(20, kind, embed_dim=5, hidden_size=4).double()
    chars = words_batch(torch.Generator().manual_seed(1))
    out = enc(chars)
    assert out.shape == (2, 3, enc.output_size) and enc.output_size == (4 if kind == "cnn" else 8)
    assert torch.all(out[1, 2] == 0)  # a padding word
    for b in range(2):
        for t in range(3):
            n = int((chars[b, t] != 0).sum())
            if n:  # the word alone, without padding characters, gives the same vector
                alone = enc(chars[b, t, :n].view(1, 1, n))
                torch.testing.assert_close(out[b, t], alone[0, 0])


def test_lstm_kind_is_a_bilstm_over_the_characters():
    torch.manual_seed(0)
    enc = CharWordEncoder(10, "lstm", embed_dim=3, hidden_size=2).double()
    word = torch.tensor([[[4, 2, 7]]])
    e = enc.embedding(word[0])  # (1, 3, E)
    ref = torch.nn.LSTM(3, 2, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(enc.lstm.state_dict())
    _, (h, _) = ref(e)
    torch.testing.assert_close(enc(word)[0, 0], torch.cat([h[0, 0], h[1, 0]]))


def test_gradients_reach_the_character_embeddings():
    enc = CharWordEncoder(12, "cnn")
    chars = words_batch(torch.Generator().manual_seed(2)).clamp(max=11)
    enc(chars).sum().backward()
    grad = enc.embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad[1:].abs().sum() > 0  # padding row untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_chars": 1}, "num_chars"),
        ({"num_chars": 5, "kind": "gru"}, "kind"),
        ({"num_chars": 5, "kernel_size": 2}, "kernel_size"),
        ({"num_chars": 5, "hidden_size": 0}, "positive"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharWordEncoder(**kwargs)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="expected char ids"):
        CharWordEncoder(5)(torch.zeros(2, 3, dtype=torch.long))
