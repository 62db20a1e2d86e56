"""IMDB for the user's own copy: the ``aclImdb/`` folder reader, a ``review,sentiment`` CSV, and the
``sentiment-imdb`` recipe (``rnnkit train sentiment-imdb --data ...``) on tiny fixtures written here."""

from __future__ import annotations

import csv
import json
import random

import pytest

from fake_archives import FakeIndex, wordpiece_members
from rnnkit.cli.main import main
from rnnkit.data.registry import text_hash
from rnnkit.errors import RnnkitError
from rnnkit.tasks.runner import resolve_config
from rnnkit.tasks.text_classification import read_aclimdb

IMDB_GOOD, IMDB_BAD = ["brilliant", "touching", "wonderful"], ["boring", "awful", "lame"]
IMDB_FILLER = ["the", "movie", "acting", "was", "and", "plot", "this", "i", "it"]


def imdb_review(rng, label: str, i: int) -> str:
    words = rng.sample(IMDB_FILLER, 6) + rng.sample(IMDB_GOOD if label == "pos" else IMDB_BAD, 2) + [f"r{i}"]
    rng.shuffle(words)
    return " ".join(words[:5]) + ".<br /><br />" + " ".join(words[5:]).capitalize() + "!"


def write_aclimdb(root, n_train=60, n_test=20, seed=0):
    """A tiny ``aclImdb/`` (train|test/pos|neg/<id>_<rating>.txt, plus the parts rnnkit ignores)."""
    rng = random.Random(seed)
    i = 0
    for part, n in (("train", n_train), ("test", n_test)):
        for label in ("pos", "neg"):
            folder = root / "aclImdb" / part / label
            folder.mkdir(parents=True)
            for k in range(n):
                rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                (folder / f"{k}_{rating}.txt").write_text(imdb_review(rng, label, i), encoding="utf-8")
                i += 1
        (root / "aclImdb" / part / "urls_pos.txt").write_text("http://example.com\n")
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("no label here")
    (root / "aclImdb" / "imdb.vocab").write_text("the\n")
    return root / "aclImdb"


def test_read_aclimdb_official_split_and_hashed_validation(tmp_path):
    folder = write_aclimdb(tmp_path)
    splits = read_aclimdb(folder)
    assert read_aclimdb(tmp_path) == splits  # the folder that holds aclImdb/ works too
    assert len(splits["test"]) == 40 and len(splits["train"]) + len(splits["validation"]) == 120
    assert splits["validation"] and all(text_hash(r["text"]) % 10 == 1 for r in splits["validation"])
    assert all(text_hash(r["text"]) % 10 != 1 for r in splits["train"])
    assert {r["label"] for s in splits.values() for r in s} == {"neg", "pos"}
    assert all("no label here" not in r["text"] for s in splits.values() for r in s)  # unsup is ignored
    # files in (id, rating) order, not name order: 10_*.txt comes after 9_*.txt
    test_pos = [r["text"] for r in splits["test"] if r["label"] == "pos"]
    by_id = sorted((folder / "test" / "pos").glob("*_*.txt"), key=lambda f: int(f.name.split("_")[0]))
    assert test_pos == [f.read_text() for f in by_id]


def test_read_aclimdb_errors_name_the_folder(tmp_path):
    folder = write_aclimdb(tmp_path)
    for f in (folder / "test" / "neg").iterdir():
        f.unlink()
    with pytest.raises(RnnkitError, match="no <id>_<rating>.txt reviews") as e:
        read_aclimdb(folder)
    assert str(folder / "test" / "neg") in str(e.value)
    (folder / "test" / "neg").rmdir()
    with pytest.raises(RnnkitError, match=r"no folder test/neg: expected the aclImdb layout"):
        read_aclimdb(folder)
    (folder / "test" / "neg").mkdir()
    (folder / "test" / "neg" / "1_2.txt").write_bytes(b"caf\xe9")
    with pytest.raises(RnnkitError, match="not valid UTF-8"):
        read_aclimdb(folder)


@pytest.fixture
def imdb_embeddings(tmp_path, monkeypatch):
    """The recipe's pretrained embeddings, as a tiny fake minilm-wordpiece wheel."""
    index = FakeIndex(tmp_path, monkeypatch)
    index.serve("minilm-wordpiece", wordpiece_members([*IMDB_GOOD, *IMDB_BAD, *IMDB_FILLER], dim=8))
    return index


TINY = ["train.epochs=1", "model.hidden_size=8", "train.batch_size=16", "train.lr=0.02"]


def imdb_train(tmp_path, data, *extra, name="imdb"):
    args = ["train", "sentiment-imdb", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    return main([*args, "--name", name, "--set", *TINY, *extra])


def test_sentiment_imdb_recipe_on_an_aclimdb_folder(imdb_embeddings, tmp_path, capsys):
    folder = write_aclimdb(tmp_path)
    assert imdb_train(tmp_path, folder) == 0
    run = tmp_path / "runs" / "imdb"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task_state"]["labels"] == ["neg", "pos"]
    assert meta["dataset"]["format"] == "aclImdb" and meta["dataset"]["source"] == str(folder)
    sizes = meta["dataset"]["sizes"]
    assert sizes["test"] == 40 and sizes["train"] + sizes["validation"] == 120
    assert (run / "tokenizer.json").is_file() and meta["dataset"]["embeddings"] == "minilm-wordpiece"
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 40 and "<br />" in predictions[0]["text"]  # raw text kept; tags dropped for the model
    capsys.readouterr()
    assert main(["predict", str(run), "A brilliant, touching movie.<br /><br />Wonderful!"]) == 0
    assert set(json.loads(capsys.readouterr().out)["probabilities"]) == {"neg", "pos"}
    assert main(["evaluate", str(run), "--data", str(tmp_path)]) == 0  # the folder holding aclImdb/
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])


def test_sentiment_imdb_recipe_on_a_review_sentiment_csv(imdb_embeddings, tmp_path):
    rng = random.Random(1)
    data = tmp_path / "IMDB Dataset.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for i in range(120):
            label = ("negative", "positive")[i % 2]
            w.writerow([imdb_review(rng, label[:3], i), label])
    assert imdb_train(tmp_path, data) == 0
    meta = json.loads((tmp_path / "runs" / "imdb" / "meta.json").read_text())
    assert meta["task_state"]["labels"] == ["negative", "positive"]
    assert sum(meta["dataset"]["sizes"].values()) == 120


def test_sentiment_imdb_without_data_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "sentiment-imdb", "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "imdb" in err and "--data" in err and "aclImdb" in err
    assert not any((tmp_path / "runs").iterdir())


def test_sentiment_imdb_recipe_matches_the_sentiment_model():
    _, imdb = resolve_config("sentiment-imdb")
    _, rt = resolve_config("sentiment")
    assert imdb.task == "text-classification" and imdb.data.dataset == "imdb"
    assert (imdb.data.text_column, imdb.data.label_column) == ("review", "sentiment") and imdb.data.replace_br
    assert rt.model.ensemble == 3 and imdb.model.ensemble == 1  # one member of the sentiment ensemble
    assert imdb.model == rt.model.model_copy(update={"ensemble": 1})
