"""The ``language-model`` task: BPTT stream, splits, vocabulary, carried state, train -> predict -> evaluate."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli.main import main
from rnnkit.data.bptt import BPTTStream
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks.language_model import LanguageModelTask, line_tokens, split_lines
from rnnkit.tasks.runner import resolve_config


def windows(stream):
    """Per row, the (inputs, targets) of its real steps, window after window."""
    rows = [([], []) for _ in range(stream.rows)]
    for k, b in enumerate(stream):
        assert b["window"] == k and b["x"].shape == b["y"].shape
        lengths = b.get("lengths", torch.full((b["x"].shape[0],), b["x"].shape[1]))
        assert int(lengths.min()) >= 1  # every window has a real step in every row
        for r, n in enumerate(lengths.tolist()):
            rows[r][0].extend(b["x"][r, :n].tolist())
            rows[r][1].extend(b["y"][r, :n].tolist())
    return rows


@pytest.mark.parametrize(
    "n, rows, bptt",
    [(100, 4, 7), (101, 4, 5), (103, 4, 5), (33, 8, 4), (10, 64, 35), (1, 3, 2), (60, 6, 10), (61, 6, 10)],
)
def test_bptt_stream_covers_every_token_exactly_once(n, rows, bptt):
    ids = torch.arange(100, 101 + n)  # a boundary id, then n tokens, all distinct
    stream = BPTTStream(ids, rows=rows, bptt=bptt)
    assert stream.rows == min(rows, n) and stream.num_tokens == n
    per_row = windows(stream)
    targets = [t for _, ys in per_row for t in ys]
    assert targets == ids[1:].tolist()  # every token once, in order: rows are consecutive slices of the stream
    for xs, ys in per_row:  # the input before each target is the token just before it
        assert xs == [t - 1 for t in ys]
    assert len(stream) == len(list(stream)) and max(b - a for a, b in stream.windows) <= bptt + 1
    again = list(stream)  # the same batches every pass (exact resume)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(list(stream), again, strict=True))
    with pytest.raises(ValueError, match="at least 2 ids"):
        BPTTStream([5], rows=2, bptt=3)


def test_lines_tokens_and_the_ordered_split():
    assert [len(v) for v in split_lines([str(i) for i in range(100)]).values()] == [90, 5, 5]
    assert [len(v) for v in split_lines([str(i) for i in range(40)]).values()] == [36, 2, 2]
    assert split_lines(["a", "b", "c"] * 10)["test"] == ["b", "c"]  # the last lines, in order
    assert line_tokens("  the cat  sat ", "word") == ["the", "cat", "sat", "<eos>"]
    assert line_tokens("   ", "word") == []
    assert line_tokens("ab ", "char") == ["a", "b", " ", "\n"]


def make_task(tmp_path, text, *overrides, name="text.txt"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _, config = resolve_config("language-model", overrides=list(overrides))
    return LanguageModelTask(config, path)


def test_vocabulary_unk_and_level_defaults(tmp_path):
    text = "".join(f"the cat sat on mat{i % 3}\n" if i != 2 else "a rare word\n" for i in range(40))
    task = make_task(tmp_path, text, "train.batch_size=4")
    info = task.prepare(tmp_path)
    assert task.config.data.min_frequency == 2  # the word default
    assert task.vocab.tokens[:3] == ["<pad>", "<unk>", "<eos>"] and "rare" not in task.vocab
    assert info["tokens"]["validation"] == 2 * 6 and info["unk_rate"]["train"] == pytest.approx(
        3 / (35 * 6 + 4), abs=1e-6
    )
    # the stream starts at a boundary, so the first token of the split is predicted too
    assert task.streams["train"].inputs[0, 0] == task.vocab.index["<eos>"]
    char = make_task(tmp_path, text, "data.level=char", name="c.txt")
    char.prepare(tmp_path / "c")
    assert char.config.data.min_frequency == 1 and "\n" in char.vocab and "w" in char.vocab
    assert char.streams["test"].num_tokens == sum(len(line) + 1 for line in text.splitlines()[38:])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "text.txt: the train split has no text (the file has 0 lines"),
        ("one line\n" * 5, "text.txt: the validation split has no text (the file has 5 lines"),
        ("ok\n" * 18 + "\n\n", "the validation split has no text"),  # blank lines hold no words
        (b"fine\n" * 7 + b"caf\xe9\n", "text.txt:8: not valid utf-8"),
    ],
)
def test_bad_text_is_reported(tmp_path, text, message):
    with pytest.raises(RnnkitError) as e:
        make_task(tmp_path, text).prepare(tmp_path)
    assert message in str(e.value)


def test_the_state_carries_across_windows(tmp_path):
    task = make_task(tmp_path, "".join(f"line {i % 7} of a text\n" for i in range(60)), "data.level=char",
                     "data.bptt=6", "train.batch_size=3", "model.embed_dim=8", "model.hidden_size=8")  # fmt: skip
    task.prepare(tmp_path)
    torch.manual_seed(0)
    model = task.build_model().eval()
    t = task.trainer_task()
    stream = task.streams["test"]
    stats: dict[str, float] = {}
    with torch.no_grad():
        for b in t.batches("test", 0):
            for k, v in t.eval_step(model, b).items():
                stats[k] = stats.get(k, 0.0) + v
        # the same as reading each row in one go: nothing is forgotten at the window edges
        logits, _ = model(stream.inputs, stream.row_lengths)
        mask = torch.arange(stream.inputs.shape[1])[None] < stream.row_lengths[:, None]
        whole = F.cross_entropy(logits[mask], stream.targets[mask], reduction="sum")
    assert len(stream) > 1 and stats["tokens"] == stream.num_tokens
    assert stats["nll_sum"] == pytest.approx(float(whole), rel=1e-5)
    assert t.finalize(stats)["perplexity"] == pytest.approx(math.exp(float(whole) / stream.num_tokens), rel=1e-5)
    # training hands the state on: the second window's loss depends on it
    first, second = list(t.batches("train", 0))[:2]
    _, carry, n = t.train_step(model, first, None)
    assert n == first["x"].numel() and carry[0][0].shape[0] == 3
    with torch.no_grad():
        assert float(t.train_step(model, second, carry)[0]) != pytest.approx(
            float(t.train_step(model, second, None)[0])
        )


SMALL = ["model.embed_dim=16", "model.hidden_size=32", "model.num_layers=1", "model.dropout=0.0", "train.lr=0.01",
         "train.batch_size=8"]  # fmt: skip
PANGRAM = "the quick brown fox jumps over the lazy dog\n"
RUN_FILES = {"config.yaml", "model.safetensors", "best.safetensors", "meta.json", "vocab.json", "metrics.jsonl",
             "train.log", "predictions.jsonl", "checkpoints", "plots"}  # fmt: skip


def test_char_model_train_predict_evaluate_contract(tmp_path, capsys):
    data = tmp_path / "pangram.txt"
    data.write_text(PANGRAM * 300)
    runs = tmp_path / "runs"
    args = ["train", "language-model", "--data", str(data), "--runs-dir", str(runs), "--quiet", "--name", "lm"]
    sets = ["train.epochs=2", "data.level=char", "data.bptt=20", "generate.temperature=0", *SMALL]
    assert main([*args, "--set", *sets]) == 0
    run = runs / "lm"
    assert capsys.readouterr().out.strip().endswith(f"run folder: {run}")
    assert {p.name for p in run.iterdir() if p.name != "tensorboard"} == RUN_FILES
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task"] == "language-model" and meta["model"]["kind"] == "language_model"
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "perplexity", "bpc"}
    assert test["perplexity"] < 1.5 and test["bpc"] == pytest.approx(test["loss"] / math.log(2))  # learned
    assert meta["dataset"]["tokens"]["test"] == 15 * len(PANGRAM)

    samples = read_jsonl(run / "predictions.jsonl")
    assert len(samples) == 3 and all(s["reference"] == PANGRAM[len(s["prompt"]) : -1] for s in samples)
    assert all(s["continuation"].startswith(s["reference"] + "\n") for s in samples)

    assert main(["predict", str(run), "the quick", "lazy"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["the quick", "lazy"]
    assert rows[0]["continuation"].startswith(" brown fox jumps over the lazy dog\nthe quick")
    assert rows[1]["continuation"].startswith(" dog\n") and len(rows[1]["continuation"]) == 100  # max_tokens

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["perplexity"] == pytest.approx(test["perplexity"])


def test_word_model_with_tied_weights_and_seeded_sampling(tmp_path, capsys):
    data = tmp_path / "words.txt"
    data.write_text(PANGRAM * 200)
    runs = tmp_path / "runs"
    args = ["train", "language-model", "--data", str(data), "--runs-dir", str(runs), "--quiet", "--name", "w"]
    sets = ["train.epochs=2", "data.bptt=10", "model.tie_weights=true", "generate.stop_at_line_end=true", *SMALL]
    assert main([*args, "--set", *sets]) == 0
    meta = json.loads((runs / "w" / "meta.json").read_text())
    config = meta["model"]["config"]
    assert config["tie_weights"] is True and config["proj_size"] == 16  # hidden 32 -> embed 16, then the shared matrix
    assert set(meta["metrics"]["test"]) == {"loss", "perplexity"} and meta["metrics"]["test"]["perplexity"] < 1.5
    capsys.readouterr()
    assert main(["predict", str(runs / "w"), "the quick brown", "the quick brown"]) == 0
    a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert a == b and a["continuation"] == "fox jumps over the lazy dog"  # seeded; stops at the line end
