"""``reading``: the errors of reading a user's file name the file."""

from __future__ import annotations

import csv

import pytest

from rnnkit.data.textfile import reading
from rnnkit.errors import RnnkitError


def test_reading_names_the_file_for_missing_undecodable_and_malformed_files(tmp_path):
    with pytest.raises(RnnkitError, match="no such file") as err, reading(tmp_path / "nope.csv"):
        pytest.fail("the body must not run for a missing file")
    assert str(err.value).startswith(f"{tmp_path / 'nope.csv'}: ")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(RnnkitError, match=r"not valid UTF-8 \(byte 3\)") as err, reading(bad):
        bad.read_text(encoding="utf-8")
    assert str(err.value).startswith(f"{bad}: ")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,"b\n')
    with pytest.raises(RnnkitError, match="malformed CSV") as err, reading(quoted), open(quoted, newline="") as f:
        list(csv.reader(f, strict=True))
    assert str(err.value).startswith(f"{quoted}: ")


def test_reading_lets_other_errors_through(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("fine\n")
    with pytest.raises(KeyError), reading(path):
        raise KeyError("not a file error")
