"""Property-based tests of every reader of the user's files (issue #9, item 5): arbitrary bytes never raise
anything but :class:`RnnkitError` (a one-line message), and valid generated files read back what was written.

Example counts are modest (CI has 2 cores) and the same on every run (the ``ci`` hypothesis profile of
tests/conftest.py); ``HYPOTHESIS_PROFILE=thorough`` draws more, new ones.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.textfile import read_lines
from rnnkit.data.ts_format import parse_ts
from rnnkit.errors import RnnkitError
from rnnkit.tasks.forecasting import read_series
from rnnkit.tasks.image_classification import read_pixel_csv
from rnnkit.tasks.seq2seq import read_pairs
from rnnkit.tasks.series_classification import read_ts_file
from rnnkit.tasks.tagging import read_tagged
from rnnkit.tasks.text_classification import read_text_file

# Pieces that reach deep into the parsers: separators, headers, numbers and their bad cousins, odd bytes.
PIECES = [
    "a", "b", "word", "x/NN", "1", "-2.5", "3e8", "nan", "inf", "?", "", " ", ",", ";", ":", "\t", "\n", "\r\n",
    "\r", '"', "'", "/", "#", "@data", "@classLabel true a b", "@dimensions 2", "@univariate false",
    "@equalLength false", "@targetLabel true", "text", "label", "time", "value", "{", "}", "[", "]",
    '{"text": "a", "label": "b"}', "-DOCSTART-", "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_", "2000-01", "2000-13",
    "\u00e9", "\ufeff", "\x00", "\u2028",
]  # fmt: skip
messy_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join) | st.text(max_size=200)
messy_bytes = messy_text.map(lambda t: t.encode("utf-8")) | st.binary(max_size=200)


def in_file(data: bytes, name: str, call) -> None:
    """Write ``data`` to a fresh file ``name``, call the reader; only RnnkitError (one line) may come out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            call(path)
        except RnnkitError as e:
            assert "\n" not in str(e) and str(e)


@given(messy_bytes, st.sampled_from(["data.csv", "data.jsonl"]))
def test_text_classification_reader_on_arbitrary_bytes(data, name):
    in_file(data, name, lambda p: read_text_file(p, "text", "label"))


@given(messy_bytes, st.sampled_from(["data.conll", "data.conllu", "data.txt"]),
       st.sampled_from(["auto", "conll", "conllu", "wordtag"]))  # fmt: skip
def test_tagging_reader_on_arbitrary_bytes(data, name, fmt):
    in_file(data, name, lambda p: read_tagged(p, fmt))


@given(messy_bytes)
def test_pairs_reader_on_arbitrary_bytes(data):
    in_file(data, "pairs.tsv", read_pairs)


@given(messy_text)
def test_ts_parser_on_arbitrary_text(text):
    try:
        parse_ts(text, where="x.ts")
    except RnnkitError as e:
        assert "\n" not in str(e)


@given(messy_bytes)
def test_ts_file_reader_on_arbitrary_bytes(data):
    in_file(data, "x.ts", read_ts_file)


@given(messy_bytes, st.sampled_from([(None, None, []), ("time", "value", []), ("t", "v", ["c"])]))
def test_series_reader_on_arbitrary_bytes(data, columns):
    in_file(data, "series.csv", lambda p: read_series(p, *columns))


@given(messy_bytes)
def test_pixel_and_line_readers_on_arbitrary_bytes(data):
    in_file(data, "pixels.csv", read_pixel_csv)
    in_file(data, "lines.txt", read_lines)


# -- valid files round-trip ---------------------------------------------------------------------------------


# visible text without the characters a format reserves; what the readers strip is generated already stripped
def field(exclude: str = "", min_size: int = 1):
    alphabet = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=exclude)
    return st.text(alphabet, min_size=min_size, max_size=12).filter(lambda s: s.strip() == s and s != "")


@given(st.lists(st.tuples(field(), field()), min_size=1, max_size=8), st.booleans())
def test_text_files_round_trip(rows, jsonl):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.jsonl" if jsonl else "data.csv")
        if jsonl:
            path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
        else:
            buf = io.StringIO(newline="")
            csv.writer(buf).writerows([("text", "label"), *rows])
            path.write_text(buf.getvalue(), encoding="utf-8", newline="")
        assert [(r["text"], r["label"]) for r in read_text_file(path, "text", "label")] == rows


# no whitespace; '#' opens a comment line; "-DOCSTART-" is CoNLL's document marker, which the conll reader
# drops (test_conll_docstart_lines_are_dropped), so it is not a token that can round-trip
token = field(exclude=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0/#").filter(lambda t: t != "-DOCSTART-")
sentences = st.lists(st.lists(st.tuples(token, token), min_size=1, max_size=6), min_size=1, max_size=5)


@given(sentences, st.sampled_from(["conll", "conllu", "wordtag"]))
def test_tagged_files_round_trip(sents, fmt):
    if fmt == "wordtag":
        text = "".join(" ".join(f"{w}/{t}" for w, t in s) + "\n" for s in sents)
    elif fmt == "conll":
        text = "".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sents)
    else:
        text = "".join(
            "".join(f"{i}\t{w}\t_\t{t}\t_\t_\t0\t_\t_\t_\n" for i, (w, t) in enumerate(s, 1)) + "\n" for s in sents
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"tagged.{'conllu' if fmt == 'conllu' else 'txt'}"
        path.write_text(text, encoding="utf-8")
        got, detected = read_tagged(path, "auto" if fmt != "conll" else "conll")
    assert detected == fmt
    assert [list(zip(s.tokens, s.tags, strict=True)) for s in got] == [list(s) for s in sents]


def test_conll_docstart_lines_are_dropped(tmp_path):
    """CoNLL-2003's ``-DOCSTART- -X- -X- O`` lines mark documents: they end a sentence and are not tokens."""
    path = tmp_path / "ner.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n-DOCSTART- -X- -X- O\n"
        "German JJ B-NP B-MISC\n\n",
        encoding="utf-8",
    )
    got, fmt = read_tagged(path, "conll")
    assert fmt == "conll"
    assert [(s.tokens, s.tags) for s in got] == [(["EU", "rejects"], ["B-ORG", "O"]), (["German"], ["B-MISC"])]


@given(st.lists(st.tuples(field(exclude="\t"), field(exclude="\t")), min_size=1, max_size=10))
def test_pairs_round_trip(pairs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.tsv"
        path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
        got = read_pairs(path)
    assert [(p["source"], p["target"]) for p in got] == pairs
    assert [p["line"] for p in got] == list(range(1, len(pairs) + 1))


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
label = st.text("abcdefghij", min_size=1, max_size=4)


@given(
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(1, 6), label), min_size=1, max_size=6),
    st.data(),
)
def test_ts_round_trip(channels, shapes, data):
    labels = sorted({y for _, y in shapes})
    cases = [([data.draw(st.lists(finite, min_size=n, max_size=n)) for _ in range(channels)], y) for n, y in shapes]
    text = f"@problemName P\n@dimensions {channels}\n@equalLength false\n@classLabel true {' '.join(labels)}\n@data\n"
    text += "".join(":".join(",".join(repr(v) for v in ch) for ch in series) + f":{y}\n" for series, y in cases)
    ts = parse_ts(text, where="p.ts")
    assert ts.labels == tuple(labels) and ts.dimensions == channels
    assert [(r["series"], r["label"]) for r in ts.records] == cases


@given(
    st.lists(
        st.tuples(st.integers(-(10**6), 10**6), finite | st.none()), min_size=1, max_size=20, unique_by=lambda r: r[0]
    )
)
def test_series_csv_round_trip(rows):
    rows = sorted(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.csv"
        path.write_text("t,v\n" + "".join(f"{t},{'' if v is None else repr(v)}\n" for t, v in rows))
        series = read_series(path, None, None, [])
    assert series.times == [float(t) for t, _ in rows]
    for got, (_, v) in zip(series.values.tolist(), rows, strict=True):
        assert (math.isnan(got) and v is None) or got == v
