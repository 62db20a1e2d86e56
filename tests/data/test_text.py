from __future__ import annotations

import random

import pytest
import torch

from rnnkit.data.text import (
    PAD_ID,
    UNK_ID,
    BucketBatchSampler,
    encode_texts,
    load_tokenizer,
    pad_collate,
    pad_ids,
    save_tokenizer,
    train_word_tokenizer,
)

TRAIN = ["The film is great.", "the FILM is dull!", "A great, great film.", "dull and long!", "once only"]


def test_tokenizer_vocabulary_comes_from_train_only():
    tok = train_word_tokenizer(TRAIN, min_frequency=2)
    vocab = tok.get_vocab()
    assert vocab["[PAD]"] == PAD_ID and vocab["[UNK]"] == UNK_ID
    assert {"the", "film", "is", "great", "dull", "."} <= set(vocab)
    assert "once" not in vocab and "only" not in vocab  # seen once: below min_frequency
    # "superb" is in no training text, as if it were only in validation/test
    ids = encode_texts(tok, ["Superb film."])[0]
    assert ids == [UNK_ID, vocab["film"], vocab["."]]


def test_tokenizer_normalizes_and_splits_punctuation(tmp_path):
    tok = train_word_tokenizer(TRAIN, min_frequency=2)
    vocab = tok.get_vocab()
    # full-width letters (NFKC), upper case, and punctuation glued to words
    assert encode_texts(tok, ["ＧＲＥＡＴ film!!"])[0] == [vocab["great"], vocab["film"], vocab["!"], vocab["!"]]
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tok, path)
    assert encode_texts(load_tokenizer(path), TRAIN) == encode_texts(tok, TRAIN)


def test_tokenizer_options():
    assert train_word_tokenizer(TRAIN, min_frequency=1, max_vocab=5).get_vocab_size() == 5
    assert "once" in train_word_tokenizer(TRAIN, min_frequency=1).get_vocab()
    with pytest.raises(ValueError, match="min_frequency"):
        train_word_tokenizer(TRAIN, min_frequency=0)
    tok = train_word_tokenizer(TRAIN)
    assert encode_texts(tok, ["", "the film is great"], max_length=2) == [[UNK_ID], encode_texts(tok, ["the film"])[0]]


def test_pad_collate():
    ids, lengths, labels = pad_collate([([5, 6, 7], 1), ([8], 0), ([9, 10], 1)])
    assert ids.dtype == lengths.dtype == labels.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [9, 10, PAD_ID]]
    assert lengths.tolist() == [3, 1, 2] and labels.tolist() == [1, 0, 1]


def test_pad_ids():
    ids = pad_ids([[5, 6], [7]], value=-1)
    assert ids.dtype == torch.long and ids.tolist() == [[5, 6], [7, -1]]
    assert pad_ids([[5], []]).tolist() == [[5], [PAD_ID]] and tuple(pad_ids([]).shape) == (0, 0)


@pytest.mark.parametrize("shuffle", [True, False])
def test_bucket_sampler_covers_every_index_once(shuffle):
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(1003)]
    sampler = BucketBatchSampler(lengths, 16, shuffle=shuffle, bucket_batches=5)
    for _ in range(2):  # two epochs
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert all(1 <= len(b) <= 16 for b in batches)


def test_bucket_sampler_is_deterministic_and_buckets_lengths():
    rng = random.Random(1)
    lengths = [rng.randint(1, 60) for _ in range(800)]

    def epochs(seed):
        s = BucketBatchSampler(lengths, 8, seed=seed, bucket_batches=10)
        return [list(s) for _ in range(3)]

    a = epochs(0)
    assert a == epochs(0)
    assert a != epochs(1)
    assert a[0] != a[1]  # a new order every epoch
    s = BucketBatchSampler(lengths, 8, seed=0, bucket_batches=10)
    s.set_epoch(2)
    assert list(s) == a[2]

    # sorting within chunks keeps padding small: the spread inside a batch is far below the random spread
    def spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    unsorted = [list(range(i, i + 8)) for i in range(0, 800, 8)]
    assert spread(a[0]) < 8 < 40 < spread(unsorted)
    # evaluation order: one pass sorted by length
    flat = [i for b in BucketBatchSampler(lengths, 8, shuffle=False) for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_bucket_sampler_drop_last():
    lengths = [1] * 103
    for shuffle in (True, False):
        s = BucketBatchSampler(lengths, 10, shuffle=shuffle, bucket_batches=3, drop_last=True)
        batches = list(s)
        assert all(len(b) == 10 for b in batches) and len(batches) == len(s)
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(lengths, 0)
