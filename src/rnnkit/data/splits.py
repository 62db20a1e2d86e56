"""The split rules of docs/datasets.md: deterministic, so numbers are reproducible and comparable.

Every function takes the parsed records (a list of dicts, in archive order) and returns
``{"train": [...], "validation": [...], "test": [...]}``; record order inside a split is the input order.
``h(s)`` = :func:`text_hash` (the first 32 bits of SHA-1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import RnnkitError

SPLITS = ("train", "validation", "test")

Record = dict[str, Any]
Splits = dict[str, list[Record]]


def text_hash(s: str) -> int:
    """``h(s)`` of docs/datasets.md: the first 32 bits of SHA-1, as an integer. Stable across runs and machines."""
    return int(hashlib.sha1(s.encode()).hexdigest()[:8], 16)


def _bucket_split(records: Sequence[Record], bucket: Callable[[int, Record], int]) -> Splits:
    out: Splits = {name: [] for name in SPLITS}
    for i, r in enumerate(records):
        b = bucket(i, r) % 10
        out["test" if b == 0 else "validation" if b == 1 else "train"].append(r)
    return out


def split_by_hash(records: Sequence[Record], key: str = "text") -> Splits:
    """``h(r[key]) % 10 == 0`` -> test, ``== 1`` -> validation, the rest -> train (input order kept)."""
    return _bucket_split(records, lambda i, r: text_hash(r[key]))


def split_by_index(records: Sequence[Record]) -> Splits:
    """Record ``i`` (0-based, archive order): ``i % 10 == 0`` -> test, ``== 1`` -> validation, rest -> train."""
    return _bucket_split(records, lambda i, r: i)


def split_by_document(records: Sequence[Record], key: str = "document") -> Splits:
    """Documents in sorted order, document index ``i % 10 == 0`` -> test, ``== 1`` -> validation.

    All records of a document stay together (Brown: a document is one of the 500 corpus files).
    """
    index = {doc: i for i, doc in enumerate(sorted({r[key] for r in records}))}
    return _bucket_split(records, lambda i, r: index[r[key]])


def split_official(records: Sequence[Record], key: str = "split") -> Splits:
    """The archive's own split: each record carries ``key`` (removed here); a split the archive lacks is empty.

    ``validation`` may also be named ``valid`` in the archive (PTB).
    """
    out: Splits = {name: [] for name in SPLITS}
    for r in records:
        r = dict(r)
        name = r.pop(key)
        name = "validation" if name == "valid" else name
        if name not in out:
            raise RnnkitError(f"record has split {name!r}; expected one of {', '.join(SPLITS)}")
        out[name].append(r)
    return out


def split_official_with_validation(records: Sequence[Record], key: str = "split") -> Splits:
    """Official train/test; validation = the train records (by position ``i`` in the train file) with
    ``h(str(i)) % 10 == 1`` -- a deterministic ~10% of train that does not depend on the series' values.
    """
    official = split_official(records, key)
    train, validation = [], []
    for i, r in enumerate(official["train"]):
        (validation if text_hash(str(i)) % 10 == 1 else train).append(r)
    return {"train": train, "validation": validation, "test": official["test"]}


def split_text_fractions(records: Sequence[Record], key: str = "text") -> Splits:
    """Concatenate ``r[key]`` in order; the first 90% of characters -> train, the next 5% -> validation,
    the last 5% -> test (boundaries at ``n * 90 // 100`` and ``n * 95 // 100``).

    Records are text chunks (lines with their line ends); a chunk that straddles a boundary is cut in two,
    so ``"".join(r[key] for r in split)`` is exactly that split's slice of the text.
    """
    n = sum(len(r[key]) for r in records)
    cuts = [n * 90 // 100, n * 95 // 100, n]
    out: Splits = {name: [] for name in SPLITS}
    pos, which = 0, 0
    for r in records:
        text = r[key]
        while text:
            room = cuts[which] - pos
            if room == 0:
                which += 1
                continue
            piece, text = text[:room], text[room:]
            out[SPLITS[which]].append({**r, key: piece})
            pos += len(piece)
    return out


def split_tail(records: Sequence[Record], percent: int = 10) -> Splits:
    """Time order: the first ``n * (100 - percent) // 100`` points -> train, the rest (the last ``percent``
    percent of the time steps, rounded up) -> test. No validation split: take one from the end of train.
    """
    cut = len(records) * (100 - percent) // 100
    return {"train": list(records[:cut]), "validation": [], "test": list(records[cut:])}


def split_before(first_test: str, key: str = "time") -> Callable[[Sequence[Record]], Splits]:
    """Time order by a date: ``r[key] < first_test`` -> train, the rest -> test; no validation split.

    ``key`` values are ISO-like strings (``1958-01``), which sort like the dates they name.
    """

    def split(records: Sequence[Record]) -> Splits:
        return {
            "train": [r for r in records if r[key] < first_test],
            "validation": [],
            "test": [r for r in records if r[key] >= first_test],
        }

    split.__doc__ = f"{key} < {first_test} -> train, the rest -> test"
    return split
