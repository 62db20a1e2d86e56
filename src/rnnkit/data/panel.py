"""Many series in the long format: one row per series and time step (``unique_id, ds, y`` + covariates).

The format forecasting libraries share (neuralforecast, statsforecast, darts' ``from_group_dataframe``): a CSV
(UTF-8, a header) or Parquet file (``pip install 'rnnkit[parquet]'``) with the columns

* ``unique_id``: the series' name (any text);
* ``ds``: the time, a number or an ISO date/time (``1958-01``, ``1958-01-31``, ``1958-01-31 12:00``);
* ``y``: the value, a finite number (an empty field, ``NA``, ``NaN`` ... is a missing value);
* optional covariates, each declared: **static** ones (``static=[...]``, one number per series, the same on
  every row of it: a size, a region code) and **known-in-advance** ones (``known=[...]``, one number per row:
  calendar features, planned prices), which a forecast needs for its future steps too.

Any other column is an error (a misspelt covariate would otherwise be dropped silently). Rows may come in any
order; each series is sorted by time. The spacing is inferred per file: whole months (every date on the same
day of the month, or every one on the last day; quarters and years are 3 and 12 months), else the smallest
step between two rows of a series (numbers or durations), and every step must be a whole multiple of it. A
larger step is a *gap*: ``missing="error"`` (the default) stops there, ``"interpolate"`` inserts the missing
time steps and fills them (and missing values) linearly from their neighbours in the same series.

Bad input is one line naming the file, the line (CSV) or row (Parquet) and the series: a duplicate time, a gap,
a value that is not a number, an unknown or missing column, a static covariate that changes within a series.
Memory and time are bounded: the file's size is checked against ``max_bytes`` before it is read.

:func:`read_panel` returns a :class:`Panel`; a single series is a panel of one.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RnnkitError, short_text
from .textfile import check_regular_file, reading

#: the columns of the long format
ID, TIME, VALUE = "unique_id", "ds", "y"
#: spellings of a missing value
MISSING = {"", "na", "n/a", "nan", "null", "none"}
_YEAR_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
#: default bound on the size of a file read whole (bytes)
MAX_BYTES = 1 << 30


@dataclass
class PanelSeries:
    """One series of a panel: ``values`` (n,) with NaN where missing, ``known`` (n, K) known-in-advance
    covariates, ``static`` (S,), the time labels as written (``""`` for a step :func:`read_panel` inserted)
    and where each row came from (``file:line`` or ``file: row N``)."""

    id: str
    values: np.ndarray
    known: np.ndarray
    static: np.ndarray
    labels: list[str] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def where(self, i: int = 0) -> str:
        """Where row ``i`` came from, with the series' name (for error messages)."""
        place = self.wheres[i] if self.wheres else "?"
        return f"{place} (series {short_text(self.id, 40)!r})"


@dataclass
class Panel:
    """Series in file order of first appearance; ``static_names`` / ``known_names`` name the covariates."""

    source: str
    series: list[PanelSeries]
    static_names: list[str]
    known_names: list[str]

    def __len__(self) -> int:
        return len(self.series)


def parse_time(text: str) -> float | datetime:
    """A number, ``YYYY-MM`` or an ISO date/time (aware times become UTC); ValueError otherwise."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    m = _YEAR_MONTH.fullmatch(text)
    if m:
        return datetime(int(m.group(1)), int(m.group(2)), 1)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo is not None else t


def read_number(text: Any, column: str, where: str, missing_ok: bool = True) -> float:
    if text is None or (isinstance(text, str) and text.strip().lower() in MISSING):
        if missing_ok:
            return math.nan
        raise RnnkitError(f"column {column!r}: a value is missing", where=where)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        try:
            value = float(str(text))
        except ValueError:
            raise RnnkitError(
                f"column {column!r}: cannot read {short_text(text, 40)!r} as a number", where=where
            ) from None
    if math.isnan(value) and missing_ok:
        return value
    if not math.isfinite(value):
        raise RnnkitError(f"column {column!r}: {short_text(text, 40)!r} is not a finite number", where=where)
    return value


def csv_header(reader) -> list[str] | None:
    """The first non-blank row of a ``csv.reader``, its fields stripped; None for a file of blank lines."""
    for row in reader:
        if any(h.strip() for h in row):
            return [h.strip() for h in row]
    return None


def _rows_csv(path: Path, columns: list[str]):
    """(header, iterator of (where, {column: field})) of a CSV file."""
    with reading(path), open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = csv_header(reader)
        if header is None:
            raise RnnkitError(f"empty file: expected a CSV header ({', '.join(columns)}) and rows", where=str(path))
        yield header, f"{path}:{reader.line_num}"
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                raise RnnkitError(f"expected {len(header)} fields like the header, got {len(row)}", where=where)
            yield dict(zip(header, row, strict=True)), where


def _rows_parquet(path: Path, columns: list[str]):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RnnkitError("reading Parquet needs pyarrow: pip install 'rnnkit[parquet]'", where=str(path)) from None
    check_regular_file(path)
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise RnnkitError(f"not a readable Parquet file: {short_text(e, 120)}", where=str(path)) from None
    header = [str(c) for c in table.column_names]
    yield header, str(path)
    data = {c: table.column(c).to_pylist() for c in header}
    for i in range(table.num_rows):
        yield {c: data[c][i] for c in header}, f"{path}: row {i + 1}"


def _months(t: datetime) -> int:
    return t.year * 12 + t.month - 1


def _month_end(t: datetime) -> bool:
    return (t + timedelta(days=1)).day == 1


class _Clock:
    """The file's spacing: ``step(a, b)`` = how many base steps lie between two times; ``add(t, k)`` moves."""

    def __init__(self, times: list[Any]) -> None:
        self.months = False
        if times and isinstance(times[0], datetime):
            days = {t.day for t in times}
            at_midnight = all(t.hour == t.minute == t.second == t.microsecond == 0 for t in times)
            self.month_end = all(_month_end(t) for t in times)
            self.months = at_midnight and (len(days) == 1 or self.month_end)
        self.base: Any = None

    def diff(self, a: Any, b: Any) -> Any:
        if self.months:
            return _months(b) - _months(a)
        return b - a

    def set_base(self, diffs: list[Any]) -> None:
        positive = [d for d in diffs if d > (timedelta(0) if isinstance(d, timedelta) else 0)]
        self.base = min(positive) if positive else None

    def steps(self, d: Any) -> float:
        return d / self.base

    def add(self, t: Any, k: int) -> Any:
        if not self.months:
            return t + k * self.base
        m = _months(t) + k * self.base
        day = t.day
        year, month = divmod(m, 12)
        if self.month_end:
            first_next = datetime(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
            return first_next - timedelta(days=1)
        return datetime(year, month + 1, day)

    def label(self, t: Any) -> str:
        if isinstance(t, datetime):
            return t.strftime("%Y-%m-%d") if t.hour == t.minute == t.second == 0 else t.isoformat(sep=" ")
        return f"{t:g}"


def read_panel(
    path: str | Path,
    *,
    static: list[str] | tuple[str, ...] = (),
    known: list[str] | tuple[str, ...] = (),
    missing: str = "error",
    allow_future: int = 0,
    max_bytes: int = MAX_BYTES,
) -> Panel:
    """Read a long-format CSV or Parquet file (``.parquet`` / ``.pq``) into a :class:`Panel`.

    ``missing``: ``"error"`` or ``"interpolate"`` (module docstring). ``allow_future``: up to this many rows at
    the end of a series may have an empty ``y`` (the future steps of a forecast, whose known covariates are
    given); they are kept as NaN and not filled. Errors are :class:`RnnkitError` naming file, line and series.
    """
    path = Path(path)
    if missing not in ("error", "interpolate"):
        raise ValueError(f"missing must be 'error' or 'interpolate', got {missing!r}")
    check_regular_file(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise RnnkitError(
            f"is {size:,} bytes, more than the {max_bytes:,} a panel file may have (data.max_file_mb)", where=str(path)
        )
    static, known = list(static), list(known)
    for name in static:
        if name in known:
            raise RnnkitError(f"covariate {name!r} is declared both static and known in advance")
    wanted = [ID, TIME, VALUE, *static, *known]
    parquet = path.suffix.lower() in (".parquet", ".pq")
    rows = (_rows_parquet if parquet else _rows_csv)(path, wanted)
    header, where = next(rows)
    for col in wanted:
        if col not in header:
            raise RnnkitError(
                f"no column {col!r} in the header (columns: {short_text(header, 120)}); the long "
                f"format is {ID}, {TIME}, {VALUE} plus the declared covariates",
                where=where,
            )
    for col in header:
        if col not in wanted:
            raise RnnkitError(
                f"unknown column {short_text(col, 40)!r}: declare it as a covariate (data.static or "
                "data.known) or remove it",
                where=where,
            )
    if len(set(header)) != len(header):
        raise RnnkitError("a column name appears twice in the header", where=where)

    groups: dict[str, list[tuple[Any, str, float, list[float], list[float], str]]] = {}
    first_type: type | None = None
    for row, where in rows:
        sid = row[ID]
        sid = "" if sid is None else str(sid).strip()
        if not sid:
            raise RnnkitError(f"empty {ID}", where=where)
        label = "" if row[TIME] is None else str(row[TIME]).strip()
        raw_t = row[TIME]
        try:
            t = raw_t.replace(tzinfo=None) if isinstance(raw_t, datetime) else parse_time(label)
        except (ValueError, OverflowError):
            raise RnnkitError(
                f"{TIME} {short_text(label, 40)!r} is neither a number nor an ISO date (e.g. 1958-01, "
                f"1958-01-31 12:00) (series {short_text(sid, 40)!r})",
                where=where,
            ) from None
        if first_type is None:
            first_type = type(t)
        elif type(t) is not first_type:
            raise RnnkitError(
                f"the {TIME} column mixes numbers and dates (series {short_text(sid, 40)!r})", where=where
            )
        tagged = f"{where} (series {short_text(sid, 40)!r})"
        y = read_number(row[VALUE], VALUE, tagged)
        s = [read_number(row[c], c, tagged, missing_ok=False) for c in static]
        k = [read_number(row[c], c, tagged) for c in known]
        groups.setdefault(sid, []).append((t, label, y, s, k, where))
    if not groups:
        raise RnnkitError("no data rows after the header", where=str(path))

    for rows_of in groups.values():
        rows_of.sort(key=lambda r: r[0])
    clock = _Clock([r[0] for rs in groups.values() for r in rs])
    diffs = []
    for sid, rs in groups.items():
        for a, b in zip(rs, rs[1:], strict=False):
            d = clock.diff(a[0], b[0])
            if d == (timedelta(0) if isinstance(d, timedelta) else 0):
                lines = sorted([a[5], b[5]])
                raise RnnkitError(
                    f"duplicate {TIME} {b[1]!r} in series {short_text(sid, 40)!r} (also at {lines[0]})", where=lines[1]
                )
            diffs.append(d)
    clock.set_base(diffs)

    out = []
    for sid, rs in groups.items():
        out.append(_assemble(sid, rs, clock, static, known, missing, allow_future))
    return Panel(str(path), out, static, known)


def _assemble(sid, rs, clock: _Clock, static, known, missing: str, allow_future: int) -> PanelSeries:
    name = short_text(sid, 40)
    for r in rs[1:]:
        if r[3] != rs[0][3]:
            col = static[next(i for i, (a, b) in enumerate(zip(r[3], rs[0][3], strict=True)) if a != b)]
            raise RnnkitError(
                f"static covariate {col!r} changes within series {name!r} (first value on {rs[0][5]})", where=r[5]
            )
    values, knowns, labels, wheres = [], [], [], []
    for i, (t, label, y, _, k, where) in enumerate(rs):
        if i:
            steps = clock.steps(clock.diff(rs[i - 1][0], t))
            n = round(steps)
            if abs(steps - n) > 1e-6:
                raise RnnkitError(
                    f"{TIME} {label!r} is not a whole number of steps after {rs[i - 1][1]!r} (the "
                    f"file's step: {clock.base}) in series {name!r}",
                    where=where,
                )
            if n > 1:
                if missing == "error":
                    raise RnnkitError(
                        f"gap: {n - 1} time step(s) missing between {rs[i - 1][1]!r} and {label!r} in "
                        f"series {name!r} (set data.missing=interpolate to fill gaps)",
                        where=where,
                    )
                for j in range(1, n):
                    values.append(math.nan)
                    knowns.append([math.nan] * len(known))
                    labels.append(clock.label(clock.add(rs[i - 1][0], j)))
                    wheres.append(where)
        values.append(y)
        knowns.append(k)
        labels.append(label)
        wheres.append(where)
    v = np.asarray(values, dtype=np.float64)
    kn = np.asarray(knowns, dtype=np.float64).reshape(len(v), len(known))
    observed_end = len(v)
    while observed_end > 0 and math.isnan(v[observed_end - 1]) and len(v) - observed_end < allow_future:
        observed_end -= 1
    series = PanelSeries(sid, v, kn, np.asarray(rs[0][3], dtype=np.float64), labels, wheres)
    gaps = np.isnan(v[:observed_end])
    if gaps.any():
        if missing == "error":
            raise RnnkitError(
                f"missing {VALUE} (set data.missing=interpolate to fill gaps)", where=series.where(int(np.argmax(gaps)))
            )
        if gaps.all():
            raise RnnkitError(f"no observed {VALUE} in the series", where=series.where(0))
        v[:observed_end] = _interp(v[:observed_end])
    for c in range(kn.shape[1]):
        col = kn[:, c]
        if np.isnan(col).any():
            if missing == "error":
                raise RnnkitError(
                    f"missing value of covariate {known[c]!r} (set data.missing=interpolate)",
                    where=series.where(int(np.argmax(np.isnan(col)))),
                )
            if np.isnan(col).all():
                raise RnnkitError(f"covariate {known[c]!r} has no value in the series", where=series.where(0))
            kn[:, c] = _interp(col)
    return series


def _interp(a: np.ndarray) -> np.ndarray:
    """Linear interpolation of the NaNs of ``a`` (flat beyond the known ends)."""
    x = np.arange(len(a))
    ok = ~np.isnan(a)
    out = a.copy()
    out[~ok] = np.interp(x[~ok], x[ok], a[ok])
    return out


def is_long_format(path: str | Path) -> bool:
    """Whether a file is in the long format: Parquet, or a CSV whose header has a ``unique_id`` column."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for line in f:
                if line.strip():
                    return ID in [h.strip() for h in next(csv.reader([line]))]
                break
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return False
