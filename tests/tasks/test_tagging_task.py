"""The ``tagging`` task: CoNLL / CoNLL-U / word-tag readers, splits, tag checks, and train -> predict -> evaluate."""

from __future__ import annotations

import json
import random

import pytest

from rnnkit.cli.main import main
from rnnkit.data.registry import text_hash
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks.runner import load_run, resolve_config
from rnnkit.tasks.tagging import Tagging, read_tagged

CONLL = """\
# a comment before the first sentence
-DOCSTART-\tO

The\tDET
dog\tNOUN
#\tSYM
barks\tVERB

A\tDET
cat\tNOUN
"""

CONLL_2003 = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
"""

CONLLU = """\
# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\tSpaceAfter=No

1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_

"""

WORDTAG = """\
# Brown-style, one sentence a line

\tThe/at Fulton/np-tl County/nn-tl cost/vbd 1/2/cd ./.
It/pps rained/vbd ./.
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_conll_columns_comments_and_docstart(tmp_path):
    sentences, fmt = read_tagged(write(tmp_path, "a.conll", CONLL))
    assert fmt == "conll"
    assert [s.tokens for s in sentences] == [["The", "dog", "#", "barks"], ["A", "cat"]]  # '#' inside is a token
    assert [s.tags for s in sentences] == [["DET", "NOUN", "SYM", "VERB"], ["DET", "NOUN"]]
    assert sentences[0].lines == [4, 5, 6, 7] and sentences[1].lines == [9, 10]
    # space-separated CoNLL-2003: the last column by default, or any column
    path = write(tmp_path, "b.txt", CONLL_2003)
    assert read_tagged(path)[0][0].tags == ["B-ORG", "O"]
    assert read_tagged(path, tag_column=1)[0][0].tags == ["NNP", "VBZ"]


def test_conllu_skips_ranges_and_empty_nodes(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    for fmt in ("auto", "conllu"):
        sentences, found = read_tagged(path, fmt)
        assert found == "conllu"
        assert [s.tokens for s in sentences] == [["Do", "n't", "go", "."], ["Hi"]]
        assert [s.tags for s in sentences] == [["AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert read_tagged(path, tag_column=4)[0][0].tags == ["VBP", "RB", "VB", "."]  # XPOS
    # detected from the lines too, whatever the file is called
    assert read_tagged(write(tmp_path, "ud.txt", CONLLU))[1] == "conllu"


def test_word_tag_lines(tmp_path):
    sentences, fmt = read_tagged(write(tmp_path, "brown.txt", WORDTAG))
    assert fmt == "wordtag"
    assert sentences[0].tokens == ["The", "Fulton", "County", "cost", "1/2", "."]  # tag after the last '/'
    assert sentences[0].tags == ["at", "np-tl", "nn-tl", "vbd", "cd", "."]
    assert [s.lines[0] for s in sentences] == [3, 4]
    latin1 = write(tmp_path, "latin.txt", "caf\xe9/nn ./.\n".encode("latin-1"))
    assert read_tagged(latin1, encoding="latin-1")[0][0].tokens == ["café", "."]


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        ("a.conll", "The\tDET\ndog\tNOUN\textra\n", {}, "a.conll:2: expected 2 columns like line 1, found 3"),
        ("a.conll", "The\nDog\n", {"format": "conll"}, "a.conll:1: expected a token and a tag column"),
        ("a.conll", "The\tDET\n\tNOUN\n", {}, "a.conll:2: empty token in column 0"),
        ("a.conll", "The\tDET\n", {"tag_column": 5}, "a.conll:1: no column 5"),
        ("a.conllu", "1\tThe\tthe\tDET\n", {}, "a.conllu:1: CoNLL-U lines have 10 tab-separated columns, found 4"),
        ("a.conllu", "1\tThe\tthe\t_\t_\t_\t0\troot\t_\t_\n", {}, "a.conllu:1: empty tag in column 3"),
        ("b.txt", "The/at dog/nn\nA/at cat\n", {"format": "wordtag"}, "b.txt:2: expected word/tag tokens, got 'cat'"),
        ("b.txt", "The/at dog/nn\n", {"format": "wordtag", "tag_column": 1}, "apply to conll and conllu"),
        ("c.txt", "", {}, "c.txt: no tagged sentences found"),
        ("c.txt", "# only a comment\n\n", {}, "c.txt: no tagged sentences found"),
        ("d.conll", b"The\tDET\n\xff\tNOUN\n", {}, "d.conll:2: not valid utf-8"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, name, content, kwargs, message):
    with pytest.raises(RnnkitError) as e:
        read_tagged(write(tmp_path, name, content), **kwargs)
    assert message in str(e.value)


def sentence_file(path, n=300, seed=0, fmt="conll"):
    """A tag is a rule on the token (its word class), so a tagger learns it within two epochs."""
    rng = random.Random(seed)
    words = {
        "DET": ["the", "a", "this", "that"],
        "ADJ": ["big", "small", "red", "old"],
        "NOUN": ["cat", "dog", "bird", "fish", "man", "car"],
        "VERB": ["runs", "eats", "sees", "likes", "jumps"],
    }
    lines = []
    for i in range(n):
        pattern = ["DET", *(["ADJ"] if rng.random() < 0.5 else []), "NOUN", "VERB", "DET", "NOUN"]
        pairs = [(rng.choice(words[t]), t) for t in pattern] + [(f"name{i}", "X")]
        if fmt == "conll":
            lines += [f"{w}\t{t}" for w, t in pairs] + [""]
        else:
            lines.append(" ".join(f"{w}/{t}" for w, t in pairs))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_task(path, *overrides):
    _, config = resolve_config("tagging", overrides=list(overrides))
    return Tagging(config, path)


def test_one_file_is_split_by_sentence_hash(tmp_path):
    path = sentence_file(tmp_path / "tags.conll", n=120)
    task = make_task(path)
    info = task.prepare(tmp_path)
    assert sum(info["sizes"].values()) == 120 and info["format"] == "conll"
    for split, want in (("test", 0), ("validation", 1)):
        assert all(text_hash(" ".join(t)) % 10 == want for t in task.splits[split]["tokens"])
    assert all(text_hash(" ".join(t)) % 10 > 1 for t in task.splits["train"]["tokens"])
    assert task.tags == ["ADJ", "DET", "NOUN", "VERB", "X"]
    # the vocabulary is the train split's words seen twice or more: every 'nameN' is <unk>
    assert "dog" in task.vocab and "name0" not in task.vocab and (tmp_path / "vocab.json").exists()
    caps = write(tmp_path, "caps.conll", "".join(f"The\tDET\nDog\tNOUN\nx{i}\tX\n\n" for i in range(40)))
    lower = make_task(caps, "data.lowercase=true")
    lower.prepare(tmp_path / "lower")
    assert "dog" in lower.vocab and "Dog" not in lower.vocab
    assert lower.predict(lower.build_model(), ["DOG"])[0]["tokens"] == ["DOG"]  # the words are kept as given


def test_a_folder_gives_the_splits_and_unseen_tags_name_file_and_line(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder, "en-ud-train.conllu", CONLLU * 3)
    write(folder, "en-ud-dev.conllu", CONLLU)
    write(folder, "en-ud-test.conllu", CONLLU)
    task = make_task(folder)
    info = task.prepare(tmp_path)
    assert info["sizes"] == {"train": 6, "validation": 2, "test": 2} and info["format"] == "conllu"
    write(folder, "en-ud-test.conllu", CONLLU.replace("\tINTJ\t", "\tNOUNISH\t"))
    with pytest.raises(RnnkitError, match=r"en-ud-test.conllu:10: tag 'NOUNISH' is not in the train split's tags"):
        make_task(folder).prepare(tmp_path)
    write(folder, "more-test.conllu", CONLLU)
    with pytest.raises(RnnkitError, match="exactly one test file"):
        make_task(folder).prepare(tmp_path)


SMALL = ["model.embed_dim=16", "model.hidden_size=16", "model.dropout=0.0", "train.lr=0.02", "train.batch_size=16"]
RUN_FILES = {"config.yaml", "model.safetensors", "best.safetensors", "meta.json", "vocab.json", "metrics.jsonl",
             "train.log", "predictions.jsonl", "checkpoints", "plots"}  # fmt: skip


def test_train_predict_evaluate_contract(tmp_path, capsys):
    data = sentence_file(tmp_path / "tags.conll")
    runs = tmp_path / "runs"
    args = ["train", "tagging", "--data", str(data), "--runs-dir", str(runs), "--quiet", "--name", "pos"]
    assert main([*args, "--set", "train.epochs=2", *SMALL]) == 0
    run = runs / "pos"
    assert capsys.readouterr().out.strip().endswith(f"run folder: {run}")
    assert {p.name for p in run.iterdir() if p.name != "tensorboard"} == RUN_FILES
    assert {p.name for p in (run / "plots").iterdir()} == {"learning_curves.png", "confusion_matrix.png"}
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task"] == "tagging" and meta["model"]["kind"] == "tagger"
    assert meta["task_state"]["tags"] == ["ADJ", "DET", "NOUN", "VERB", "X"]
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "accuracy"} and test["accuracy"] > 0.95  # learned: the tag is the word's class

    predictions = read_jsonl(run / "predictions.jsonl")
    assert len(predictions) == meta["dataset"]["sizes"]["test"]
    right = sum(p == t for r in predictions for p, t in zip(r["predicted"], r["tags"], strict=True))
    assert right / sum(len(r["tags"]) for r in predictions) == pytest.approx(test["accuracy"])

    assert main(["predict", str(run), "the big dog sees a cat", "a fish"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {
        "tokens": ["the", "big", "dog", "sees", "a", "cat"],
        "tags": ["DET", "ADJ", "NOUN", "VERB", "DET", "NOUN"],
    }
    assert rows[1]["tags"] == ["DET", "NOUN"]
    loaded = load_run(run)
    assert loaded.task.predict(loaded.model, [""]) == [{"tokens": [], "tags": []}]

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(test["accuracy"]) and metrics["loss"] == pytest.approx(test["loss"])


def test_crf_on_word_tag_lines(tmp_path, capsys):
    data = sentence_file(tmp_path / "brown.txt", fmt="wordtag")
    runs = tmp_path / "runs"
    args = ["train", "tagging", "--data", str(data), "--runs-dir", str(runs), "--quiet", "--name", "crf"]
    assert main([*args, "--set", "train.epochs=2", "model.crf=true", *SMALL]) == 0
    meta = json.loads((runs / "crf" / "meta.json").read_text())
    assert meta["model"]["config"]["crf"] is True and meta["dataset"]["format"] == "wordtag"
    assert meta["metrics"]["test"]["accuracy"] > 0.9
    capsys.readouterr()
    # evaluating on another file checks its tags against the run's
    other = write(tmp_path, "other.txt", "".join(f"the/DET cat{i}/NOUN odd/ODD\n" for i in range(40)))
    assert main(["evaluate", str(runs / "crf"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.txt:" in err and "tag 'ODD' the model was not trained on" in err


def test_bad_data_is_one_line_and_leaves_no_run(tmp_path, capsys):
    bad = write(tmp_path, "bad.conll", "The\tDET\ndog\tNOUN\n\nA\tDET\ncat\n")
    assert main(["train", "tagging", "--data", str(bad), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"rnnkit: error: {bad}:5: expected 2 columns like line 1, found 1\n"
    assert list((tmp_path / "runs").iterdir()) == []
