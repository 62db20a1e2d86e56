"""Reader for the sktime / UCR-UEA ``.ts`` text format (time-series classification and regression).

A ``.ts`` file is a header of ``@tag value`` lines (and ``#`` comments), then ``@data`` and one case per
line::

    @problemName BasicMotions
    @univariate false
    @dimensions 6
    @equalLength true
    @seriesLength 100
    @classLabel true Standing Running Walking Badminton
    @data
    0.07,0.07,-0.90,...:0.30,0.31,...:...:Standing

A case's channels (dimensions) are separated by ``:``, values by ``,``; with ``@classLabel true`` the last
``:`` field is the class label (with ``@targetLabel true`` it is a number, the regression target).
``?`` (and ``NaN``) mark a missing value, read as ``None``. With ``@equalLength false`` cases may differ in
length (JapaneseVowels), but the channels of one case must have the same length. Header tags are
case-insensitive; unknown tags are ignored with a warning. Time-stamped data (``@timeStamps true``) is not
supported.

:func:`parse_ts` returns a :class:`TsData` whose ``records`` are ``{"series": [[ch1...], [ch2...]],
"label": str}`` (``"target": float`` for regression). Every problem is reported as a one-line
:class:`RnnkitError` naming ``file:line``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import RnnkitError

logger = logging.getLogger("rnnkit")

MISSING = {"?", "nan", "NaN", "NAN"}
_BOOL = {"true": True, "false": False}


@dataclass
class TsData:
    """A parsed ``.ts`` file: the header fields and one record per case (in file order)."""

    problem_name: str | None = None
    labels: tuple[str, ...] = ()  # the declared class labels, in header order
    dimensions: int | None = None  # channels per case
    equal_length: bool | None = None
    series_length: int | None = None  # declared; None for variable length
    missing: bool | None = None
    regression: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)


def _value(text: str, where: str) -> float | None:
    text = text.strip()
    if text in MISSING:
        return None
    try:
        v = float(text)
    except ValueError:
        raise RnnkitError(f"expected a number or '?', got {text[:40]!r}", where=where) from None
    if math.isinf(v):
        raise RnnkitError(f"infinite value {text!r}", where=where)
    return v


def _header(ts: TsData, tag: str, args: list[str], where: str, class_label: list[bool]) -> None:
    def flag() -> bool:
        if not args or args[0].lower() not in _BOOL:
            raise RnnkitError(f"@{tag} expects true or false, got {' '.join(args)!r}", where=where)
        return _BOOL[args[0].lower()]

    def count() -> int:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise RnnkitError(f"@{tag} expects a positive integer, got {' '.join(args)!r}", where=where)
        return int(args[0])

    key = tag.lower()
    if key == "problemname":
        ts.problem_name = " ".join(args)
    elif key == "timestamps":
        if flag():
            raise RnnkitError("time-stamped .ts data (@timeStamps true) is not supported", where=where)
    elif key == "missing":
        ts.missing = flag()
    elif key == "univariate":
        if flag():
            if ts.dimensions not in (None, 1):
                raise RnnkitError(f"@univariate true contradicts @dimensions {ts.dimensions}", where=where)
            ts.dimensions = 1
    elif key == "dimensions":
        ts.dimensions = count()
    elif key == "equallength":
        ts.equal_length = flag()
    elif key == "serieslength":
        ts.series_length = count()
    elif key == "classlabel":
        class_label[0] = flag()
        if class_label[0]:
            ts.labels = tuple(args[1:])
            if not ts.labels:
                raise RnnkitError("@classLabel true must list the class labels", where=where)
            if len(set(ts.labels)) != len(ts.labels):
                raise RnnkitError(f"@classLabel lists a label twice: {' '.join(ts.labels)}", where=where)
        elif len(args) > 1:
            raise RnnkitError("@classLabel false takes no labels", where=where)
    elif key == "targetlabel":
        ts.regression = flag()
    else:
        logger.warning("%s: ignoring unknown .ts header tag @%s", where, tag)


def parse_ts(text: str, where: str = "<.ts>") -> TsData:
    """Parse the text of a ``.ts`` file; ``where`` names the file in error messages (``where:line``)."""
    ts = TsData()
    class_label = [False]
    lines = text.splitlines()
    start = None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise RnnkitError(
                f"expected an @tag header line or @data before the data, got {line[:40]!r}", where=f"{where}:{n}"
            )
        tag, *args = line[1:].split()
        if tag.lower() == "data":
            start = n
            break
        _header(ts, tag, args, f"{where}:{n}", class_label)
    if start is None:
        raise RnnkitError("no @data line: not a .ts file?", where=where)
    if class_label[0] and ts.regression:
        raise RnnkitError("both @classLabel true and @targetLabel true", where=where)
    if ts.equal_length is False:
        ts.series_length = None
    has_label = class_label[0] or ts.regression
    allowed = set(ts.labels)

    for n in range(start + 1, len(lines) + 1):
        line = lines[n - 1].strip()
        if not line or line.startswith("#"):
            continue
        at = f"{where}:{n}"
        fields = line.split(":")
        record: dict[str, Any] = {}
        if has_label:
            if len(fields) < 2:
                raise RnnkitError("expected the channels, then ':' and the label", where=at)
            label = fields.pop().strip()
            if ts.regression:
                target = _value(label, at)
                if target is None:
                    raise RnnkitError("the regression target is missing", where=at)
                record["target"] = target
            elif label not in allowed:
                raise RnnkitError(f"label {label!r} is not one of @classLabel {' '.join(ts.labels)}", where=at)
            else:
                record["label"] = label
        if ts.dimensions is None:
            ts.dimensions = len(fields)
        if len(fields) != ts.dimensions:
            raise RnnkitError(f"expected {ts.dimensions} channel(s) separated by ':', got {len(fields)}", where=at)
        series = []
        for c, channel in enumerate(fields, 1):
            if not channel.strip():
                raise RnnkitError(f"channel {c} has no values", where=at)
            series.append([_value(v, at) for v in channel.split(",")])
        lengths = {len(s) for s in series}
        if len(lengths) > 1:
            raise RnnkitError(f"the channels of one case differ in length: {[len(s) for s in series]}", where=at)
        length = lengths.pop()
        if ts.series_length is not None and length != ts.series_length:
            raise RnnkitError(f"expected @seriesLength {ts.series_length} values per channel, got {length}", where=at)
        if ts.equal_length and ts.records and length != len(ts.records[0]["series"][0]):
            raise RnnkitError(
                f"@equalLength true, but this case has {length} steps and the first has "
                f"{len(ts.records[0]['series'][0])}",
                where=at,
            )
        ts.records.append({"series": series, **record})
    if not ts.records:
        raise RnnkitError("no cases after @data", where=where)
    return ts
