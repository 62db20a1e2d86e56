"""Forecasting: the next ``model.horizon`` values of a series from a window of its past (AirPassengers, CO2, ...),
or of each of many series with one global model (M3, Tourism, the user's long-format file).

**Many series** (``data.layout: panel``; chosen by ``auto`` for a long-format ``--data`` file, one with a
``unique_id`` column, or for ``data.subset``, a competition dataset's subset such as ``m3`` / ``monthly``): the
series are read by :func:`rnnkit.data.panel.read_panel` (CSV or Parquet: ``unique_id, ds, y`` plus the declared
``data.static`` / ``data.known`` covariates) or :func:`rnnkit.data.competitions.load_competition`. Each series'
test part is its last ``horizon`` points (a competition's official ``xx``), validation the ``horizon`` points
before it, train the rest; training windows (up to ``data.windows_per_series`` per series and epoch, drawn by
seed and epoch, shuffled across series) have their targets in the training part, validation forecasts each
validation part from the points before it, and the test part is forecast once from the end of validation.
Per-series seasonal factors and levels (``data.seasonality``: ``classical`` decomposition as in Naive2, or the
``holt-winters`` ES hybrid) are fitted on each series' training part and used causally (a window's future
factors are the last season's before its origin). The model is a :class:`~rnnkit.models.PanelForecaster`
(quantiles ``model.quantiles`` with the pinball loss; ``model.ensemble`` members, median). Metrics are the M
competitions' per-series means (``smape``, ``mase``, ``owa`` against Naive2, the ``coverage`` and ``msis`` of the
interval between the outermost quantiles, ``loss``); ``predictions.jsonl`` has one line per series (``id``,
``forecast``, ``quantiles``); ``predict`` takes series names (their recent history is kept in the run's
``series.json``) or long-format files and forecasts from the end of each series. With ``model.combine: theta``
(or ``ets``) every forecast is mixed with the series' statsmodels Theta (or ETS) forecast
(:func:`rnnkit.models.statistical.statistical_forecasts`): the median becomes ``w * network + (1 - w) *
statistical`` and every quantile moves with it; ``w`` is 1 while training, then chosen on the validation pairs alone
(:meth:`Forecasting.calibrate`) or given by ``model.combine_weight``, and recorded in ``task_state``.
docs/forecasting.md has the user's view. Everything below describes the single-series layout.

Data: a registry dataset (``data.dataset``: ``air-passengers``, ``co2``, ``sunspots``; its test part is the
registry's test split unless ``data.test_size`` is set, docs/datasets.md), or ``--data FILE``, a UTF-8 CSV with
a header, one time step per row in increasing time order: a time column (``data.time_column``, default the
first column; numbers, or ISO dates/times such as ``1958-01``, ``1958-01-31`` or ``1958-01-31 12:00``), a
value column (``data.value_column``, default the second) and
optional covariate columns (``data.covariates``: values known in advance, such as calendar features;
passed to the model unscaled). Rows must be strictly increasing in time (an unsorted or repeated time is
an error naming the file and line); the spacing is taken as regular and not checked.

Missing values (an empty field, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``): ``data.missing: error`` (the
default) stops at the first one, naming the file and line; ``interpolate`` fills it linearly from its
neighbours *without looking into a later split*: a gap in the training part is filled from training
values only (carried forward when no later training value exists), and likewise for validation. Filled
points are used as inputs but never scored. ``inf`` is always an error.

Split, strictly in time order: the last ``data.test_size`` points are the test part (default: 10% of a
file, the registry's test split of a dataset), the ``data.validation_size`` points before them validation,
the rest train (an int is a number of points, a float in (0, 1) a fraction of the series). A *window* is
``data.window`` inputs followed by ``horizon`` targets; a split's windows are those whose targets all lie
inside it, so no test value is ever a training input or target. The :class:`~rnnkit.models.Forecaster`
normalises each window by its own mean and spread, so no statistics are fitted on the series at all.

Transform: ``data.transform: log`` models ``log(y)`` (every observed value must be > 0): multiplicative
seasonality becomes additive. Forecasts are mapped back (``exp``; with a Gaussian model that is the median
of a log-normal, and the interval's ends are mapped the same way), and every metric is in the original
units; only ``loss`` stays in the model's units.

Differencing: ``data.difference: L`` models ``z[t] = y[t] - y[t-L]`` of the (transformed) series; ``L`` = the
season is seasonal differencing, as in SARIMA's ``D = 1``. A window's first input then needs ``L`` points of
history before it. Forecasts are integrated back from the last ``L`` values before the origin (``y[h] =
y[h-L] + z[h]``, with predicted ``y`` once ``h >= L``), and the interval's ends likewise, which takes the
errors of successive seasons as fully correlated (wider bounds rather than too narrow ones).

Ensembles: ``model.ensemble: N`` trains N forecasters of the same architecture side by side on the same
batches, each from its own random initialisation (:class:`ForecasterEnsemble`), and forecasts with the mean
of their means (Gaussian: the scale of their equal-weight mixture). The members share no parameter; the
training loss is the mean of the members' losses.

Metrics, from additive sums over the evaluated split (validation during training, test at the end):

* rolling origin over every window of the split (each forecast from the actual values before it):
  ``mae``, ``rmse``, ``mape`` and ``smape`` (percent), ``mase`` (MAE over the in-sample MAE of the
  seasonal naive forecast on the training part, period ``data.season``), and ``baseline_mase``: the
  seasonal naive forecast itself (the last season repeated; the last value when ``season = 1``);
* ``origin_*``: the one forecast of the *whole* split from its start, the standard benchmark (e.g.
  AirPassengers: the 36 test months from the end of 1957). When the split is longer than the horizon
  the forecast rolls forward recursively: each block of ``horizon`` predictions is appended to the
  window as if observed and the next block forecast from it (covariates are the actual ones, being known
  in advance; the last block is cut to length, its missing future covariates repeat the last row).
  ``origin_baseline_mase`` is the seasonal naive forecast from the same origin.
* ``loss``: the model's training loss on the split's windows (what ``train.monitor`` watches by default).

Plot: the series with the test-period forecast from the origin and its Gaussian interval
(``forecast.interval``). Blocks after the first feed predictions back as inputs, and the interval does
not widen for that, so it is too narrow for long rolled forecasts.

``predict`` reads CSV file(s) with the recent history in the same columns and forecasts the next
``horizon`` steps from the last ``window`` rows: ``{"input", "forecast", "lower", "upper"}`` (``lower``
and ``upper`` are null for ``model.distribution: point``). With covariates, the file must end with
``horizon`` future rows whose value is empty and whose covariates are given.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ..config import StrictModel
from ..data import registry
from ..data.panel import csv_header, is_long_format, parse_time, read_number, read_panel
from ..data.textfile import reading
from ..errors import RnnkitError, short_repr
from ..fileio import atomic_write_json, atomic_write_jsonl
from ..metrics import forecast as fm
from ..models import Forecaster, ForecasterEnsemble
from ..models.encoder import CellName
from ..models.exponential_smoothing import holt_winters
from ..models.forecaster import PanelForecaster, PanelForecasterEnsemble
from ..models.statistical import naive2, statistical_forecasts
from ..training import Task
from .base import RecipeConfig, StateFile, TaskKind
from .common import task_spec

log = logging.getLogger("rnnkit")

SPLITS = ("train", "validation", "test")


class ForecastDataConfig(StrictModel):
    dataset: str | None = Field(None, description="a registry forecasting dataset (air-passengers, ...); --data wins")
    time_column: str | None = Field(None, description="default: the first column")
    value_column: str | None = Field(None, description="default: the second column")
    covariates: list[str] = Field(default_factory=list, description="columns known in advance, fed as inputs")
    missing: Literal["error", "interpolate"] = "error"
    test_size: int | float | None = Field(
        None, gt=0, description="last points: a count or a fraction in (0, 1); null: a dataset's test split, else 0.1"
    )
    validation_size: int | float = Field(0.1, gt=0, description="points before the test part: count or fraction")
    window: int = Field(24, ge=2, description="input steps per forecast")
    season: int = Field(1, ge=1, description="seasonal period for MASE and the seasonal naive baseline")
    transform: Literal["none", "log"] = Field("none", description="log: model log(y), forecasts mapped back")
    difference: int = Field(0, ge=0, description="lag L: model y[t] - y[t-L] (L = season: seasonal); 0: levels")
    # -- many series (the long format and the forecasting competitions) --
    layout: Literal["auto", "single", "panel"] = Field(
        "auto", description="auto: panel for a long-format file (a unique_id column) or data.subset, else single"
    )
    subset: str | None = Field(None, description="a competition's subset (data.dataset=m3, subset monthly, ...)")
    horizon: int | None = Field(None, gt=0, description="steps forecast (sets model.horizon); panel: the test part")
    static: list[str] = Field(default_factory=list, description="panel: static covariate columns (one per series)")
    known: list[str] = Field(default_factory=list, description="panel: known-in-advance covariate columns")
    seasonality: Literal["none", "classical", "holt-winters"] = Field(
        "none", description="panel: per-series multiplicative seasonality fitted on the training part"
    )
    min_history: int | None = Field(None, ge=1, description="panel: real inputs a training window needs")
    windows_per_series: int = Field(32, ge=1, description="panel: training windows drawn per series and epoch")
    max_file_mb: int = Field(1024, ge=1, description="panel: the largest long-format file read")

    @model_validator(mode="after")
    def _check(self):
        for name in ("test_size", "validation_size"):
            v = getattr(self, name)
            if isinstance(v, float) and not v < 1:
                raise ValueError(f"{name}: a float is a fraction of the series and must be < 1, got {v}")
        return self


class ForecastModelConfig(StrictModel):
    horizon: int = Field(12, gt=0, description="steps forecast at once")
    cell: CellName = "lstm"
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="between layers")
    mode: Literal["direct", "recursive"] = "direct"
    head: Literal["direct", "recursive"] | None = Field(None, description="the same as mode (which it sets)")
    distribution: Literal["gaussian", "point"] = Field("gaussian", description="gaussian gives intervals")
    loss: Literal["mse", "mae", "nll"] | None = Field(None, description="default: nll (gaussian) or mse (point)")
    scaling: Literal["standard", "none", "auto", "log", "ratio"] | None = Field(
        None, description="single: standard (default) or none; panel: auto (default: log if all values > 0), log, ratio"
    )
    ensemble: int = Field(1, ge=1, le=64, description="forecasters trained side by side, forecasts averaged")
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9], description="panel: with 0.5")
    level_steps: int | None = Field(None, ge=1, description="panel: inputs averaged for the level (default: season)")
    combine: Literal["none", "theta", "ets"] = Field(
        "none", description="panel: mix each forecast with the series' Theta or ETS forecast (statsmodels)"
    )
    combine_weight: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="the network's share; null: chosen on validation"
    )

    @model_validator(mode="after")
    def _head(self):
        if self.head is not None:
            if "mode" in self.model_fields_set and self.mode != self.head:
                raise ValueError(f"model.head={self.head!r} and model.mode={self.mode!r} disagree: set one")
            if self.mode != self.head:  # assignment validates again; equal values end that
                self.mode = self.head
        return self


class ForecastOutputConfig(StrictModel):
    interval: float = Field(0.9, gt=0, lt=1, description="central probability of the Gaussian interval")


class ForecastingConfig(RecipeConfig):
    task: Literal["forecasting"] = "forecasting"
    data: ForecastDataConfig = Field(default_factory=ForecastDataConfig)
    model: ForecastModelConfig = Field(default_factory=ForecastModelConfig)
    forecast: ForecastOutputConfig = Field(default_factory=ForecastOutputConfig)

    @model_validator(mode="after")
    def _horizon(self):
        h = self.data.horizon
        if h is not None:
            if "horizon" in self.model.model_fields_set and self.model.horizon != h:
                raise ValueError(f"data.horizon={h} and model.horizon={self.model.horizon} disagree: set one")
            if self.model.horizon != h:
                self.model.horizon = h
        return self


# -- reading --------------------------------------------------------------------------------------------
@dataclass
class Series:
    """A series as read: ``values`` (n,) and ``covariates`` (n, C) with NaN where missing."""

    path: Path
    times: list[Any]  # float or datetime per row
    labels: list[str]  # the time field as written
    values: np.ndarray
    covariates: np.ndarray
    lines: list[int]
    dataset: str | None = None  # a registry dataset: lines are record numbers

    def __len__(self) -> int:
        return len(self.values)

    def where(self, i: int) -> str:
        """Where row ``i`` came from: ``file:line``, or ``dataset NAME record N`` (1-based)."""
        return f"dataset {self.dataset} record {self.lines[i]}" if self.dataset else f"{self.path}:{self.lines[i]}"

    @property
    def source(self) -> str:
        return f"dataset {self.dataset}" if self.dataset else str(self.path)


def read_series(path: Path, time_column: str | None, value_column: str | None, covariates: list[str]) -> Series:
    """Read a CSV series; errors name the file and line (header, field counts, numbers, time order)."""
    times, labels, values, covs, lines = [], [], [], [], []
    with reading(path), open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = csv_header(reader)
        if header is None:
            raise RnnkitError("empty file: expected a CSV header and rows", where=str(path))
        where = f"{path}:{reader.line_num}"
        if len(header) < 2 and (time_column is None or value_column is None):
            raise RnnkitError(f"need a time and a value column, the header has {header}", where=where)
        tcol = time_column if time_column is not None else header[0]
        vcol = value_column if value_column is not None else header[1]
        index = {}
        for role, col in [("time", tcol), ("value", vcol)] + [("covariate", c) for c in covariates]:
            if col not in header:
                raise RnnkitError(f"no {role} column {col!r} in the header (columns: {header})", where=where)
            index[col] = header.index(col)
        previous = None
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise RnnkitError(f"expected {len(header)} fields like the header, got {len(row)}", where=where)
            label = row[index[tcol]].strip()
            try:
                t = parse_time(label)
            except (ValueError, OverflowError):
                raise RnnkitError(
                    f"time {label[:40]!r} is neither a number nor an ISO date (e.g. 1958-01, 1958-01-31 12:00)",
                    where=where,
                ) from None
            if previous is not None:
                if type(t) is not type(previous[0]):
                    raise RnnkitError("the time column mixes numbers and dates", where=where)
                if t == previous[0]:
                    raise RnnkitError(f"duplicate time {label!r} (also on line {previous[1]})", where=where)
                if t < previous[0]:
                    raise RnnkitError(
                        f"time {label!r} comes before {labels[-1]!r} on line {previous[1]}: "
                        "rows must be in increasing time order",
                        where=where,
                    )
            previous = (t, reader.line_num)
            times.append(t)
            labels.append(label)
            lines.append(reader.line_num)
            values.append(read_number(row[index[vcol]], vcol, where))
            covs.append([read_number(row[index[c]], c, where) for c in covariates])
    if not values:
        raise RnnkitError("no data rows after the header", where=str(path))
    cov = np.asarray(covs, dtype=np.float64).reshape(len(values), len(covariates))
    return Series(path, times, labels, np.asarray(values, dtype=np.float64), cov, lines)


def fill_missing(series: Series, rule: str, ends: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows (n, 1 + C) with every gap filled, observed (n,) bool of the value column)``.

    ``ends`` are the split boundaries (exclusive, increasing, the last = n): a gap is interpolated from
    the values around it inside its own part and earlier ones only, never from a later part; with no later
    value in its part it carries the last value forward (and, at the very start, the first value back).
    """
    rows = np.concatenate([series.values[:, None], series.covariates], axis=1)  # (n, 1+C)
    gaps = np.isnan(rows)
    if not gaps.any():
        return rows, ~gaps[:, 0]
    if rule == "error":
        i = int(np.argwhere(gaps.any(axis=1))[0, 0])
        raise RnnkitError("missing value (set data.missing=interpolate to fill gaps)", where=series.where(i))
    filled = rows.copy()
    x = np.arange(len(rows))
    for c in range(rows.shape[1]):
        start = 0
        for end in ends:
            known = x[:end][~gaps[:end, c]]  # everything observed before the part's end
            todo = x[start:end][gaps[start:end, c]]
            if len(todo):
                if not len(known):
                    raise RnnkitError("no observed value to fill a missing one from", where=series.where(int(todo[0])))
                filled[todo, c] = np.interp(todo, known, rows[known, c])  # flat beyond the known ends
            start = end
    return filled, ~gaps[:, 0]


def read_dataset(name: str) -> tuple[Series, int]:
    """A registry forecasting dataset as a :class:`Series` (records in time order), and its test split's size."""
    spec = task_spec(name, "forecasting")
    splits = registry.load_splits(spec.name)
    records = [*splits["train"], *splits["validation"], *splits["test"]]
    labels = [str(r["time"]) for r in records]
    values = np.asarray([math.nan if r["value"] is None else r["value"] for r in records], dtype=np.float64)
    series = Series(Path(spec.name), [parse_time(t) for t in labels], labels, values, np.zeros((len(records), 0)),
                    list(range(1, len(records) + 1)), dataset=spec.name)  # fmt: skip
    return series, len(splits["test"])


def split_sizes(n: int, test_size: int | float, validation_size: int | float) -> tuple[int, int, int]:
    """``(n_train, n_validation, n_test)`` points: the last ones are test, the ones before them validation."""

    def count(size: int | float) -> int:
        return int(size) if isinstance(size, int) else max(1, round(size * n))

    n_test, n_val = count(test_size), count(validation_size)
    return n - n_val - n_test, n_val, n_test


def window_origins(lo: int, hi: int, window: int, horizon: int) -> list[int]:
    """Origins ``t`` (inputs ``y[t - window : t]``, targets ``y[t : t + horizon]``) with all targets in ``[lo, hi)``."""
    return list(range(max(lo, window), hi - horizon + 1))


def seasonal_naive(y: np.ndarray, origin: int, steps: int, season: int) -> np.ndarray:
    """The last season before ``origin`` repeated for ``steps`` steps (the last value when ``season`` is 1)."""
    h = np.arange(steps)
    return y[origin + h - season * (h // season + 1)]


# -- many series: global models over a panel -------------------------------------------------------------
#: a competition dataset's (data.dataset) subsets are read by rnnkit.data.competitions.load_competition
HISTORY_FILE = "series.json"
#: values of each series kept in the run folder for ``predict`` by id (the last ones)
HISTORY_KEEP = 400


@dataclass
class PanelSplit:
    """The series of a panel as the task uses them: ``values[i]`` (n_i,) the whole observed series (training
    part, then the test part when there is one), ``n_train[i]`` the training part's length (validation is its
    last ``horizon`` points), ``known[i]`` (n_i + future, K), ``static`` (N, S)."""

    ids: list[str]
    values: list[np.ndarray]
    n_train: np.ndarray
    known: list[np.ndarray]
    static: np.ndarray
    labels: list[list[str]] | None = None


class PanelArrays:
    """Flat arrays of a panel with the per-series seasonal factors and levels fitted on each training part, and
    :meth:`batch`, which cuts windows at ``(series, origin)`` pairs, vectorised.

    ``season[i]`` (n_train_i,): the multiplicative factor of each training step (classical: the decomposition's
    indices; holt-winters: the filtered seasonal state; otherwise 1); a window's future factors are those of
    the last season before its origin, so nothing after the origin is read. ``level[i]`` (n_train_i,): the
    filtered ES level (holt-winters only; otherwise the model takes the mean of the last inputs)."""

    def __init__(self, split: PanelSplit, window: int, horizon: int, season: int, seasonality: str) -> None:
        self.split, self.W, self.H, self.m = split, window, horizon, season
        lens = np.array([len(v) for v in split.values], dtype=np.int64)
        self.lens = lens
        self.off = np.concatenate([[0], np.cumsum(lens)[:-1]])
        self.flat = np.concatenate(split.values) if len(lens) else np.zeros(0)
        seasons, levels = [], []
        for v, n in zip(split.values, split.n_train, strict=True):
            s, lv = fit_states(v[:n], season, seasonality)
            seasons.append(s)
            levels.append(lv)
        self.soff = np.concatenate([[0], np.cumsum(split.n_train)[:-1]])
        self.season = np.concatenate(seasons) if seasons else np.zeros(0)
        self.level = np.concatenate(levels) if seasonality == "holt-winters" and levels else None
        K = split.known[0].shape[1] if split.known else 0
        self.K = K
        if K:
            self.klens = np.array([len(k) for k in split.known], dtype=np.int64)
            self.koff = np.concatenate([[0], np.cumsum(self.klens)[:-1]])
            self.kflat = np.concatenate(split.known)

    def batch(self, series: np.ndarray, origins: np.ndarray, target: bool = True) -> dict[str, torch.Tensor]:
        """Windows ending before ``origins`` (B,) of ``series`` (B,): ``window`` (B, W) left-padded with the
        first value, ``mask`` (B, W), ``season`` (B, W+H), ``level`` (B,) (holt-winters), ``known`` (B, W+H, K),
        ``static`` (B, S) and, with ``target``, ``target`` (B, H)."""
        W, H, m = self.W, self.H, max(self.m, 1)
        i, o = np.asarray(series, dtype=np.int64)[:, None], np.asarray(origins, dtype=np.int64)[:, None]
        p = o + np.arange(-W, 0)  # (B, W)
        real = p >= 0
        pc = np.maximum(p, 0)
        soff = self.soff[i]
        b = {"window": _f32(self.flat[self.off[i] + pc]), "mask": _f32(real)}
        s_in = np.where(real, self.season[soff + pc], 1.0)
        q = o - m + (np.arange(H) % m)
        s_out = np.where(q >= 0, self.season[soff + np.maximum(q, 0)], 1.0)
        b["season"] = _f32(np.concatenate([s_in, s_out], 1))
        if self.level is not None:
            b["level"] = _f32(self.level[soff[:, 0] + o[:, 0] - 1])
        if self.K:
            kp = np.clip(o + np.arange(-W, H), 0, self.klens[i] - 1)
            b["known"] = _f32(self.kflat[self.koff[i] + kp])
        if self.split.static.shape[1]:
            b["static"] = _f32(self.split.static[i[:, 0]])
        if target:
            b["target"] = _f32(self.flat[self.off[i] + o + np.arange(H)])
        return b


def fit_states(y: np.ndarray, season: int, seasonality: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-step seasonal factors and levels (n,) of a training part ``y`` (``data.seasonality``). A series with
    a value <= 0 is not deseasonalised (the decomposition is multiplicative) and its ES level is its values."""
    n = len(y)
    if seasonality == "none" or not (y > 0).all():
        return np.ones(n), np.abs(y) + (y == 0)
    if seasonality == "classical":  # Naive2's: only when M4's test says seasonal
        return fm.deseasonalise(y, season)[1], np.ones(n)
    level, factors, _, _ = holt_winters(y, season)
    return factors, level


PANEL_KEYS = ("smape", "mase", "n2_smape", "n2_mase", "mase_n", "series", "cover", "cover_n", "msis", "loss", "windows")


def panel_sums(
    q: torch.Tensor, median: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, naive: torch.Tensor, level: float
) -> dict[str, float]:
    """Additive sums over series: forecasts ``median`` (B, H) and quantiles ``q`` (B, H, Q) (the interval: the
    outermost two, of central probability ``level``), actual ``y`` (B, H), MASE scales (B,) (NaN: not scored by
    MASE or MSIS), the Naive2 forecasts (B, H)."""
    q, f, y, scale, naive = q.double(), median.double(), y.double(), scale.double(), naive.double()

    def smape(p):
        d = p.abs() + y.abs()
        return torch.where(d > 0, 200 * (p - y).abs() / d.clamp_min(1e-300), torch.zeros_like(d)).mean(1)

    ok = torch.isfinite(scale)
    sc = torch.where(ok, scale, torch.ones_like(scale))[:, None]
    lo, hi = q[..., 0], q[..., -1]
    a = 1 - level
    msis = ((hi - lo) + 2 / a * (lo - y).clamp_min(0) + 2 / a * (y - hi).clamp_min(0)) / sc
    return {
        "smape": float(smape(f).sum()),
        "n2_smape": float(smape(naive).sum()),
        "mase": float((((f - y).abs() / sc).mean(1) * ok).sum()),
        "n2_mase": float((((naive - y).abs() / sc).mean(1) * ok).sum()),
        "mase_n": float(ok.sum()),
        "series": float(y.shape[0]),
        "cover": float(((y >= lo) & (y <= hi)).double().sum()),
        "cover_n": float(y.numel()),
        "msis": float((msis.mean(1) * ok).sum()),
    }


def panel_metrics(s: dict[str, float]) -> dict[str, float]:
    """sMAPE (percent) and MASE as means over series, OWA against Naive2, interval coverage (percent), MSIS
    and the training loss."""
    n, nm = max(s["series"], 1.0), max(s["mase_n"], 1.0)
    out = {
        "loss": s["loss"] / max(s["windows"], 1.0),
        "smape": s["smape"] / n,
        "mase": s["mase"] / nm if s["mase_n"] else math.nan,
    }
    n2s, n2m = s["n2_smape"] / n, s["n2_mase"] / nm
    out["owa"] = 0.5 * (out["smape"] / n2s + out["mase"] / n2m) if n2s > 0 and n2m > 0 and s["mase_n"] else math.nan
    out["naive2_smape"], out["naive2_mase"] = n2s, (n2m if s["mase_n"] else math.nan)
    out["coverage"] = 100 * s["cover"] / max(s["cover_n"], 1.0)
    out["msis"] = s["msis"] / nm if s["mase_n"] else math.nan
    return out


def _scale(x: np.ndarray, m: int) -> float:
    """The MASE scale of a history, NaN where it is 0 (a constant history scores no MASE)."""
    s = fm.mase_scale(x, m)
    return s if s > 0 else math.nan


def load_history(path: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The run's ``series.json``: each series' recent values and their time labels (for ``predict`` by name),
    checked: ``({id: values (n,)}, {id: labels})``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids, values, times = data["ids"], data["values"], data["times"]
        if not all(isinstance(v, list) and len(v) == len(ids) for v in (ids, values, times)):
            raise ValueError("ids, values and times must be lists of the same length")
        hist = {str(i): np.asarray(v, dtype=np.float64) for i, v in zip(ids, values, strict=True)}
        if any(v.ndim != 1 or not np.isfinite(v).all() for v in hist.values()):
            raise ValueError("every series must be a list of finite numbers")
        labels = {str(i): [str(t) for t in ts] for i, ts in zip(ids, times, strict=True)}
        if any(len(labels[i]) != len(hist[i]) for i in hist):
            raise ValueError("every series needs one time label per value")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise RnnkitError(f"not a valid series file: {short_repr(str(e))}", where=str(path)) from None
    return hist, labels


class _PanelTask:
    """The forecasting task's methods for many series (``layout: panel``); :class:`Forecasting` calls them."""

    config: ForecastingConfig
    data_path: Path | None
    panel_history: dict[str, np.ndarray] | None = None
    panel_times: dict[str, list[str]] | None = None
    #: ``model.combine: theta`` / ``ets``: each split's statistical forecasts (N, H), from :meth:`_panel_stat`
    panel_stat: dict[str, np.ndarray] | None = None
    #: the network's share in the combination: 1 while training (validation scores the network
    #: alone), then what :meth:`calibrate` chose; restored from ``task_state.combine_weight``
    combine_weight: float = 1.0

    # -- data ----------------------------------------------------------------------------------------
    def _panel_read(self) -> tuple[PanelSplit, str, int]:
        """The panel to train on, where it came from, and the seasonal period."""
        d, H = self.config.data, self.config.model.horizon
        if self.data_path is not None:
            if d.subset is not None or d.covariates:
                raise RnnkitError(
                    "with a long-format --data file, data.subset and data.covariates do not apply "
                    "(covariates are data.static and data.known)"
                )
            panel = read_panel(
                self.data_path, static=d.static, known=d.known, missing=d.missing, max_bytes=d.max_file_mb << 20
            )
            need = d.window + 2 * H
            for s in panel.series:
                if len(s) < need:
                    raise RnnkitError(
                        f"the series has {len(s)} points, fewer than data.window + 2 x horizon = {need} "
                        "(a full window before the validation and test parts): set a shorter "
                        "data.window or data.horizon",
                        where=s.where(0),
                    )
            split = PanelSplit(
                [s.id for s in panel.series],
                [s.values for s in panel.series],
                np.array([len(s) - H for s in panel.series], dtype=np.int64),
                [s.known for s in panel.series],
                np.stack([s.static for s in panel.series]).reshape(len(panel), len(d.static)),
                [s.labels for s in panel.series],
            )
            return split, str(self.data_path), d.season
        if d.dataset is None or d.subset is None:
            raise RnnkitError(
                "no data for many series: give --data FILE in the long format (unique_id, ds, y) or "
                "set data.dataset and data.subset (e.g. m3 and monthly)"
            )
        if d.static or d.known or d.covariates:
            raise RnnkitError(
                f"data.dataset={d.dataset!r} has no covariate columns; data.static, data.known and "
                "data.covariates must be empty"
            )
        from ..data.competitions import load_competition

        series = load_competition(d.dataset, d.subset)
        if not series:
            raise RnnkitError(f"data.dataset={d.dataset!r} subset {d.subset!r} has no series")
        for s in series:
            if s.horizon != H or len(s.test) != H:
                raise RnnkitError(
                    f"series {s.id!r} of {d.dataset} {d.subset} has horizon {s.horizon}; set data.horizon={s.horizon}",
                    where=f"dataset {d.dataset}",
                )
        m = d.season if "season" in d.model_fields_set else int(series[0].period)
        values = [np.concatenate([np.asarray(s.train, np.float64), np.asarray(s.test, np.float64)]) for s in series]
        split = PanelSplit(
            [str(s.id) for s in series],
            values,
            np.array([len(s.train) for s in series], np.int64),
            [np.zeros((len(v), 0)) for v in values],
            np.zeros((len(series), 0)),
        )
        return split, f"dataset {d.dataset} {d.subset}", m

    def _panel_scaling(self, split: PanelSplit, where: str) -> str:
        scaling = self.config.model.scaling or "auto"
        if scaling in ("standard", "none"):
            raise RnnkitError(f"model.scaling={scaling!r} is for a single series; many series use auto, log or ratio")
        bad = [i for i, (v, n) in enumerate(zip(split.values, split.n_train, strict=True)) if not (v[:n] > 0).all()]
        if scaling == "auto":
            return "ratio" if bad else "log"
        if scaling == "log" and bad:
            raise RnnkitError(
                f"model.scaling=log needs values > 0; series {split.ids[bad[0]]!r} has one that is not (use ratio)",
                where=where,
            )
        return scaling

    def _panel_prepare(self, run_dir: Path) -> dict[str, Any]:
        d, H = self.config.data, self.config.model.horizon
        split, where, m = self._panel_read()
        if len(set(split.ids)) != len(split.ids):
            raise RnnkitError("two series share a name", where=where)
        self.panel_season = m
        self.panel_scaling = self._panel_scaling(split, where)
        if self.config.model.scaling in (None, "auto") and self.panel_scaling == "ratio":
            log.info("some training values are <= 0: scaling by ratios to the level, not logs")
        self.arrays = PanelArrays(split, d.window, H, m, d.seasonality)
        n = split.n_train
        short = [i for i in range(len(n)) if n[i] - H < 1]
        if short:
            raise RnnkitError(
                f"series {split.ids[short[0]]!r} has {n[short[0]]} training points, no more than "
                f"the horizon {H}: nothing is left to forecast its validation part from",
                where=where,
            )
        lo = d.min_history if d.min_history is not None else max(3, min(d.window, m))
        self.train_ranges = [(lo, int(k) - 2 * H) for k in n]  # origins whose targets end before validation
        N = len(split.ids)
        self.pairs = {"validation": (np.arange(N), n - H), "test": (np.arange(N), n.copy())}
        self.scored = {}
        for s, (idx, org) in self.pairs.items():
            hist = [split.values[i][:o] for i, o in zip(idx, org, strict=True)]
            self.scored[s] = (np.array([_scale(v, m) for v in hist]), np.stack([naive2(v, H, m) for v in hist]))
        self.split = split
        self._panel_stat()
        keep = [v[-HISTORY_KEEP:].tolist() for v in split.values]
        if split.labels is not None:  # the file's own time labels; a competition's are positions
            times = [lab[: len(v)][-HISTORY_KEEP:] for lab, v in zip(split.labels, split.values, strict=True)]
        else:
            times = [[str(t) for t in range(len(v))][-HISTORY_KEEP:] for v in split.values]
        self.panel_history = {i: np.asarray(v) for i, v in zip(split.ids, keep, strict=True)}
        self.panel_times = dict(zip(split.ids, times, strict=True))
        atomic_write_json(run_dir / HISTORY_FILE, {"ids": split.ids, "values": keep, "times": times})
        windows = sum(max(0, b - a + 1) for a, b in self.train_ranges)
        info = {
            "source": where,
            "layout": "panel",
            "series": N,
            "horizon": H,
            "season": m,
            "seasonality": d.seasonality,
            "scaling": self.panel_scaling,
            "training_windows": windows,
            "series_without_training_window": sum(b < a for a, b in self.train_ranges),
            "points": {"train": int((n - H).sum()), "validation": N * H, "test": N * H},
        }
        log.info("data %s: %d series, horizon %d, %d training windows", where, N, H, windows)
        return info

    def _panel_stat(self) -> None:
        """With ``model.combine: theta`` or ``ets``: that statsmodels forecast (N, H) of every validation pair
        (from the training part less its last ``horizon`` points) and test pair (from the whole training part),
        kept in :attr:`panel_stat`; ``None`` otherwise."""
        self.panel_stat = None
        method = self.config.model.combine
        if method == "none":
            return
        t0 = time.perf_counter()
        self.panel_stat, fell_back = {}, 0
        jobs = torch.get_num_threads()  # the CPU threads the user gave this run: as many fitting processes
        for s, (idx, org) in self.pairs.items():
            hist = [self.split.values[i][:o] for i, o in zip(idx, org, strict=True)]
            self.panel_stat[s], back = statistical_forecasts(
                method, hist, self.panel_season, self.config.model.horizon, jobs=jobs
            )
            fell_back += int(back.sum())
        count = sum(len(f) for f in self.panel_stat.values())
        log.info("%s: %d forecasts (validation and test) in %.1f s, %d fell back to Naive2", method, count,
                 time.perf_counter() - t0, fell_back)  # fmt: skip

    # -- model and training ---------------------------------------------------------------------------
    def _panel_model(self):
        m, d = self.config.model, self.config.data
        K, S = len(d.known), len(d.static)
        encoder = dict(
            input_size=2 + K + S,
            cell=m.cell,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            dropout=m.dropout if m.num_layers > 1 else 0.0,
        )
        cfg = dict(
            encoder=encoder,
            horizon=m.horizon,
            head=m.mode,
            quantiles=m.quantiles,
            scaling=self.panel_scaling,
            level_steps=m.level_steps or max(self.panel_season, 1),
            known=K,
            static=S,
        )
        if m.ensemble > 1:
            return PanelForecasterEnsemble(member=cfg, size=m.ensemble)
        return PanelForecaster(cfg)

    def _panel_train_pairs(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.train.seed, epoch])
        k = self.config.data.windows_per_series
        idx, org = [], []
        for i, (a, b) in enumerate(self.train_ranges):
            if b < a:
                continue
            o = np.arange(a, b + 1)
            if len(o) > k:
                o = rng.choice(o, size=k, replace=False)
            idx.append(np.full(len(o), i))
            org.append(o)
        if not idx:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        idx, org = np.concatenate(idx), np.concatenate(org)
        order = rng.permutation(len(idx))
        return idx[order], org[order]

    def _panel_count(self, split: str) -> int:
        if split == "train":
            k = self.config.data.windows_per_series
            return sum(min(k, b - a + 1) for a, b in self.train_ranges if b >= a)
        return len(self.pairs[split][0])

    def _panel_batches(self, split: str, epoch: int):
        bs = self.config.train.batch_size
        if split == "train":
            idx, org = self._panel_train_pairs(epoch)
            for s in range(0, len(idx), bs):
                yield self.arrays.batch(idx[s : s + bs], org[s : s + bs])
            return
        idx, org = self.pairs[split]
        scale, naive = self.scored[split]
        for s in range(0, len(idx), bs):
            b = self.arrays.batch(idx[s : s + bs], org[s : s + bs])
            b["scale"], b["naive2"] = _f64(scale[s : s + bs]), _f64(naive[s : s + bs])
            if self.panel_stat is not None:
                b["statistical"] = _f64(self.panel_stat[split][s : s + bs])
            yield b

    def _panel_trainer_task(self) -> Task:
        level = self.config.model.quantiles[-1] - self.config.model.quantiles[0]

        def train_step(model, b, carry):
            return model.loss(b["window"], b["target"], **_model_inputs(b)), None, b["window"].shape[0]

        def eval_step(model, b):
            B = b["window"].shape[0]
            if B == 0:
                return dict.fromkeys(PANEL_KEYS, 0.0)
            out = model(b["window"], **_model_inputs(b))
            q = self._combined(out["quantiles"].double(), b.get("statistical"))
            stats = panel_sums(q, q[..., self.median_index], b["target"], b["scale"], b["naive2"], level)
            stats["loss"] = float(model.loss(b["window"], b["target"], **_model_inputs(b))) * B
            stats["windows"] = float(B)
            return stats

        bs = self.config.train.batch_size
        return Task(
            batches=self._panel_batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=panel_metrics,
            num_batches=lambda split: -(-self._panel_count(split) // bs),
        )

    def _panel_calibrate(self, model) -> dict[str, float]:
        """``model.combine: theta`` / ``ets``: the network's share ``w`` (``model.combine_weight``, or the one of
        0, 0.1, ..., 1 with the lowest validation sMAPE, ties to the larger), from the validation pairs only."""
        idx, org = self.pairs["validation"]
        q = self._panel_forecast(model, self.arrays, idx, org)  # the network's own forecasts, once
        H = self.config.model.horizon
        y = self.arrays.flat[self.arrays.off[idx][:, None] + org[:, None] + np.arange(H)]
        method, stat = self.config.model.combine, self.panel_stat["validation"]

        def smape(w: float) -> float:
            f = w * q[..., self.median_index] + (1 - w) * stat
            return float(np.mean([fm.smape(a, b) for a, b in zip(y, f, strict=True)])) if len(y) else math.nan

        given = self.config.model.combine_weight
        scores = {w: smape(w) for w in ([given] if given is not None else [k / 10 for k in range(11)])}
        w = min(scores, key=lambda v: (scores[v], -v))  # a tie goes to the larger weight
        self.combine_weight = float(w)
        chosen = {
            "combine_weight": self.combine_weight,
            "validation_smape_network": scores[1.0] if 1.0 in scores else smape(1.0),
            f"validation_smape_{method}": scores[0.0] if 0.0 in scores else smape(0.0),
            "validation_smape_combined": scores[w],
        }
        how = "given" if given is not None else "chosen on validation"
        log.info("combine with %s: weight %g (%s); validation sMAPE network %.4f, %s %.4f, combined %.4f",
                 method, w, how, *list(chosen.values())[1:2], method, *list(chosen.values())[2:])  # fmt: skip
        return chosen

    def _stat(self, split: str) -> np.ndarray | None:
        """The split's statistical forecasts (N, H) when combining, else None."""
        return None if self.panel_stat is None else self.panel_stat[split]

    # -- outputs ----------------------------------------------------------------------------------------
    def _panel_forecast(self, model, arrays: PanelArrays, idx: np.ndarray, org: np.ndarray) -> np.ndarray:
        """Quantile forecasts (B, H, Q) in original units, batch by batch."""
        out = []
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))  # calibrate: the trainer's
        with torch.no_grad():
            for s in range(0, len(idx), 1024):
                b = {k: v.to(device) for k, v in arrays.batch(idx[s : s + 1024], org[s : s + 1024], False).items()}
                out.append(model(b["window"], **_model_inputs(b))["quantiles"].double().cpu().numpy())
        return (
            np.concatenate(out) if out else np.zeros((0, self.config.model.horizon, len(self.config.model.quantiles)))
        )

    @property
    def median_index(self) -> int:
        return self.config.model.quantiles.index(0.5)

    def _combined(self, q, stat):
        """Quantile forecasts ``q`` (B, H, Q) combined with statistical forecasts ``stat`` (B, H) (arrays or
        tensors alike): the median becomes ``w * median + (1 - w) * stat`` with ``w`` = :attr:`combine_weight`
        and every quantile moves with it, so the interval keeps the network's width. ``stat`` None or ``w = 1``:
        ``q``."""
        w = self.combine_weight
        if stat is None or w >= 1:
            return q
        return q + ((1 - w) * (stat - q[..., self.median_index]))[..., None]

    def _quantile_fields(self, q: np.ndarray) -> dict[str, Any]:
        qs = self.config.model.quantiles
        return {
            "forecast": _round(q[:, qs.index(0.5)]),
            "quantiles": {f"{v:g}": _round(q[:, j]) for j, v in enumerate(qs)},
        }

    def _panel_write_predictions(self, model, run_dir: Path) -> None:
        idx, org = self.pairs["test"]
        q = self._combined(self._panel_forecast(model, self.arrays, idx, org), self._stat("test"))
        rows = [{"id": self.split.ids[i], **self._quantile_fields(q[k])} for k, i in enumerate(idx)]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def _panel_plots(self, model, run_dir: Path, metrics: dict[str, float]) -> list[Path]:
        from ..plots import forecast_plot

        if not len(self.split.ids):
            return []
        qs = self.config.model.quantiles
        k = int(np.argmax(self.split.n_train))  # the longest series
        n = int(self.split.n_train[k])
        q = self._panel_forecast(model, self.arrays, np.array([k]), np.array([n]))
        stat = self._stat("test")
        q = self._combined(q, None if stat is None else stat[k : k + 1])[0]
        values = self.split.values[k][: n + self.config.model.horizon]
        title = f"series {short_repr(self.split.ids[k], 40)}: test forecast"
        if "test_smape" in metrics:
            title += f" (all series: sMAPE {metrics['test_smape']:.2f}%)"
        path = run_dir / "plots" / "forecast.png"
        return [
            forecast_plot(
                list(range(len(values))),
                values,
                n,
                q[:, qs.index(0.5)],
                q[:, 0],
                q[:, -1],
                path,
                title=title,
                level=qs[-1] - qs[0],
                validation_start=n - self.config.model.horizon,
            )
        ]

    def _panel_predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        d, H = self.config.data, self.config.model.horizon
        K, S = len(d.known), len(d.static)
        history = self.panel_history or {}
        out = []
        for text in inputs:
            if text in history:
                if K:
                    raise RnnkitError(
                        f"series {text!r}: this model reads known covariates, so its future steps are "
                        "needed: pass a long-format file whose last rows per series have an empty y"
                    )
                y = history[text]
                cases = [(text, y, np.zeros((len(y), 0)), np.zeros(S), (self.panel_times or {})[text])]
            else:
                path = Path(text)
                if not path.exists():
                    raise RnnkitError("neither a series of this run nor a file", where=short_repr(text, 60))
                panel = read_panel(
                    path,
                    static=d.static,
                    known=d.known,
                    missing=d.missing,
                    allow_future=H if K else 0,
                    max_bytes=d.max_file_mb << 20,
                )
                cases = []
                for s in panel.series:
                    n_obs = int(np.flatnonzero(~np.isnan(s.values))[-1]) + 1
                    if K and len(s) - n_obs != H:
                        raise RnnkitError(
                            f"with known covariates, each series must end with {H} future rows (an empty "
                            f"y and the covariates); found {len(s) - n_obs}",
                            where=s.where(len(s) - 1),
                        )
                    cases.append((s.id, s.values[:n_obs], s.known, s.static, s.labels[:n_obs]))
            for sid, y, known, static, labels in cases:
                if self.panel_scaling_of(model) == "log" and not (y > 0).all():
                    raise RnnkitError(
                        f"series {sid!r}: this model forecasts logs and needs values > 0", where=short_repr(text, 60)
                    )
                if K:
                    known = known[: len(y) + H]
                split = PanelSplit([sid], [y], np.array([len(y)]), [known], np.asarray(static).reshape(1, S))
                arrays = PanelArrays(split, d.window, H, self.panel_season, d.seasonality)
                q = self._panel_forecast(model, arrays, np.array([0]), np.array([len(y)]))
                method = self.config.model.combine
                if method != "none" and self.combine_weight < 1:
                    q = self._combined(q, statistical_forecasts(method, [y], self.panel_season, H)[0])
                fields = self._quantile_fields(q[0])
                qs = self.config.model.quantiles
                keep = min(len(y), HISTORY_KEEP)
                out.append(
                    {
                        "input": text,
                        "id": sid,
                        **fields,
                        "lower": fields["quantiles"][f"{qs[0]:g}"],
                        "upper": fields["quantiles"][f"{qs[-1]:g}"],
                        "interval": round(qs[-1] - qs[0], 6),
                        "history": {"times": labels[-keep:], "values": _round(y[-keep:])},
                    }
                )
        return out

    @staticmethod
    def panel_scaling_of(model) -> str:
        cfg = model.config.member if hasattr(model.config, "member") else model.config
        return cfg.scaling


def _model_inputs(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword inputs of a :class:`PanelForecaster` in a batch."""
    return {k: b[k] for k in ("mask", "season", "level", "known", "static") if k in b}


class Forecasting(_PanelTask, TaskKind):
    name = "forecasting"
    config_class = ForecastingConfig
    inputs = "file"
    accept = (".csv",)
    view = "forecast"
    input_help = "CSV files with the recent history; for a run on many series also series names"
    state_files = {"series": StateFile(("panel_history", "panel_times"), HISTORY_FILE, load_history, optional=True)}
    layout: str = "single"
    panel_season: int = 1

    # -- which layout ---------------------------------------------------------------------------------
    def _layout(self) -> str:
        d = self.config.data
        if d.layout != "auto":
            return d.layout
        if d.subset is not None:
            return "panel"
        return "panel" if self.data_path is not None and is_long_format(self.data_path) else "single"

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        self.layout = self._layout()
        if self.layout == "panel":
            return self._panel_prepare(run_dir)
        if self.config.model.scaling in ("auto", "log", "ratio"):
            raise RnnkitError(f"model.scaling={self.config.model.scaling!r} is for many series; a single series "
                              "uses standard or none")  # fmt: skip
        if self.config.model.combine != "none":
            raise RnnkitError(f"model.combine={self.config.model.combine} is for many series (data.layout=panel); "
                              "a single series uses none")  # fmt: skip
        return self._single_prepare(run_dir)

    def recorded_state(self) -> dict[str, Any]:
        state = {"window": self.config.data.window, "horizon": self.config.model.horizon, "layout": self.layout}
        if self.layout == "panel":
            state["season"] = self.panel_season
            if self.config.model.combine != "none":
                state["combine_weight"] = self.combine_weight
        return state

    @classmethod
    def from_run(cls, config, run_dir, state):
        task = super().from_run(config, run_dir, state)
        task.layout = state.get("layout", "single")
        if task.layout == "panel":
            season = state.get("season")
            if not isinstance(season, int) or season < 1:
                raise RnnkitError(f"task_state.season: expected a positive int, got {short_repr(season)}",
                                  where=str(run_dir))  # fmt: skip
            task.panel_season = season
            if config.model.combine != "none":  # (a run from before model.combine reads as none: the network)
                w = state.get("combine_weight")
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
                    raise RnnkitError(f"task_state.combine_weight: expected a number in [0, 1], got {short_repr(w)}",
                                      where=str(run_dir))  # fmt: skip
                task.combine_weight = float(w)
        return task

    def export_declaration(self) -> dict[str, Any]:
        """Many series: the level is an input when ``data.seasonality`` is ``holt-winters``; with
        ``model.combine`` the description states the statistical method, the run's weight and the formula."""
        if self.layout != "panel":
            return {}
        out: dict[str, Any] = {"with_level": self.config.data.seasonality == "holt-winters"}
        method = self.config.model.combine
        if method == "none":
            return out
        w, period = self.combine_weight, self.panel_season
        call = {
            "theta": "statsmodels' ThetaModel(history, period=period).fit().forecast(horizon)",
            "ets": "the forecast of statsmodels' ETSModel of lowest AIC over error {A, M} x trend {N, A, Ad} x season "
            "{N, A, M} (rnnkit.models.statistical.ETS_CONFIGS)",
        }[method]
        name = {"theta": "Theta", "ets": "ETS"}[method]
        how = (
            f"forecast = w * median + (1 - w) * {name}(history, period) with w = {w:g}, period = {period}: "
            f"{name} is {call} of the series' whole history before the origin "
            "(rnnkit.models.statistical.statistical_forecasts; Naive2 where it fails); every quantile moves with "
            f"the median: quantiles + (1 - w) * ({name} - median)"
        )
        if w >= 1:
            how = "w = 1: the graph's outputs are the forecast (the run chose the network alone); " + how
        out["combine"] = {"method": method, "weight": w, "period": period, "formula": how}
        return out

    def calibrate(self, model, evaluate) -> dict[str, float]:
        """``model.combine: theta`` / ``ets`` (many series): the network's share in the combination, from the validation
        pairs only (:meth:`_panel_calibrate`); nothing otherwise."""
        if self.layout != "panel" or self.config.model.combine == "none":
            return {}
        return self._panel_calibrate(model)

    def build_model(self):
        return self._panel_model() if self.layout == "panel" else self._single_model()

    def trainer_task(self) -> Task:
        return self._panel_trainer_task() if self.layout == "panel" else self._single_trainer_task()

    def write_predictions(self, model, run_dir) -> None:
        if self.layout == "panel":
            return self._panel_write_predictions(model, run_dir)
        return self._single_write_predictions(model, run_dir)

    def plots(self, model, run_dir, metrics) -> list[Path]:
        if self.layout == "panel":
            return self._panel_plots(model, run_dir, metrics)
        return self._single_plots(model, run_dir, metrics)

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        if self.layout == "panel":
            return self._panel_predict(model, inputs)
        return self._single_predict(model, inputs)

    def file_result(self, path: Path) -> dict[str, Any]:
        if self.layout == "panel":
            return {}  # predict's own result carries each series' history
        return self._single_file_result(path)

    # -- data ---------------------------------------------------------------------------------------
    def _read(self, path: Path) -> Series:
        d = self.config.data
        return read_series(path, d.time_column, d.value_column, d.covariates)

    def _series(self) -> tuple[Series, int | float]:
        """The series to train on and its test size (``data.test_size``, else the dataset's or 10%)."""
        d = self.config.data
        if self.data_path is not None:
            return self._read(self.data_path), d.test_size if d.test_size is not None else 0.1
        if d.dataset is None:
            raise RnnkitError("no data: give --data FILE, a CSV with a header: time, value[, covariates...], or set "
                              "data.dataset (air-passengers, co2, sunspots)")  # fmt: skip
        if d.covariates:
            raise RnnkitError(f"data.dataset={d.dataset!r} has no covariate columns; data.covariates must be empty")
        series, n_test = read_dataset(d.dataset)
        return series, d.test_size if d.test_size is not None else n_test

    def _single_prepare(self, run_dir: Path) -> dict[str, Any]:
        d, H, L = self.config.data, self.config.model.horizon, self.config.data.difference
        series, test_size = self._series()
        n = len(series)
        n_train, n_val, n_test = split_sizes(n, test_size, d.validation_size)
        where = series.source
        for part, size in (("test", n_test), ("validation", n_val)):
            if size < H:
                raise RnnkitError(f"the {part} part has {size} points, fewer than model.horizon={H}: set "
                                  f"data.{part}_size >= {H} or a shorter horizon", where=where)  # fmt: skip
        if n_train < d.window + L + H:
            lag = f" + data.difference={L}" if L else ""
            raise RnnkitError(f"the training part has {n_train} of {n} points, too few for one window "
                              f"(data.window={d.window}{lag} + model.horizon={H})", where=where)  # fmt: skip
        if n_train <= d.season:
            raise RnnkitError(f"data.season={d.season} needs more than {d.season} training points", where=where)
        self.series = series
        rows, self.observed = fill_missing(series, d.missing, [n_train, n_train + n_val, n])
        check_transform(rows[:, 0], self.observed, d.transform, series.where)
        self.raw = rows[:, 0].copy()  # original units: what is scored
        self.level = forward_transform(self.raw, d.transform)  # transformed, not differenced
        rows[:, 0] = difference(self.level, L)  # what the model reads and predicts
        self.rows = rows
        self.bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
        # the first input of a window is y[t - W], which needs y[t - W - L] when differencing
        self.origins = {s: window_origins(*self.bounds[s], d.window + L, H) for s in SPLITS}
        # MASE scale: in-sample seasonal naive MAE over observed training pairs, in original units
        y, ok, m = self.raw[:n_train], self.observed[:n_train], d.season
        both = ok[m:] & ok[:-m]
        if not both.any():
            raise RnnkitError("no observed training pair to scale MASE with", where=where)
        self.mase_scale = float(np.abs(y[m:] - y[:-m])[both].mean())
        info = {
            "source": where,
            "sizes": {s: hi - lo for s, (lo, hi) in self.bounds.items()},
            "windows": {s: len(o) for s, o in self.origins.items()},
            "time_range": {s: [series.labels[lo], series.labels[hi - 1]] for s, (lo, hi) in self.bounds.items()},
            "missing_filled": int((~self.observed).sum()),
            "transform": d.transform,
            "difference": L,
        }
        log.info("data %s: points %s, windows %s", where, info["sizes"], info["windows"])
        return info

    # -- model and training ---------------------------------------------------------------------------
    def _single_model(self) -> Forecaster:
        m, C = self.config.model, len(self.config.data.covariates)
        encoder = dict(input_size=1 + C, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                       dropout=m.dropout if m.num_layers > 1 else 0.0)  # fmt: skip
        cfg = dict(
            encoder=encoder,
            horizon=m.horizon,
            mode=m.mode,
            distribution=m.distribution,
            scaling=m.scaling or "standard",
        )
        if m.loss is not None:
            cfg["loss"] = m.loss
        if m.ensemble > 1:
            return ForecasterEnsemble(member=cfg, size=m.ensemble)
        return Forecaster(cfg)

    def _windows(self, origins: list[int], scored: bool = True) -> dict[str, torch.Tensor]:
        """Windows at ``origins``: inputs (B, W, 1+C), targets (B, H) and future covariates (B, H, C) in model
        units and, when ``scored`` (evaluation), the actual values (B, H) in original units, which of them were
        observed, the seasonal naive forecast (B, H) and the last ``L`` levels before each origin (B, L)."""
        W, H, m, L = (
            self.config.data.window,
            self.config.model.horizon,
            self.config.data.season,
            self.config.data.difference,
        )
        t = np.asarray(origins, dtype=np.int64)[:, None]
        future = self.rows[t + np.arange(H)]  # (B, H, 1+C)
        batch = {"x": _f32(self.rows[t + np.arange(-W, 0)]), "y": _f32(future[..., 0]), "fut": _f32(future[..., 1:])}
        if scored:
            batch["actual"] = _f64(self.raw[t + np.arange(H)])
            batch["observed"] = _f32(self.observed[t + np.arange(H)])
            batch["baseline"] = _f64(np.stack([seasonal_naive(self.raw, o, H, m) for o in origins]).reshape(-1, H))
            batch["hist"] = _f64(self.level[t + np.arange(-L, 0)])
        return batch

    def _origin_batch(self, split: str) -> dict[str, torch.Tensor]:
        """The whole split forecast from its start (one row): window, actual values, covariates, baseline, the
        last ``L`` levels."""
        W, H, m, L = (
            self.config.data.window,
            self.config.model.horizon,
            self.config.data.season,
            self.config.data.difference,
        )
        lo, hi = self.bounds[split]
        steps = -(-(hi - lo) // H) * H  # whole blocks; the covariates past the end repeat the last row
        cov = self.rows[np.minimum(np.arange(lo, lo + steps), len(self.rows) - 1), 1:]
        one = {
            "origin_x": _f32(self.rows[lo - W : lo]),
            "origin_y": _f64(self.raw[lo:hi]),
            "origin_fut": _f32(cov),
            "origin_observed": _f32(self.observed[lo:hi]),
            "origin_baseline": _f64(seasonal_naive(self.raw, lo, hi - lo, m)),
            "origin_hist": _f64(self.level[lo - L : lo]),
        }
        return {k: v[None] for k, v in one.items()}  # a batch of one

    def _batches(self, split: str, epoch: int):
        origins, bs = self.origins[split], self.config.train.batch_size
        train = split == "train"
        if train:  # the order depends on the seed and the epoch alone (exact resume)
            order = np.random.default_rng([self.config.train.seed, epoch]).permutation(len(origins))
            origins = [origins[i] for i in order]
        for i in range(0, len(origins), bs):
            yield self._windows(origins[i : i + bs], scored=not train)
        if split != "train":
            yield self._origin_batch(split)

    def _single_trainer_task(self) -> Task:
        back = self._to_original

        def train_step(model, b, carry):
            return model.loss(b["x"], b["y"], b["fut"]), None, b["y"].shape[0]

        def eval_step(model, b):
            if "origin_x" in b:  # the whole split from its start
                if b["origin_x"].shape[0] == 0:  # an empty shard
                    return {f"origin_{k}": 0.0 for k in ERROR_KEYS}
                mean, _ = rolled_forecast(model, b["origin_x"], b["origin_fut"], b["origin_y"].shape[1])
                pred = back(mean, b["origin_hist"])
                stats = error_sums(pred, b["origin_y"], b["origin_observed"], b["origin_baseline"])
                return {f"origin_{k}": v for k, v in stats.items()}
            if b["x"].shape[0] == 0:
                return dict.fromkeys((*ERROR_KEYS, "loss_sum", "windows"), 0.0)
            pred = back(model(b["x"], b["fut"])["mean"], b["hist"])
            stats = error_sums(pred, b["actual"], b["observed"], b["baseline"])
            stats["loss_sum"] = float(model.loss(b["x"], b["y"], b["fut"])) * b["x"].shape[0]
            stats["windows"] = float(b["x"].shape[0])
            return stats

        bs = self.config.train.batch_size
        return Task(
            batches=self._batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=lambda s: forecast_metrics(s, self.mase_scale),
            num_batches=lambda split: -(-len(self.origins[split]) // bs) + (split != "train"),
        )

    # -- outputs ------------------------------------------------------------------------------------
    def _to_original(self, pred: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Model units (B, S) -> original units: undo the differencing from the last ``L`` levels ``hist``
        (B, L) before the origin, then the transform."""
        d = self.config.data
        return inverse_transform(undifference(pred.double(), hist.double(), d.difference), d.transform)

    def _forecast(self, model: Forecaster, x: torch.Tensor, fut: torch.Tensor, hist: torch.Tensor, steps: int):
        """Mean (steps,), lower, upper (or None) in original units from one window (model units) and the last
        ``L`` levels before the origin; rolled forward when steps > horizon."""
        model.eval()
        with torch.no_grad():
            mean, scale = rolled_forecast(model, x[None], fut[None], steps)
        back = lambda v: self._to_original(v, hist[None])[0].numpy()  # noqa: E731
        if scale is None:
            return back(mean), None, None
        z = NormalDist().inv_cdf(0.5 + self.config.forecast.interval / 2)
        return back(mean), back(mean - z * scale), back(mean + z * scale)

    def _test_forecast(self, model):
        b = self._origin_batch("test")
        return self._forecast(model, b["origin_x"][0], b["origin_fut"][0], b["origin_hist"][0], b["origin_y"].shape[1])

    def _single_write_predictions(self, model, run_dir) -> None:
        """The rolling-origin test windows, one line each, plus the origin forecast of the whole test part."""
        origins = self.origins["test"]
        b = self._windows(origins)
        with torch.no_grad():
            out = model.eval()(b["x"], b["fut"])
        mean = self._to_original(out["mean"], b["hist"])
        if out["scale"] is not None:
            z = NormalDist().inv_cdf(0.5 + self.config.forecast.interval / 2)
            lower = self._to_original(out["mean"] - z * out["scale"], b["hist"])
            upper = self._to_original(out["mean"] + z * out["scale"], b["hist"])
        rows = []
        for i, o in enumerate(origins):
            row = {"origin": self.series.labels[o], "forecast": _round(mean[i]), "actual": _round(b["actual"][i])}
            if out["scale"] is not None:
                row["lower"], row["upper"] = _round(lower[i]), _round(upper[i])
            rows.append(row)
        lo, hi = self.bounds["test"]
        mean, lower, upper = self._test_forecast(model)
        whole = {"origin": self.series.labels[lo], "whole_test_part": True, "forecast": _round(mean)}
        rows.append(whole | {"actual": _round(self.raw[lo:hi]), "lower": _round(lower), "upper": _round(upper)})
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def _single_plots(self, model, run_dir, metrics) -> list[Path]:
        from ..plots import forecast_plot

        lo, _ = self.bounds["test"]
        mean, lower, upper = self._test_forecast(model)
        values = np.where(self.observed, self.raw, np.nan)
        path = run_dir / "plots" / "forecast.png"
        title = f"test forecast from {self.series.labels[lo]}"
        if "test_origin_mape" in metrics:
            title += f" (MAPE {metrics['test_origin_mape']:.2f}%)"
        level = self.config.forecast.interval
        return [forecast_plot(self.series.times, values, lo, mean, lower, upper, path, title=title, level=level,
                              validation_start=self.bounds["validation"][0])]  # fmt: skip

    def _single_predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        d, H, L = self.config.data, self.config.model.horizon, self.config.data.difference
        C = len(d.covariates)
        out = []
        for text in inputs:
            path = Path(text)
            series = self._read(path)
            n_hist = len(series) - (H if C else 0)
            if C:
                if n_hist < 0 or not np.isnan(series.values[n_hist:]).all():
                    raise RnnkitError(f"with covariates, the last {H} rows must be the future: an empty value and "
                                      "the known covariates", where=str(path))  # fmt: skip
                series.values[n_hist:] = 0.0  # placeholders: only their covariates are read
            if n_hist < d.window + L:
                lag = f" + data.difference={L}" if L else ""
                raise RnnkitError(f"need at least data.window={d.window}{lag} rows of history, got {n_hist}",
                                  where=str(path))  # fmt: skip
            rows, _ = fill_missing(series, d.missing, [n_hist, len(series)])
            check_transform(rows[:n_hist, 0], np.ones(n_hist, bool), d.transform, series.where)
            level = forward_transform(rows[:n_hist, 0].copy(), d.transform)  # not a view: the next line overwrites rows
            rows[:n_hist, 0] = difference(level, L)
            x = torch.as_tensor(rows[n_hist - d.window : n_hist], dtype=torch.float32)
            fut = torch.as_tensor(rows[n_hist:, 1:] if C else np.zeros((H, 0)), dtype=torch.float32)
            hist = torch.as_tensor(level[n_hist - L : n_hist], dtype=torch.float64)
            mean, lower, upper = self._forecast(model, x, fut, hist, H)
            out.append({"input": text, "forecast": _round(mean), "lower": _round(lower), "upper": _round(upper)})
        return out

    def _single_file_result(self, path: Path, keep: int = 400) -> dict[str, Any]:
        """The history a forecast continues (the last ``keep`` rows, without future covariate rows) and the
        interval's coverage, for the page's plot."""
        d, H = self.config.data, self.config.model.horizon
        series = read_series(path, d.time_column, d.value_column, d.covariates)
        n = len(series) - (H if d.covariates else 0)
        values = [None if v != v else float(v) for v in series.values[:n].tolist()]  # NaN (a gap) -> null
        history = {"times": series.labels[:n][-keep:], "values": values[-keep:]}
        return {"history": history, "interval": self.config.forecast.interval}


def difference(level: np.ndarray, lag: int) -> np.ndarray:
    """``y[t] - y[t - lag]`` (0 for the first ``lag`` steps, which no window reads); ``lag = 0``: ``y`` itself."""
    if lag == 0:
        return level.copy()
    out = np.zeros_like(level)
    out[lag:] = level[lag:] - level[:-lag]
    return out


def undifference(diffs: torch.Tensor, hist: torch.Tensor, lag: int) -> torch.Tensor:
    """Levels from predicted differences (B, S) and the last ``lag`` levels before the origin (B, lag):
    ``y[h] = y[h - lag] + d[h]``, where ``y[h - lag]`` is actual before the origin and predicted after it."""
    if lag == 0:
        return diffs
    levels = list(hist.unbind(1))
    for h in range(diffs.shape[1]):
        levels.append(levels[-lag] + diffs[:, h])
    return torch.stack(levels[lag:], 1)


def forward_transform(y: np.ndarray, transform: str) -> np.ndarray:
    """Original units -> model units (``data.transform``)."""
    return np.log(y) if transform == "log" else y


def inverse_transform(y, transform: str):
    """Model units -> original units, for a tensor or an array."""
    if transform != "log":
        return y
    return y.exp() if isinstance(y, torch.Tensor) else np.exp(y)


def check_transform(values: np.ndarray, observed: np.ndarray, transform: str, where) -> None:
    """``log`` needs every observed value > 0; the error names the first offending row (``where(i)``)."""
    if transform == "log":
        bad = np.flatnonzero(observed & ~(values > 0))
        if len(bad):
            i = int(bad[0])
            raise RnnkitError(f"data.transform=log needs values > 0, got {values[i]:g}", where=where(i))


def _f32(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _f64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _round(a) -> list[float] | None:
    if a is None:
        return None
    a = a.tolist() if hasattr(a, "tolist") else a
    return [round(float(v), 6) for v in a]


def rolled_forecast(model: Forecaster, x: torch.Tensor, fut: torch.Tensor, steps: int):
    """Forecast ``steps`` values from ``x`` (B, W, 1+C) by blocks of ``horizon``, feeding each block back.

    ``fut`` (B, >= steps rounded up to whole blocks, C) holds the covariates of the forecast steps.
    Returns ``mean`` (B, steps) and ``scale`` (B, steps) or None.
    """
    H, W = model.horizon, x.shape[1]
    means, scales = [], []
    for k in range(0, steps, H):
        f = fut[:, k : k + H]
        out = model(x, f)
        means.append(out["mean"])
        scales.append(out["scale"])
        # the block as if observed: predicted values with their (known) covariates
        x = torch.cat([x, torch.cat([out["mean"].unsqueeze(-1).to(x.dtype), f.to(x.dtype)], -1)], 1)[:, -W:]
    mean = torch.cat(means, 1)[:, :steps]
    return mean, (None if scales[0] is None else torch.cat(scales, 1)[:, :steps])


ERROR_KEYS = ("abs", "sq", "n", "ape", "ape_n", "sape", "base_abs")


def error_sums(pred: torch.Tensor, y: torch.Tensor, observed: torch.Tensor, baseline: torch.Tensor) -> dict[str, float]:
    """Additive error sums over the observed targets (filled gaps are not scored)."""
    pred, y, w, baseline = pred.double(), y.double(), observed.double(), baseline.double()
    err = (pred - y).abs()
    nonzero = w * (y != 0)
    denom = y.abs() + pred.abs()
    sape = torch.where(denom > 0, 2 * err / denom.clamp_min(1e-300), torch.zeros_like(err))
    return {
        "abs": float((err * w).sum()),
        "sq": float((err.square() * w).sum()),
        "n": float(w.sum()),
        "ape": float((err / y.abs().clamp_min(1e-300) * nonzero).sum()),
        "ape_n": float(nonzero.sum()),
        "sape": float((sape * w).sum()),
        "base_abs": float(((baseline.double() - y).abs() * w).sum()),
    }


def _errors(s: dict[str, float], prefix: str, mase_scale: float) -> dict[str, float]:
    n = max(s[f"{prefix}n"], 1.0)
    mae = s[f"{prefix}abs"] / n
    ape_n = s[f"{prefix}ape_n"]
    return {
        f"{prefix}mae": mae,
        f"{prefix}rmse": math.sqrt(s[f"{prefix}sq"] / n),
        f"{prefix}mape": 100 * s[f"{prefix}ape"] / ape_n if ape_n else math.nan,
        f"{prefix}smape": 100 * s[f"{prefix}sape"] / n,
        f"{prefix}mase": mae / mase_scale if mase_scale > 0 else math.nan,
        f"{prefix}baseline_mase": s[f"{prefix}base_abs"] / n / mase_scale if mase_scale > 0 else math.nan,
    }


def forecast_metrics(s: dict[str, float], mase_scale: float) -> dict[str, float]:
    """Rolling-origin metrics, loss and the ``origin_*`` metrics of the whole-split forecast."""
    out = {"loss": s["loss_sum"] / max(s["windows"], 1.0)}
    out.update(_errors(s, "", mase_scale))
    out.update(_errors(s, "origin_", mase_scale))
    return out
