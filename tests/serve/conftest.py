"""Tiny finished run folders (trained in seconds, once per session) and a real uvicorn server in a thread."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from serve_helpers import seasonal_csv

import text_fixtures

TINY = ["train.epochs=2", "train.lr=0.01", "train.batch_size=16", "model.dropout=0.0"]


def _train(tmp_path_factory, target: str, data: Path, name: str, *overrides: str) -> Path:
    from rnnkit.tasks.runner import train

    runs = tmp_path_factory.mktemp("runs")
    summary = train(target, data=data, runs_dir=runs, name=name, quiet=True, overrides=[*TINY, *overrides])
    return summary.path


def write_reviews(path: Path, n: int = 240, seed: int = 0) -> Path:
    return text_fixtures.write_reviews(path, n, seed)


@pytest.fixture(scope="session")
def reviews(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("data") / "reviews.csv")


@pytest.fixture(scope="session")
def attention_run(tmp_path_factory, reviews) -> Path:
    """Text classification with attention pooling (its predict output has attention weights)."""
    return _train(tmp_path_factory, "text-classification", reviews, "att", "model.pooling=attention",
                  "model.embed_dim=16", "model.hidden_size=16")  # fmt: skip


@pytest.fixture(scope="session")
def ensemble_attention_run(tmp_path_factory, reviews) -> Path:
    """A two-member text classifier ensemble with attention pooling (each member its own word embedding)."""
    return _train(tmp_path_factory, "text-classification", reviews, "ens", "model.pooling=attention",
                  "model.ensemble=2", "model.embed_dim=16", "model.hidden_size=16")  # fmt: skip


@pytest.fixture(scope="session")
def max_run(tmp_path_factory, reviews) -> Path:
    """Text classification with max pooling (the page asks for gradient x input saliency)."""
    return _train(tmp_path_factory, "text-classification", reviews, "max", "model.embed_dim=16", "model.hidden_size=16")


@pytest.fixture(scope="session")
def seq2seq_run(tmp_path_factory) -> Path:
    rng, seen, lines = random.Random(0), set(), []
    while len(lines) < 120:
        s = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5)))
        if s not in seen:
            seen.add(s)
            lines.append(f"{s}\t{s[::-1]}")
    data = tmp_path_factory.mktemp("data") / "pairs.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _train(tmp_path_factory, "seq2seq", data, "rev", "model.hidden_size=16", "model.embed_dim=8")


@pytest.fixture(scope="session")
def tagging_run(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = {"DET": ["the", "a"], "NOUN": ["cat", "dog", "bird"], "VERB": ["runs", "sees"]}
    lines = []
    for _ in range(120):
        lines += [f"{rng.choice(words[t])}\t{t}" for t in ("DET", "NOUN", "VERB", "DET", "NOUN")] + [""]
    data = tmp_path_factory.mktemp("data") / "tags.conll"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _train(tmp_path_factory, "tagging", data, "pos", "model.hidden_size=16", "model.embed_dim=8")


@pytest.fixture(scope="session")
def forecasting_run(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "series.csv"
    data.write_text(seasonal_csv(120), encoding="utf-8")
    return _train(tmp_path_factory, "forecasting", data, "fc", "data.window=12", "model.horizon=4",
                  "data.test_size=12", "data.validation_size=8", "data.season=12", "model.hidden_size=8")  # fmt: skip


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "pangram.txt"
    data.write_text("the quick brown fox jumps over the lazy dog\n" * 100, encoding="utf-8")
    return _train(tmp_path_factory, "language-model", data, "lm", "data.level=char", "data.bptt=20",
                  "model.hidden_size=16", "model.embed_dim=8")  # fmt: skip
