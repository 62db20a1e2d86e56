"""The long-format reader (``rnnkit.data.panel``): series grouped and sorted, covariates, the inferred spacing,
gaps filled on request, and one-line errors naming the file, line and series for every kind of bad input."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from rnnkit.data.panel import is_long_format, read_panel
from rnnkit.errors import RnnkitError


def write(tmp_path, lines, name="long.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_series_are_grouped_sorted_and_keep_their_covariates(tmp_path):
    path = write(
        tmp_path,
        [
            "unique_id,ds,y,size,month",
            "b,2020-02,20,7,2",
            "a,2020-01,1,3,1",
            "b,2020-01,10,7,1",
            "a,2020-02,2,3,2",
            "a,2020-03,3,3,3",
        ],
    )
    panel = read_panel(path, static=["size"], known=["month"])
    assert [s.id for s in panel.series] == ["b", "a"]  # the order of first appearance
    b, a = panel.series
    assert b.values.tolist() == [10, 20] and a.values.tolist() == [1, 2, 3]
    assert a.known[:, 0].tolist() == [1, 2, 3] and a.static.tolist() == [3] and b.static.tolist() == [7]
    assert a.labels == ["2020-01", "2020-02", "2020-03"]
    assert (panel.static_names, panel.known_names) == (["size"], ["month"])
    # the line each value came from
    assert b.where(0).startswith(f"{path}:4 ") and "'b'" in b.where(0)


def test_a_single_series_is_a_panel_of_one_with_numeric_times(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y", *[f"only,{t},{t * 2}" for t in range(5)]])
    panel = read_panel(path)
    assert len(panel) == 1 and panel.series[0].values.tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (["a,2020-01,1", "a,2020-01,2"], 3, "duplicate ds '2020-01' in series 'a'"),
        (
            ["a,2020-01,1", "a,2020-02,1", "a,2020-04,2"],
            4,
            "gap: 1 time step(s) missing between '2020-02' and '2020-04'",
        ),
        (["a,2020-01,1", "a,2020-02,x"], 3, "column 'y': cannot read 'x' as a number"),
        (["a,2020-01,1", "a,2020-02,inf"], 3, "'inf' is not a finite number"),
        (["a,2020-01,1", "a,2020-02,"], 3, "missing y"),
        (["a,2020-01,1", "a,someday,2"], 3, "neither a number nor an ISO date"),
        (["a,2020-01,1", "a,2020-02,2,3"], 3, "expected 3 fields like the header, got 4"),
        (["a,2020-01,1", ",2020-02,2"], 3, "empty unique_id"),
    ],
)
def test_bad_rows_name_the_file_line_and_series(tmp_path, rows, line, message):
    path = write(tmp_path, ["unique_id,ds,y", *rows])
    with pytest.raises(RnnkitError) as err:
        read_panel(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}") and message in text and "\n" not in text
    if "fields" not in message and "unique_id" not in message:  # before the row's series is known
        assert "series 'a'" in text


def test_unknown_and_missing_columns(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y,price", "a,1,1,3"])
    with pytest.raises(RnnkitError, match=r"long.csv:1: unknown column 'price': declare it as a covariate"):
        read_panel(path)
    assert read_panel(path, known=["price"]).series[0].known.tolist() == [[3.0]]
    with pytest.raises(RnnkitError, match="no column 'y' in the header"):
        read_panel(write(tmp_path, ["unique_id,ds,value", "a,1,1"], "other.csv"))
    with pytest.raises(RnnkitError, match="declared both static and known"):
        read_panel(path, static=["price"], known=["price"])


def test_a_static_covariate_may_not_change_within_a_series(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y,size", "a,1,1,3", "a,2,1,4"])
    with pytest.raises(RnnkitError, match=r"long.csv:3: static covariate 'size' changes within series 'a'"):
        read_panel(path, static=["size"])


def test_gaps_and_missing_values_are_interpolated_on_request(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y", "a,2020-01-31,1", "a,2020-02-29,", "a,2020-04-30,7", "b,2020-01-31,5"])
    s = read_panel(path, missing="interpolate").series[0]
    # month ends: 2020-03-31 was inserted, then both gaps filled linearly
    assert s.values.tolist() == [1, 3, 5, 7] and s.labels[2] == "2020-03-31"


def test_steps_that_are_not_whole_multiples_are_errors(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y", "a,0,1", "a,1,1", "a,2.5,1"])
    with pytest.raises(RnnkitError, match=r"long.csv:4: ds '2.5' is not a whole number of steps after '1'"):
        read_panel(path)


def test_trailing_future_rows_may_lack_y_when_allowed(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y,m", "a,1,1,1", "a,2,2,2", "a,3,,3", "a,4,,4"])
    with pytest.raises(RnnkitError, match="missing y"):
        read_panel(path, known=["m"])
    s = read_panel(path, known=["m"], allow_future=2).series[0]
    assert np.isnan(s.values[2:]).all() and s.known[:, 0].tolist() == [1, 2, 3, 4]


def test_the_size_is_checked_before_reading(tmp_path):
    path = write(tmp_path, ["unique_id,ds,y", *[f"a,{i},1" for i in range(100)]])
    with pytest.raises(RnnkitError, match="more than the 100 a panel file may have"):
        read_panel(path, max_bytes=100)


def test_empty_files(tmp_path):
    with pytest.raises(RnnkitError, match="empty file"):
        read_panel(write(tmp_path, [""]))
    with pytest.raises(RnnkitError, match="no data rows"):
        read_panel(write(tmp_path, ["unique_id,ds,y"], "h.csv"))


def test_parquet_reads_like_csv_and_names_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"unique_id": ["a", "a", "b"], "ds": ["2020-01", "2020-02", "2020-01"], "y": [1.0, 2.0, 3.0]})
    path = tmp_path / "long.parquet"
    pq.write_table(table, path)
    panel = read_panel(path)
    assert [s.values.tolist() for s in panel.series] == [[1, 2], [3]]
    assert is_long_format(path)
    bad = pa.table({"unique_id": ["a", "a"], "ds": [1, 1], "y": [1.0, 2.0]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(RnnkitError, match=r"bad.parquet: row 2: duplicate ds '1' in series 'a'"):
        read_panel(tmp_path / "bad.parquet")


def test_parquet_without_pyarrow_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(RnnkitError, match=r"reading Parquet needs pyarrow: pip install 'rnnkit\[parquet\]'"):
        read_panel(path)


def test_is_long_format_looks_for_unique_id(tmp_path):
    assert is_long_format(write(tmp_path, ["unique_id,ds,y", "a,1,1"]))
    assert not is_long_format(write(tmp_path, ["month,value", "1950-01,1"], "single.csv"))
