"""``rnnkit.metrics.sequence``: BLEU/chrF equal to sacrebleu (its API and its command line), additive statistics
that sum to the corpus score, WER/CER against hand-counted edits, scheme detection, and strict entity scores
equal to seqeval's."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import sacrebleu
import seqeval.scheme
from seqeval.metrics import f1_score, precision_score, recall_score

from rnnkit.errors import RnnkitError
from rnnkit.metrics import sequence as seq

HYPS = ["the cat sat on the mat", "a quick brown fox jumps", "hello world", "it is raining today in paris", ""]
REFS = [
    ["the cat sat on a mat", "the cat is on the mat"],
    ["the quick brown fox jumped"],
    ["hello there world", "hello , world"],
    ["it rains today in paris"],
    ["nothing came out"],
]


def streams(refs):
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def test_bleu_and_chrf_equal_sacrebleu_with_a_varying_number_of_references():
    assert seq.corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams(REFS)).score, abs=1e-12)
    assert seq.corpus_chrf(HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams(REFS)).score, abs=1e-12)
    assert 0 < seq.corpus_bleu(HYPS, REFS) < 100
    assert seq.corpus_bleu(["same words here ok"], [["same words here ok"]]) == pytest.approx(100.0)


def test_statistics_of_batches_add_up_to_the_corpus_score():
    for stats, score, size in (
        (seq.bleu_statistics, seq.bleu_from_statistics, seq.BLEU_STATISTICS),
        (seq.chrf_statistics, seq.chrf_from_statistics, seq.CHRF_STATISTICS),
    ):
        parts = [stats(HYPS[:2], REFS[:2]), stats(HYPS[2:], REFS[2:]), stats([], [])]
        assert all(len(p) == size for p in parts)
        summed = [float(sum(p[k] for p in parts)) for k in range(size)]
        assert score(summed) == pytest.approx(score(stats(HYPS, REFS)), abs=1e-12)
    with pytest.raises(ValueError, match="10 entries"):
        seq.bleu_from_statistics([1, 2, 3])


def test_scores_equal_the_sacrebleu_command_line(tmp_path):
    hyps, refs = HYPS[:4], [r[0] for r in REFS[:4]]
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
         "-m", "bleu", "chrf", "-w", "6", "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cli = {s["name"]: s["score"] for s in json.loads(out)}
    assert seq.corpus_bleu(hyps, [[r] for r in refs]) == pytest.approx(cli["BLEU"], abs=1e-6)
    assert seq.corpus_chrf(hyps, [[r] for r in refs]) == pytest.approx(cli["chrF2"], abs=1e-6)


def test_bad_reference_lists_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        seq.corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        seq.corpus_chrf(["a"], ["a"])  # a string, not a list of references


def test_word_and_character_error_rates_count_edits_over_the_reference_length():
    # "a x c" vs "a b c": 1 substitution; "" vs "d e": 2 deletions -> 3 / 5 words
    assert seq.word_error_rate(["a x c", ""], ["a b c", "d e"]) == pytest.approx(3 / 5)
    # "abd" vs "abcd": 1 deletion; "xyz" vs "xy": 1 insertion -> 2 / 6 characters
    assert seq.character_error_rate(["abd", "xyz"], ["abcd", "xy"]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="a reference is empty"):
        seq.word_error_rate(["a"], [" "])
    with pytest.raises(ValueError, match="1 hypotheses but 2 references"):
        seq.character_error_rate(["a"], ["a", "b"])


@pytest.mark.parametrize(
    ("sequences", "scheme"),
    [
        ([["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]], "IOB2"),
        ([["I-PER", "I-PER", "O", "I-LOC"], ["I-PER", "B-PER"]], "IOB1"),  # entities start with I-
        ([["O", "I-LOC", "O"]], "IOB1"),  # I- alone is IOB1
        ([["I-PER", "E-PER", "O", "E-LOC"]], "IOE2"),
        ([["I-PER", "I-PER", "O", "E-LOC", "I-LOC"]], "IOE1"),  # entities end with I-
        ([["B-PER", "E-PER", "S-LOC", "O"], ["B-ORG", "I-ORG", "E-ORG"]], "IOBES"),
        ([["B-PER", "L-PER", "U-LOC", "O"]], "BILOU"),
        ([["DET", "NOUN", "VERB"]], None),  # part-of-speech tags
        ([["O", "O"]], None),  # no entity at all
        ([["B-PER", "O", "NN"]], None),  # one label that is no entity tag
        ([["B-PER", "E-PER", "L-PER"]], None),  # prefixes of two schemes
        ([["B-NP", "I-NP", "B-VP", "O"]], "IOB2"),  # chunks
    ],
)
def test_the_scheme_is_detected_from_the_label_sequences(sequences, scheme):
    assert seq.detect_scheme(sequences) == scheme


def test_a_bare_label_set_reads_as_the_usual_scheme():
    assert seq.scheme_of_labels(["O", "B-PER", "I-PER"]) == "IOB2"
    assert seq.scheme_of_labels(["O", "I-PER"]) == "IOB1"
    assert seq.scheme_of_labels(["O", "I-PER", "E-PER"]) == "IOE2"
    assert seq.scheme_of_labels(["O", "S-PER", "B-PER", "I-PER", "E-PER"]) == "IOBES"
    assert seq.scheme_of_labels(["NN", "VB"]) is None


def random_sequences(rng: random.Random, labels: list[str], n: int) -> list[list[str]]:
    return [[rng.choice(labels) for _ in range(rng.randint(1, 9))] for _ in range(n)]


@pytest.mark.parametrize(
    ("scheme", "labels"),
    [
        ("IOB2", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
        ("IOB1", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
        ("IOE2", ["O", "I-PER", "E-PER", "I-LOC", "E-LOC"]),
        ("IOBES", ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"]),
        ("BILOU", ["O", "B-PER", "I-PER", "L-PER", "U-PER", "U-LOC"]),
    ],
)
def test_entity_scores_equal_seqeval_strict_and_add_up_over_batches(scheme, labels):
    rng = random.Random(scheme)
    gold = random_sequences(rng, labels, 60)
    pred = [[x if rng.random() < 0.7 else rng.choice(labels) for x in g] for g in gold]
    cls = getattr(seqeval.scheme, scheme)
    expected = {
        "entity_precision": precision_score(gold, pred, mode="strict", scheme=cls),
        "entity_recall": recall_score(gold, pred, mode="strict", scheme=cls),
        "entity_f1": f1_score(gold, pred, mode="strict", scheme=cls),
    }
    assert 0 < expected["entity_f1"] < 1
    assert seq.entity_scores(gold, pred, scheme) == pytest.approx(expected, abs=1e-12)
    halves = [seq.entity_statistics(gold[a:b], pred[a:b], scheme) for a, b in ((0, 25), (25, 60))]
    summed = {k: sum(h[k] for h in halves) for k in seq.ENTITY_STATISTICS}
    assert seq.entity_scores_from_statistics(summed) == pytest.approx(expected, abs=1e-12)


def test_entity_scores_edge_cases():
    gold = [["B-PER", "I-PER", "O"], ["O", "B-LOC"]]
    assert seq.entity_scores(gold, gold) == {"entity_precision": 1.0, "entity_recall": 1.0, "entity_f1": 1.0}
    # strict: a boundary off by one token is a miss, and I- without B- is no entity in IOB2
    pred = [["B-PER", "O", "O"], ["O", "I-LOC"]]
    assert seq.entity_scores(gold, pred) == {"entity_precision": 0.0, "entity_recall": 0.0, "entity_f1": 0.0}
    assert seq.entity_scores([["O"]], [["O"]], "IOB2")["entity_f1"] == 0.0  # nothing to find, as seqeval says
    with pytest.raises(ValueError, match="not entity tags"):
        seq.entity_scores([["NN"]], [["NN"]])
    with pytest.raises(ValueError, match="sequence 1: 2 gold labels but 1 predicted"):
        seq.entity_statistics(gold, [gold[0], ["O"]], "IOB2")
    with pytest.raises(ValueError, match="unknown tagging scheme 'BIO'"):
        seq.entity_statistics(gold, gold, "BIO")


def test_a_missing_library_is_a_one_line_install_hint(monkeypatch):
    for name in ("sacrebleu", "jiwer", "seqeval.scheme"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    for call in (
        lambda: seq.corpus_bleu(["a"], [["a"]]),
        lambda: seq.word_error_rate(["a"], ["a"]),
        lambda: seq.entity_scores([["B-PER"]], [["B-PER"]]),
    ):
        with pytest.raises(RnnkitError, match=r"pip install 'rnnkit\[metrics\]'") as err:
            call()
        assert "\n" not in str(err.value)
