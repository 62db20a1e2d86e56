"""Metrics of generated and tagged sequences, computed by the libraries the field reports with.

* **BLEU** and **chrF** (``sacrebleu``, its defaults: BLEU with the ``13a`` tokeniser, 4-grams, exponential
  smoothing; chrF with character 6-grams, no word n-grams, beta 2) on detokenised strings, on sacrebleu's
  0-100 scale: the numbers ``python -m sacrebleu REF -i HYP -m bleu chrf`` prints for the same lines.
* **WER** and **CER** (``jiwer``): word / character edits to the reference over the reference's length,
  summed over the corpus (so a long sentence weighs more), on a 0-1 scale.
* **Entity precision, recall and F1** (``seqeval``, strict mode): an entity counts as found only if its type,
  start and end all match, read with the tagging scheme (``IOB1``, ``IOB2``, ``IOE1``, ``IOE2``, ``IOBES``,
  ``BILOU``) that :func:`detect_scheme` finds in the labels; micro-averaged over entities, on a 0-1 scale.

Every corpus metric is also split into **additive statistics** (``*_statistics``: sums over segments) and a
function that turns their sum into the score (``*_from_statistics``), which is how the tasks evaluate batch by
batch (and across processes) and still report exactly the corpus score of the whole split.

The libraries are imported when first used; without them a :class:`~rnnkit.errors.RnnkitError` says
``pip install 'rnnkit[metrics]'``. ROUGE is not offered (``rouge-score`` is not a dependency).

``references`` always holds, per hypothesis, the list of its references (one or more; their number may vary
from one hypothesis to the next).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ..errors import RnnkitError

Scheme = Literal["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"]
#: the tagging schemes :func:`detect_scheme` tells apart (seqeval's names)
SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")
#: the label outside every entity
OUTSIDE = "O"
#: the prefixes of entity labels (``B-PER``); ``-`` separates prefix and type
PREFIXES = frozenset("BIESLU")
#: length of :func:`bleu_statistics`' list: hypothesis length, reference length, matches and totals of 1..4-grams
BLEU_STATISTICS = 10
#: length of :func:`chrf_statistics`' list: (hypothesis, reference, match) counts of character 1..6-grams
CHRF_STATISTICS = 18
#: the keys of :func:`entity_statistics`
ENTITY_STATISTICS = ("entity_true_positives", "entity_predicted", "entity_gold")


def _library(name: str) -> Any:
    """Import ``name`` or say, in one line, how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RnnkitError(
            f"this metric needs the {name} package: pip install 'rnnkit[metrics]' (sacrebleu, seqeval, jiwer)"
        ) from None


# -- BLEU and chrF (sacrebleu) ----------------------------------------------------------------------------
def _check_pairs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacrebleu's reference streams (``None`` where a hypothesis has fewer)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")
    width = max((len(r) for r in references), default=1)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _bleu() -> Any:
    return _library("sacrebleu").metrics.BLEU()


def _chrf() -> Any:
    return _library("sacrebleu").metrics.CHRF()


def _summed(metric: Any, hypotheses: Sequence[str], references: Sequence[Sequence[str]], size: int) -> list[int]:
    streams = _check_pairs(hypotheses, references)
    total = [0] * size
    if not hypotheses:
        return total
    for segment in metric._extract_corpus_statistics(list(hypotheses), streams):
        for k, v in enumerate(segment):
            total[k] += int(v)
    return total


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[int]:
    """BLEU's sufficient statistics summed over the segments (:data:`BLEU_STATISTICS` integers; add the lists
    of several batches and pass the sum to :func:`bleu_from_statistics`)."""
    return _summed(_bleu(), hypotheses, references, BLEU_STATISTICS)


def bleu_from_statistics(statistics: Sequence[float]) -> float:
    """Corpus BLEU (0-100) from summed :func:`bleu_statistics`."""
    _check_length("BLEU", statistics, BLEU_STATISTICS)
    return float(_bleu()._compute_score_from_stats([int(round(v)) for v in statistics]).score)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu's corpus BLEU (0-100) of ``hypotheses`` against their ``references``."""
    return bleu_from_statistics(bleu_statistics(hypotheses, references))


def chrf_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[int]:
    """chrF's sufficient statistics summed over the segments (:data:`CHRF_STATISTICS` integers; with several
    references, each segment's best reference by its own chrF, as sacrebleu picks it)."""
    return _summed(_chrf(), hypotheses, references, CHRF_STATISTICS)


def chrf_from_statistics(statistics: Sequence[float]) -> float:
    """Corpus chrF (0-100) from summed :func:`chrf_statistics`."""
    _check_length("chrF", statistics, CHRF_STATISTICS)
    return float(_chrf()._compute_score_from_stats([int(round(v)) for v in statistics]).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu's corpus chrF (0-100) of ``hypotheses`` against their ``references``."""
    return chrf_from_statistics(chrf_statistics(hypotheses, references))


def _check_length(name: str, statistics: Sequence[float], size: int) -> None:
    if len(statistics) != size:
        raise ValueError(f"{name} statistics have {size} entries, got {len(statistics)}")


# -- WER and CER (jiwer) ------------------------------------------------------------------------------------
def _single(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    if any(not r.strip() for r in references):
        raise ValueError("a reference is empty: the error rate divides by the reference's length")
    return list(hypotheses), list(references)


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """jiwer's WER (0-1 and above): word substitutions, deletions and insertions over the reference words,
    summed over the corpus (one reference per hypothesis; words are split at whitespace)."""
    hyps, refs = _single(hypotheses, references)
    return float(_library("jiwer").wer(refs, hyps))


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """jiwer's CER: the same over characters (spaces included, leading and trailing ones stripped)."""
    hyps, refs = _single(hypotheses, references)
    return float(_library("jiwer").cer(refs, hyps))


# -- entity scores (seqeval) --------------------------------------------------------------------------------
def split_label(label: str) -> tuple[str, str] | None:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``; None for a label that is neither (``"NN"``)."""
    if label == OUTSIDE:
        return OUTSIDE, ""
    prefix, dash, kind = label.partition("-")
    if dash and prefix in PREFIXES and kind:
        return prefix, kind
    return None


def detect_scheme(sequences: Iterable[Sequence[str]]) -> Scheme | None:
    """The entity tagging scheme of label sequences, or None when they are not entity tags (POS tags).

    Every label must be ``O`` or ``P-TYPE`` with ``P`` in B, I, E, S, L, U, and some label must be typed. The
    prefixes used decide: {B, I} -> ``IOB2``, or ``IOB1`` when some entity begins with ``I`` (at the start, after
    ``O`` or after another type); {I, E} -> ``IOE2``, or ``IOE1`` when some entity ends with ``I`` (before the
    end, ``O`` or another type); B, I, E, S with E or S -> ``IOBES``; B, I, L, U with L or U -> ``BILOU``.
    A plain list of the labels (one "sequence") is enough to tell every scheme but IOB1 from IOB2 and IOE1 from
    IOE2, which need the real sequences.
    """
    prefixes: set[str] = set()
    begins_inside = ends_inside = False
    for seq in sequences:
        parts = [split_label(x) for x in seq]
        if any(p is None for p in parts):
            return None
        for i, (prefix, kind) in enumerate(parts):  # type: ignore[misc]
            prefixes.add(prefix)
            if prefix != "I":
                continue
            before = parts[i - 1] if i else (OUTSIDE, "")
            after = parts[i + 1] if i + 1 < len(parts) else (OUTSIDE, "")
            begins_inside |= before[1] != kind  # type: ignore[index]
            ends_inside |= after[1] != kind  # type: ignore[index]
    typed = prefixes - {OUTSIDE}
    if not typed:
        return None
    if typed <= {"B", "I"}:
        return "IOB1" if begins_inside or "B" not in typed else "IOB2"
    if typed <= {"I", "E"}:
        return "IOE1" if ends_inside else "IOE2"
    if typed <= {"B", "I", "E", "S"}:
        return "IOBES"
    if typed <= {"B", "I", "L", "U"}:
        return "BILOU"
    return None


def scheme_of_labels(labels: Iterable[str]) -> Scheme | None:
    """The scheme of a set of labels when no sentences are at hand: as :func:`detect_scheme`, but B and I read
    as ``IOB2`` and I and E as ``IOE2`` (the usual schemes; IOB1/IOE1 need the sentences to be told apart)."""
    labels = list(labels)
    scheme = detect_scheme([[x] for x in labels])
    prefixes = {split_label(x)[0] for x in labels} if scheme else set()  # type: ignore[index]
    if scheme == "IOB1" and "B" in prefixes:
        return "IOB2"
    if scheme == "IOE1":
        return "IOE2"
    return scheme


def _entities(sequences: Sequence[Sequence[str]], scheme: str) -> set:
    seqeval_scheme = _library("seqeval.scheme")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    cls = getattr(seqeval_scheme, scheme)
    found = seqeval_scheme.Entities([list(s) for s in sequences], cls, suffix=False, delimiter="-")
    return {e.to_tuple() for sentence in found.entities for e in sentence}


def entity_statistics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> dict[str, int]:
    """Entities matched, predicted and gold (:data:`ENTITY_STATISTICS`) by seqeval's strict reading under
    ``scheme``; sums of these over batches give :func:`entity_scores_from_statistics` the corpus scores."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sequences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold labels but {len(p)} predicted")
    true, pred = _entities(gold, scheme), _entities(predicted, scheme)
    return dict(zip(ENTITY_STATISTICS, (len(true & pred), len(pred), len(true)), strict=True))


def entity_scores_from_statistics(statistics: dict[str, float]) -> dict[str, float]:
    """``entity_precision``, ``entity_recall``, ``entity_f1`` (micro-averaged; 0 where a count is 0, as
    seqeval reports it) from summed :func:`entity_statistics`."""
    tp, n_pred, n_gold = (float(statistics[k]) for k in ENTITY_STATISTICS)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str | None = None
) -> dict[str, float]:
    """Strict entity precision, recall and F1 of ``predicted`` against ``gold``, with ``scheme`` or the one
    :func:`detect_scheme` finds in ``gold`` (a ValueError if there is none)."""
    if scheme is None:
        scheme = detect_scheme(gold)
        if scheme is None:
            raise ValueError("the gold labels are not entity tags (O, B-X, I-X, ...): no scheme to read them with")
    return entity_scores_from_statistics(entity_statistics(gold, predicted, scheme))
