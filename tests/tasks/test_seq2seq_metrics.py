"""The ``seq2seq`` task's standard metrics: BLEU and chrF equal to sacrebleu's command line on the same lines,
the token error rate equal to jiwer's WER (word targets) and CER (character targets), and ``data.metric``."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from rnnkit.cli.main import main
from rnnkit.fileio import read_jsonl
from rnnkit.metrics.sequence import character_error_rate, word_error_rate
from rnnkit.tasks.runner import resolve_config

SMALL = ["model.hidden_size=32", "model.embed_dim=16", "model.dropout=0", "train.batch_size=32", "train.lr=0.005",
         "decode.beam_size=2", "decode.max_length=12"]  # fmt: skip


def spelled_pairs(n: int, seed: int = 0) -> list[str]:
    """``abcd<TAB>D C B A``: a string's letters backwards, upper case, as words (distinct sources)."""
    rng, seen, lines = random.Random(seed), set(), []
    while len(lines) < n:
        s = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 7)))
        if s not in seen:
            seen.add(s)
            lines.append(f"{s}\t{' '.join(s[::-1].upper())}")
    return lines


def train(tmp_path, lines, *overrides):
    data = tmp_path / "pairs.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runs = tmp_path / "runs"
    assert main(["train", "seq2seq", "--data", str(data), "--set", *SMALL, *overrides, "--runs-dir", str(runs),
                 "--quiet"]) == 0  # fmt: skip
    return data, runs / "seq2seq"


def evaluate(run, data, capsys) -> dict[str, float]:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_reports_sacrebleu_bleu_and_chrf_and_jiwer_wer(tmp_path, capsys):
    data, run = train(tmp_path, spelled_pairs(200), "train.epochs=3", "data.target_level=word")
    metrics = evaluate(run, data, capsys)
    rows = read_jsonl(run / "predictions.jsonl")  # the test split, decoded as evaluate decodes it
    assert all(len(r["references"]) == 1 for r in rows)
    hyps, refs = [r["prediction"] for r in rows], [r["references"][0] for r in rows]
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
         "-m", "bleu", "chrf", "-w", "6", "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cli = {s["name"]: s["score"] for s in json.loads(out)}
    # partly learned: neither score is trivially 0 or 100
    assert metrics["bleu"] == pytest.approx(cli["BLEU"], abs=1e-6) and 0 < metrics["bleu"] < 100
    assert metrics["chrf"] == pytest.approx(cli["chrF2"], abs=1e-6) and 0 < metrics["chrf"] < 100
    # PER (phoneme error rate in G2P) is jiwer's WER over the target words; WER (G2P's) is 1 - exact match
    assert metrics["per"] == pytest.approx(word_error_rate(hyps, refs), abs=1e-12)
    assert metrics["wer"] == pytest.approx(1 - sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(rows))
    meta = json.loads((run / "meta.json").read_text())
    assert meta["metrics"]["test"] == pytest.approx(metrics, abs=1e-9)
    assert meta["task_state"]["metric_set"]["reported"] == ["loss", "accuracy", "ter", "wer", "per", "bleu", "chrf"]


def test_the_character_error_rate_is_jiwers_cer(tmp_path, capsys):
    lines = [f"{s}\t{s[::-1]}" for s in (p.split("\t")[0] for p in spelled_pairs(120, seed=1))]
    data, run = train(tmp_path, lines, "train.epochs=1")
    metrics = evaluate(run, data, capsys)
    rows = read_jsonl(run / "predictions.jsonl")
    hyps, refs = [r["prediction"] for r in rows], [r["references"][0] for r in rows]
    assert metrics["ter"] > 0
    assert metrics["ter"] == pytest.approx(character_error_rate(hyps, refs), abs=1e-12)


def test_data_metric_picks_the_monitored_metric(tmp_path, capsys):
    _, config = resolve_config("seq2seq", overrides=["data.metric=bleu"])
    assert (config.train.monitor, config.train.monitor_mode) == ("bleu", "max")
    _, config = resolve_config("g2p", overrides=["data.metric=per"])
    assert (config.train.monitor, config.train.monitor_mode) == ("per", "min")
    assert main(["train", "seq2seq", "--set", "data.metric=entity_f1", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.metric" in err and "'chrf'" in err
