"""``rnnkit.train`` / ``rnnkit.load`` / ``Run`` on in-memory data: the same data through the CLI and through
Python gives the same metrics with the same seed; in-memory data of the other task kinds; errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import rnnkit
import text_fixtures
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError

SMALL = {
    "model.embed_dim": 16,
    "model.hidden_size": 16,
    "model.dropout": 0.0,
    "train.lr": 0.01,
    "train.batch_size": 16,
    "train.epochs": 2,
    "train.seed": 3,
}


def reviews(tmp_path, n=200):
    path = text_fixtures.write_reviews(tmp_path / "reviews.csv", n)
    with open(path, encoding="utf-8", newline="") as f:
        return path, [(r["text"], r["label"]) for r in csv.DictReader(f)]


def without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_cli_and_python_give_the_same_metrics(tmp_path, capsys):
    path, pairs = reviews(tmp_path)
    sets = [f"{k}={v}" for k, v in SMALL.items()]
    runs = tmp_path / "runs"
    argv = ["train", "text-classification", "--data", str(path), "--runs-dir", str(runs), "--name", "cli", "--quiet"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    capsys.readouterr()
    cli = rnnkit.load(runs / "cli")

    run = rnnkit.train("text-classification", data=pairs, overrides=SMALL, runs_dir=runs, name="py")
    assert run.path == runs / "py"
    assert run.metrics == cli.metrics  # exact: the same reader, split, vocabulary, seed and batches
    assert set(run.metrics) == {"loss", "accuracy", "f1"}
    assert without_time(run.history) == without_time(cli.history)
    assert len(run.history) == 2

    # the Run answers like the CLI's predict / evaluate
    assert run.predict(["a great film", "a dull plot"]) == cli.predict(["a great film", "a dull plot"])
    assert run.evaluate() == run.metrics  # the in-memory data train was given, again
    assert cli.evaluate(str(path)) == cli.metrics
    assert rnnkit.load(run.path).metrics == run.metrics


def test_a_dataframe_and_dicts_are_pairs_too(tmp_path):
    pd = pytest.importorskip("pandas")
    _, pairs = reviews(tmp_path, 120)
    frame = pd.DataFrame(pairs, columns=["review", "sentiment"])
    sets = {**SMALL, "train.epochs": 1, "data.text_column": "review", "data.label_column": "sentiment"}
    a = rnnkit.train("text-classification", data=frame, overrides=sets, runs_dir=tmp_path, name="a")
    dicts = [{"review": t, "sentiment": y} for t, y in pairs]
    b = rnnkit.train("text-classification", data=dicts, overrides=sets, runs_dir=tmp_path, name="b")
    assert a.metrics == b.metrics
    assert json.loads((a.path / "meta.json").read_text())["task_state"]["labels"] == ["neg", "pos"]


def test_tagging_and_language_model_in_memory(tmp_path):
    words = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sleeps": "VERB"}
    sentences = [
        [(d, "DET"), (n, "NOUN"), (v, "VERB")] for d in ("the", "a") for n in ("dog", "cat") for v in ("runs", "sleeps")
    ] * 6
    sentences = [s + [(f"w{i}", "X")] for i, s in enumerate(sentences)]  # distinct sentences: the split hashes them
    small = {"model.embed_dim": 8, "model.hidden_size": 8, "train.epochs": 1, "train.batch_size": 8}
    tagger = rnnkit.train("tagging", data=sentences, overrides=small, runs_dir=tmp_path, name="tags")
    assert "accuracy" in tagger.metrics
    (row,) = tagger.predict(["the dog runs"])
    assert [t for t in row["tags"]] and len(row["tags"]) == 3
    assert set(words) >= set(row["tokens"])

    lines = ["the dog runs", "a cat sleeps", "the cat runs"] * 20
    lm = rnnkit.train("language-model", data=lines, overrides=small, runs_dir=tmp_path, name="lm")
    assert "perplexity" in lm.metrics
    (sample,) = lm.generate(["the"], max_tokens=3, seed=1)
    assert isinstance(sample, dict)


def test_in_memory_data_errors(tmp_path):
    with pytest.raises(RnnkitError, match=r"data\[1\]: expected a \(text, label\) pair"):
        rnnkit.train("text-classification", data=[("good", "pos"), "bad"], runs_dir=tmp_path)
    with pytest.raises(RnnkitError, match=r"data\[0\]\[1\]: expected a \(token, tag\) pair"):
        rnnkit.train("tagging", data=[[("the", "DET"), "dog"]], runs_dir=tmp_path)
    with pytest.raises(RnnkitError, match="takes its data as a path"):
        rnnkit.train("image-classification", data=[[0.0] * 4], runs_dir=tmp_path)
    with pytest.raises(RnnkitError, match="a string is a path to a data file; give text in memory as a list"):
        rnnkit.train("language-model", data="to be or not to be\n" * 300, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was started


def test_seq2seq_series_and_forecasting_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    small = {"model.hidden_size": 8, "train.epochs": 1, "train.batch_size": 8}
    pairs = [(f"{a} {i}", f"{i} {a}") for i, a in enumerate(["ab", "cd", "ef"] * 20)]
    s2s = rnnkit.train("seq2seq", data=pairs, overrides={**small, "model.embed_dim": 8}, runs_dir=tmp_path, name="s")
    assert {"loss", "bleu"} <= set(s2s.metrics)
    assert s2s.predict(["ab 1"])[0]["source"] == "ab 1"

    cases = [(rng.normal(size=(int(rng.integers(5, 12)), 2)) + (i % 2), ["down", "up"][i % 2]) for i in range(60)]
    series = rnnkit.train("series-classification", data=cases, overrides=small, runs_dir=tmp_path, name="ts")
    assert series.meta["task_state"]["labels"] == ["down", "up"] and series.meta["task_state"]["channels"] == 2
    assert series.evaluate() == series.metrics  # the cases again, written to a .ts file once more
    rows = series.predict([cases[0][0], cases[1][0][:, :]])  # in-memory series, answered in order
    assert [r["input"] for r in rows] == ["inputs[0]", "inputs[1]"] and {r["label"] for r in rows} <= {"down", "up"}
    with pytest.raises(RnnkitError, match="not both"):
        series.predict([cases[0][0], "cases.ts"])
    with pytest.raises(RnnkitError, match="predicts strings"):
        s2s.predict([np.zeros(3)])

    values = np.sin(np.arange(150) / 5) + 5
    forecast = rnnkit.train("forecasting", data=values, overrides={"train.epochs": 1}, runs_dir=tmp_path, name="f")
    assert {"mae", "rmse"} <= set(forecast.metrics)
    (row,) = forecast.predict([values[:60]])  # a history in memory
    assert row["input"] == "inputs[0]" and len(row["forecast"]) == forecast.loaded.config.model.horizon
