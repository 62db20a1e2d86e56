"""The ``seq2seq`` task: TSV reader errors, the split by source, vocabularies, multi-reference metrics, the
teacher-forcing schedule, and train -> predict -> evaluate on the command line (learning to reverse strings)."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli.main import main
from rnnkit.data.registry import text_hash
from rnnkit.decoding import Hypothesis, SearchResult
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks.runner import load_run, resolve_config
from rnnkit.tasks.seq2seq import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Seq2SeqTask,
    edit_distance,
    read_pairs,
    seq2seq_metrics,
)


def reversal_pairs(n=400, seed=0):
    rng, seen, lines = random.Random(seed), set(), []
    while len(lines) < n:
        s = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5)))
        if s not in seen:
            seen.add(s)
            lines.append(f"{s}\t{s[::-1]}")
    return lines


def write(tmp_path, lines, name="pairs.tsv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_task(path, *overrides):
    _, config = resolve_config("seq2seq", overrides=list(overrides))
    return Seq2SeqTask(config, path)


# -- reader -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("no tab here", "got no tab"),
        ("a\tb\tc", "got 3 tab-separated fields"),
        ("abc\t  ", "empty target"),
        ("\tabc", "empty source"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, line, message):
    path = write(tmp_path, ["ab\tba", "", line, "cd\tdc"])
    with pytest.raises(RnnkitError, match=message) as err:
        read_pairs(path)
    assert str(err.value).startswith(f"{path}:3: ")


def test_empty_missing_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n  \n")
    with pytest.raises(RnnkitError, match="no source<TAB>target pairs"):
        read_pairs(empty)
    with pytest.raises(RnnkitError, match="no such file"):
        read_pairs(tmp_path / "nope.tsv")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("caf\xe9\tkafe\n".encode("latin-1"))
    with pytest.raises(RnnkitError, match="not valid UTF-8"):
        read_pairs(latin)


def test_pairs_are_stripped_and_carry_their_line(tmp_path):
    pairs = read_pairs(write(tmp_path, ["  ab \tba\r", "", "cd\tdc"]))
    assert pairs == [{"source": "ab", "target": "ba", "line": 1}, {"source": "cd", "target": "dc", "line": 3}]


# -- split, vocabularies, tokens ------------------------------------------------------------------------
def test_split_by_source_keeps_alternates_together(tmp_path):
    lines = reversal_pairs(300)
    lines += [f"{line.split(chr(9))[0]}\tALT" for line in lines[:60]]  # a second reference for 60 sources
    task = make_task(write(tmp_path, lines))
    info = task.prepare(tmp_path)
    assert info["pairs"]["train"] + info["pairs"]["validation"] + info["pairs"]["test"] == 360
    train_sources = {"".join(task.src_vocab.decode(s)) for s in task.splits["train"]["src"]}
    for split, bucket in (("test", 0), ("validation", 1)):
        data = task.splits[split]
        assert data["sources"] and all(text_hash(s) % 10 == bucket for s in data["sources"])
        assert not set(data["sources"]) & train_sources
        for source, refs in zip(data["sources"], data["references"], strict=True):
            assert refs[0] == source[::-1]
            assert refs[1:] == (["ALT"] if f"{source}\tALT" in lines else [])
    assert all(text_hash(s) % 10 > 1 for s in train_sources)
    # vocabularies from train, specials first; unseen reference tokens never match a prediction
    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert task.src_vocab.tokens[:4] == specials and (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert set(task.tgt_vocab.tokens[4:]) == set("abcdefALT")
    assert json.loads((tmp_path / "vocab.json").read_text())["target"]["tokens"] == task.tgt_vocab.tokens


def test_word_level_targets_for_g2p(tmp_path):
    words = ["".join(random.Random(i).choice("abc") for _ in range(4)) + str(i) for i in range(80)]
    lines = [f"{w}\t{' '.join(c.upper() + '1' for c in w)}" for w in words]
    task = make_task(write(tmp_path, lines), "data.target_level=word")
    task.prepare(tmp_path)
    assert set(task.tgt_vocab.tokens[4:]) <= {"A1", "B1", "C1"} | {f"{d}1" for d in "0123456789"}
    assert set(task.src_vocab.tokens[4:]) <= set("abc0123456789")
    word = make_task(write(tmp_path, lines), "data.level=word")
    word.prepare(tmp_path)
    assert all(len(s) == 1 for s in word.splits["train"]["src"])  # a whole word is one source token
    assert "A1" in word.tgt_vocab.tokens


def test_edit_distance_and_metrics():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 5]) == 2
    assert edit_distance([1, 2], [2, 1]) == 2
    m = seq2seq_metrics({"loss_sum": 6.0, "tokens": 3.0, "correct": 1.0, "n": 4.0, "edits": 2.0, "ref_tokens": 8.0})
    assert m == {"loss": 2.0, "accuracy": 0.25, "ter": 0.25, "wer": 0.75, "per": 0.25}


def test_a_prediction_is_right_if_it_equals_any_reference(tmp_path, monkeypatch):
    lines = reversal_pairs(200)
    lines += [f"{line.split(chr(9))[0]}\tzz" for line in lines]  # every source has a second reference "zz"
    task = make_task(write(tmp_path, lines), "train.batch_size=1000")
    task.prepare(tmp_path)
    model = task.build_model().eval()
    test = task.splits["test"]
    z = task.tgt_vocab.index["z"]

    def decode_as(choice):
        def fake(model, src, src_len, beam_size):
            assert beam_size == task.config.decode.beam_size  # the test split decodes with the beam
            return SearchResult([[Hypothesis(choice(i), 0.0, 0.0, True)] for i in range(src.shape[0])])

        return fake

    ttask = task.trainer_task()
    for choice, correct, ter in [
        (lambda i: [z, z], 1.0, 0.0),  # the second reference
        (lambda i: [z], 0.0, 0.5),  # one deletion from "zz", the closest reference
    ]:
        monkeypatch.setattr(task, "decode", decode_as(choice))
        (batch,) = list(task._batches("test", 0))
        order = batch["index"].tolist()
        with torch.no_grad():  # as the trainer evaluates
            stats = ttask.eval_step(model, batch)
        m = ttask.finalize(stats)
        assert stats["n"] == len(test["src"]) == len(order)
        assert m["accuracy"] == correct and m["ter"] == pytest.approx(ter)
        # the loss covers every (source, reference) pair: both references, eos included
        assert stats["tokens"] == sum(len(r) + 1 for refs in test["refs"] for r in refs)


def test_teacher_forcing_schedule_is_linear_in_the_epoch(tmp_path):
    path = write(tmp_path, reversal_pairs(60))
    fixed = make_task(path, "train.epochs=5", "model.teacher_forcing=0.9")
    assert [fixed.teacher_forcing(e) for e in range(5)] == [0.9] * 5
    task = make_task(path, "train.epochs=5", "model.teacher_forcing_final=0.5")
    assert [task.teacher_forcing(e) for e in range(5)] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])
    task.prepare(tmp_path)
    assert {b["teacher_forcing"] for b in task._batches("train", 2)} == {0.75}
    assert {int(b["beam"][0]) for b in task._batches("validation", 0)} == {1}  # validation decodes greedily


def test_label_smoothing_smooths_the_training_loss_only(tmp_path):
    path = write(tmp_path, reversal_pairs(60))
    plain, smooth = make_task(path), make_task(path, "model.label_smoothing=0.2")
    for task in (plain, smooth):
        task.prepare(tmp_path)
    torch.manual_seed(0)
    model = plain.build_model().eval()
    batch = next(plain._batches("train", 0))
    with torch.no_grad():
        loss, _, n = plain.trainer_task().train_step(model, batch, None)
        smoothed, _, n2 = smooth.trainer_task().train_step(model, batch, None)
        # by hand: (1 - e) * NLL + e * the mean over the vocabulary of -log p, over the real target steps
        logits, _ = model(batch["src"], batch["src_len"], batch["tgt_in"], teacher_forcing=1.0)
    mask = torch.arange(logits.shape[1])[None, :] < batch["tgt_len"][:, None]
    logp = logits[mask].log_softmax(-1)
    nll = -logp.gather(1, batch["tgt_out"][mask][:, None]).mean()
    assert n == n2 == int(mask.sum())
    assert float(loss) == pytest.approx(float(nll), rel=1e-5)
    assert float(smoothed) == pytest.approx(float(0.8 * nll + 0.2 * -logp.mean(-1).mean()), rel=1e-5)
    # the reported (evaluation) loss stays the plain cross-entropy
    val = next(plain._batches("validation", 0))
    with torch.no_grad():
        reported = [task.trainer_task().eval_step(model, val)["loss_sum"] for task in (plain, smooth)]
    assert reported[1] == pytest.approx(reported[0], rel=1e-6)
    with pytest.raises(RnnkitError, match="label_smoothing"):
        make_task(path, "model.label_smoothing=1.0")


# -- the command line -------------------------------------------------------------------------------------
def test_train_predict_evaluate_learns_to_reverse(tmp_path, capsys):
    data = write(tmp_path, reversal_pairs(400))
    runs = tmp_path / "runs"
    args = ["train.epochs=15", "train.lr=0.003", "train.batch_size=32", "model.hidden_size=64", "model.embed_dim=16",
            "model.dropout=0", "decode.beam_size=3"]  # fmt: skip
    assert main(["train", "seq2seq", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    out = capsys.readouterr().out
    run = runs / "seq2seq"
    assert f"run folder: {run}" in out
    for name in ("config.yaml", "model.safetensors", "meta.json", "vocab.json", "metrics.jsonl", "train.log",
                 "predictions.jsonl", "plots/learning_curves.png", "plots/attention.png"):  # fmt: skip
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    test = meta["metrics"]["test"]
    assert meta["task"] == "seq2seq" and set(test) == {"loss", "accuracy", "ter", "wer", "per", "bleu", "chrf"}
    assert test["accuracy"] >= 0.9 and test["ter"] < 0.05  # reversal was learned

    predictions = read_jsonl(run / "predictions.jsonl")
    assert len(predictions) == meta["dataset"]["sizes"]["test"]
    assert sum(p["correct"] for p in predictions) / len(predictions) == pytest.approx(test["accuracy"])
    assert all(p["correct"] == (p["prediction"] in p["references"]) for p in predictions)

    assert main(["predict", str(run), "abcd", "fed"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in results] == ["abcd", "fed"]
    assert [r["prediction"] for r in results] == ["dcba", "def"]
    assert all(isinstance(r["score"], float) and r["score"] <= 0 for r in results)

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == pytest.approx(test, abs=1e-6)


def test_an_ensemble_trains_its_members_on_their_own_losses_and_decodes_their_mixture(tmp_path, capsys):
    data = write(tmp_path, reversal_pairs(120))
    runs = tmp_path / "runs"
    args = ["train.epochs=2", "model.hidden_size=16", "model.embed_dim=8", "model.ensemble=2", "decode.beam_size=2",
            "model.label_smoothing=0.1"]  # fmt: skip
    assert main(["train", "seq2seq", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    capsys.readouterr()
    run = runs / "seq2seq"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"]["kind"] == "seq2seq-ensemble" and meta["model"]["config"]["size"] == 2
    assert (run / "plots" / "attention.png").is_file()
    # the training loss is the mean of the members' own (smoothed) losses on the same batch
    model = load_run(run).model.eval()
    task = make_task(data, *args)
    task.prepare(tmp_path / "prep")
    batch = next(task._batches("train", 0))
    with torch.no_grad():
        loss, _, n = task.trainer_task().train_step(model, batch, None)
        own = [m.loss(batch["src"], batch["src_len"], batch["tgt_in"], batch["tgt_out"], batch["tgt_len"])
               for m in model.members]  # fmt: skip
    assert n == int(batch["tgt_len"].sum())
    plain = make_task(data, *args[:-1])
    plain.prepare(tmp_path / "prep2")
    with torch.no_grad():
        unsmoothed, _, _ = plain.trainer_task().train_step(model, batch, None)
    torch.testing.assert_close(unsmoothed, torch.stack(own).mean())
    with torch.no_grad():  # smoothed: each member's own logits, each smoothed, then the mean
        logits = [m(batch["src"], batch["src_len"], batch["tgt_in"])[0] for m in model.members]
    mask = torch.arange(logits[0].shape[1])[None, :] < batch["tgt_len"][:, None]
    smoothed = [F.cross_entropy(x[mask], batch["tgt_out"][mask], label_smoothing=0.1) for x in logits]
    torch.testing.assert_close(loss, torch.stack(smoothed).mean())
    assert not torch.allclose(loss, unsmoothed)
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == pytest.approx(meta["metrics"]["test"], abs=1e-6)
    assert main(["predict", str(run), "abc"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["source"] == "abc" and len(row["attention"]) == len(row["output_tokens"])
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rnnkit: error:" in err


def test_without_attention_there_is_no_attention_plot(tmp_path, capsys):
    data = write(tmp_path, reversal_pairs(80))
    args = ["train.epochs=2", "model.hidden_size=16", "model.attention=none", "model.cell=gru",
            "model.teacher_forcing_final=0.5"]  # fmt: skip
    assert main(["train", "seq2seq", "--data", str(data), "--set", *args, "--runs-dir", str(tmp_path), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "seq2seq" / "plots").iterdir()) == ["learning_curves.png"]
    assert json.loads((tmp_path / "seq2seq" / "meta.json").read_text())["model"]["config"]["cell"] == "gru"


def test_bad_data_is_one_line_with_exit_status_2(tmp_path, capsys):
    data = write(tmp_path, [*reversal_pairs(50), "oops"])
    assert main(["train", "seq2seq", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"rnnkit: error: {data}:51: expected 'source<TAB>target', got no tab\n"
    assert main(["train", "seq2seq", "--set", "decode.beam=3", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "decode.beam: unknown key" in capsys.readouterr().err


def test_predict_rejects_an_empty_source(tmp_path):
    task = make_task(write(tmp_path, reversal_pairs(60)))
    task.prepare(tmp_path)
    with pytest.raises(RnnkitError, match="empty source"):
        task.predict(task.build_model(), ["  "])
    torch.manual_seed(0)
    (r,) = task.predict(task.build_model(), ["zzz"])  # unknown characters become <unk>, still decoded
    assert r["source"] == "zzz" and isinstance(r["prediction"], str)
