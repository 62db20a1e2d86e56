"""The sktime/UCR ``.ts`` reader: headers, multichannel, variable length, labels, and errors naming file:line."""

from __future__ import annotations

import pytest

from rnnkit.data.ts_format import parse_ts
from rnnkit.errors import RnnkitError

MULTI = """#A comment before the header
#with two lines
@problemName Motions
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true Standing Running
@data
1.5,2,3:-1,-2,-3:Standing

0.1,?:4e-2,NaN:Running
"""


def test_multichannel_variable_length_and_missing_values():
    ts = parse_ts(MULTI, where="Motions_TRAIN.ts")
    assert ts.problem_name == "Motions" and ts.labels == ("Standing", "Running")
    assert ts.dimensions == 2 and ts.equal_length is False and ts.series_length is None
    assert ts.records == [
        {"series": [[1.5, 2.0, 3.0], [-1.0, -2.0, -3.0]], "label": "Standing"},
        {"series": [[0.1, None], [0.04, None]], "label": "Running"},
    ]


def test_univariate_equal_length_with_case_insensitive_tags():
    text = "@problemname G\n@UNIVARIATE true\n@equallength true\n@serieslength 2\n@classlabel true 1 2\n"
    text += "@DATA\n1,2:2\n3,4:1\n"
    ts = parse_ts(text)
    assert ts.dimensions == 1 and ts.series_length == 2
    assert [r["label"] for r in ts.records] == ["2", "1"]


def test_regression_target_and_unlabelled():
    ts = parse_ts("@targetLabel true\n@data\n1,2,3:0.5\n")
    assert ts.regression and ts.records == [{"series": [[1.0, 2.0, 3.0]], "target": 0.5}]
    ts = parse_ts("@classLabel false\n@data\n1,2:3,4\n")
    assert ts.records == [{"series": [[1.0, 2.0], [3.0, 4.0]]}]


def test_unknown_header_tags_are_ignored_with_a_warning(caplog):
    ts = parse_ts("@frobnicate yes\n@classLabel true a\n@data\n1:a\n", where="x.ts")
    assert ts.records == [{"series": [[1.0]], "label": "a"}]
    assert "x.ts:1: ignoring unknown .ts header tag @frobnicate" in caplog.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("@classLabel true a b\n@data\n1,2,x:a\n", r"f.ts:3: expected a number or '\?', got 'x'"),
        ("@classLabel true a b\n@data\n1,2:a\n1,2:c\n", r"f.ts:4: label 'c' is not one of @classLabel a b"),
        (
            "@dimensions 2\n@classLabel true a\n@data\n1,2:a\n",
            r"f.ts:4: expected 2 channel\(s\) separated by ':', got 1",
        ),
        (
            "@classLabel true a\n@data\n1,2:1,2:a\n1,2:1:a\n",
            r"f.ts:4: the channels of one case differ in length: \[2, 1\]",
        ),
        (
            "@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n",
            r"f.ts:4: expected @seriesLength 3 values per channel, got 2",
        ),
        ("@equalLength true\n@classLabel true a\n@data\n1,2:a\n1,2,3:a\n", r"f.ts:5: @equalLength true, but this case"),
        ("@classLabel true a\n@data\n1,2\n", r"f.ts:3: expected the channels, then ':' and the label"),
        ("@classLabel true a\n@data\n1,2:b\n", r"f.ts:3: label 'b' is not one of @classLabel a"),
        ("@classLabel true a\n@data\n:1:a\n", r"f.ts:3: channel 1 has no values"),
        ("@classLabel true a\n@data\n1,,2:a\n", r"f.ts:3: expected a number or '\?', got ''"),
        ("@classLabel true a\n1,2:a\n", r"f.ts:2: expected an @tag header line or @data"),
        ("@classLabel true a\n", r"f.ts: no @data line"),
        ("@classLabel true a\n@data\n\n", r"f.ts: no cases after @data"),
        ("@timeStamps true\n@data\n(0,1):a\n", r"f.ts:1: time-stamped .ts data"),
        ("@dimensions two\n@data\n1:a\n", r"f.ts:1: @dimensions expects a positive integer"),
        ("@missing maybe\n@data\n1:a\n", r"f.ts:1: @missing expects true or false"),
        ("@classLabel true\n@data\n1:a\n", r"f.ts:1: @classLabel true must list the class labels"),
        ("@targetLabel true\n@data\n1,2:?\n", r"f.ts:3: the regression target is missing"),
        ("@classLabel true a\n@data\n1,inf:a\n", r"f.ts:3: infinite value 'inf'"),
    ],
)
def test_malformed_files_name_file_and_line(body, message):
    with pytest.raises(RnnkitError, match=message) as err:
        parse_ts(body, where="f.ts")
    assert "\n" not in str(err.value)
