"""Character features in the ``tagging`` task: words never seen in training are tagged from their spelling."""

from __future__ import annotations

import json
import random

import pytest

from rnnkit.tasks.runner import load_run, train

SUFFIX_TAGS = {"ing": "VERB", "ness": "NOUN", "ly": "ADV"}


def made_up_word(rng: random.Random, suffix: str) -> str:
    return "".join(rng.choice("bcdfgkmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(1, 3))) + suffix


def suffix_file(path, n=400, seed=0):
    """Every word is made up and (nearly always) seen once, so the word vocabulary is all <unk>; only the
    suffix tells the tag."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        suffixes = [rng.choice(list(SUFFIX_TAGS)) for _ in range(3)]
        lines += ["the\tDET"] + [f"{made_up_word(rng, s)}\t{SUFFIX_TAGS[s]}" for s in suffixes] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SETTINGS = ["train.epochs=6", "model.embed_dim=8", "model.hidden_size=16", "model.dropout=0.0", "train.lr=0.02",
            "train.batch_size=16", "model.char_embed_dim=8", "model.char_hidden=16"]  # fmt: skip


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_char_features_tag_unseen_words_from_their_spelling(tmp_path, kind):
    data = suffix_file(tmp_path / "suffixes.conll")
    runs = tmp_path / "runs"
    with_chars = train("tagging", data=data, runs_dir=runs, name="chars", quiet=True,
                       overrides=[*SETTINGS, f"model.char_features={kind}"])  # fmt: skip
    assert with_chars.metrics["accuracy"] > 0.97
    if kind == "cnn":  # the same model without characters can only guess from the context
        words_only = train("tagging", data=data, runs_dir=runs, name="words", quiet=True, overrides=SETTINGS)
        assert words_only.metrics["accuracy"] < 0.75

    run = load_run(runs / "chars")
    meta = json.loads((runs / "chars" / "meta.json").read_text())
    assert meta["task_state"]["chars"] == "chars.json" and (runs / "chars" / "chars.json").is_file()
    assert meta["model"]["config"]["chars"]["kind"] == kind
    rng = random.Random(99)
    words = [made_up_word(rng, s) for s in ("ing", "ness", "ly", "ness")]
    [result] = run.task.predict(run.model, ["the " + " ".join(words)])
    assert result["tags"] == ["DET", "VERB", "NOUN", "ADV", "NOUN"]
    assert run.task.predict(run.model, [""]) == [{"tokens": [], "tags": []}]


def test_long_words_keep_both_ends(tmp_path):
    data = suffix_file(tmp_path / "suffixes.conll", n=60)
    overrides = [*SETTINGS, "train.epochs=1", "model.char_features=cnn", "data.max_word_chars=6"]
    train("tagging", data=data, runs_dir=tmp_path / "runs", name="r", quiet=True, overrides=overrides)
    task = load_run(tmp_path / "runs" / "r").task
    [ids] = task._char_ids(["bakotimezu"])
    assert task.char_vocab.decode(ids) == list("bakezu")
    [short] = task._char_ids(["abc"])
    assert task.char_vocab.decode(short) == list("abc")
